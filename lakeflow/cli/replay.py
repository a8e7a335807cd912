"""``lakeflow replay``: re-decode a source's spooled payloads into a table."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from lakeflow.cli.common import load, open_sink, pipeline_argument


def _utc(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@pipeline_argument
@click.option("--source", required=True, metavar="NAME", help="The source whose capture to replay.")
@click.option(
    "--from", "since", metavar="TIME", help="Only payloads received at or after (ISO 8601, UTC)."
)
@click.option(
    "--to", "until", metavar="TIME", help="Only payloads received before (ISO 8601, UTC)."
)
@click.option("--table", metavar="T", help="Write into this table instead of the source's own.")
def replay(
    pipeline: str, source: str, since: str | None, until: str | None, table: str | None
) -> None:
    """Re-decode spooled payloads of a source into a table, exactly once.

    Into the source's own table this commits only what never landed (a backfill);
    into a new --table it re-decodes the whole window (after a decoder fix). Keep the
    spool with [runtime] keep_raw = true to have a capture to replay.
    """
    import asyncio

    from lakeflow.runtime.replay import replay as run_replay

    registry, spec = load(pipeline)
    open_sink(registry, spec)
    window = (_utc(since, "--from"), _utc(until, "--to"))
    stats = asyncio.run(
        run_replay(spec, registry, source, table=table, since=window[0], until=window[1])
    )
    target = table or spec.sources[source].table
    click.echo(
        f"{source}: {stats.rows} rows in {stats.commits} commits to {target}, "
        f"{stats.dead_letters} dead letters, {stats.ignored} ignored"
    )
