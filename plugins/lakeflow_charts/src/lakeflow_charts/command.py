"""The ``lakeflow plot`` command, added to the CLI through the ``register_commands`` hook."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

import lakeflow

DEFAULT_PIPELINE = "lakeflow.toml"


class Refused(click.ClickException):
    """What was asked cannot be drawn (or read): ``Error: ...`` and exit 2, as the core does."""

    exit_code = 2


def _utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time", param_hint="--until"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[PIPELINE] {liquidations|prices}")
@click.option("--symbol", metavar="S", help="Only this symbol (required for prices).")
@click.option("--exchange", metavar="NAME", help="Only this exchange's rows (binance, bybit, okx).")
@click.option(
    "--currency",
    metavar="C",
    help="Liquidations: count the notional in this currency (USDT, USDC, USD) when the "
    "window mixes them.",
)
@click.option(
    "--by-exchange", is_flag=True, help="Liquidations: one panel per exchange, not summed."
)
@click.option(
    "--since", default="24h", show_default=True, metavar="DURATION", help="Window: 90m, 24h, 7d."
)
@click.option("--until", metavar="TIME", help="Window end (ISO 8601, UTC). Default: now.")
@click.option("--table", metavar="T", help="Read this table instead of the pipeline's.")
@click.option(
    "--size", default="1200x600", show_default=True, metavar="WxH", help="Size in pixels."
)
@click.option("-o", "--output", required=True, metavar="FILE", help="A .png, .svg or .html file.")
def plot(args: tuple[str, ...], output: str, until: str | None, **options: Any) -> None:
    """Draw liquidation notional by side over time, or a symbol's price, into a file.

    With --by-exchange, one panel per exchange; otherwise liquidations of every exchange
    are summed. Either way in one currency: the rows' own if they share one, else --currency.
    """
    from lakeflow_charts.draw import PlotError, chart, output_format

    if len(args) > 2:
        raise click.UsageError("expected [PIPELINE] {liquidations|prices}")
    pipeline, kind = args if len(args) == 2 else (DEFAULT_PIPELINE, args[0])
    end = _utc(until)
    try:
        output_format(Path(output))  # before any row is read
        lake = lakeflow.Lake(pipeline)
        click.echo(chart(lake, kind, until=end, **options).save(output))
    except PlotError as exc:
        raise Refused(str(exc)) from None
    except lakeflow.SinkError as exc:
        raise Refused(str(exc)) if exc.config else click.ClickException(str(exc)) from None
    except lakeflow.LakeflowError as exc:  # the pipeline file, a missing table
        raise Refused(str(exc)) from None
