"""``lakeflow query``: polars SQL over the pipeline's tables."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from lakeflow.cli.common import DEFAULT_PIPELINE, Failed, failing, open_lake

if TYPE_CHECKING:
    import polars as pl

    from lakeflow.lake import Lake

#: How polars SQL says a table is not registered (no such table under the sink).
_NO_RELATION = re.compile(r"relation '([^']*)' was not found")


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[PIPELINE] SQL")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def query(args: tuple[str, ...], fmt: str) -> None:
    """Run polars SQL over the pipeline's tables, by name.

    Example: lakeflow query "SELECT symbol, count(*) FROM trades GROUP BY symbol"

    Times are UTC, in the tables and in the SQL: now() is the UTC time, so
    trade_time >= CAST(now() AS TIMESTAMPTZ) - INTERVAL '1 hour' is the last hour.
    """
    _in_utc()
    import polars as pl

    if len(args) > 2:
        raise click.UsageError("expected [PIPELINE] SQL; quote the SQL as one argument")
    pipeline, sql = args if len(args) == 2 else (DEFAULT_PIPELINE, args[0])
    lake = open_lake(pipeline)
    with failing("query failed: ", catch=Exception, raise_as=Failed):
        try:
            frame = lake.sql_context().execute(sql, eager=True)
        except pl.exceptions.SQLInterfaceError as exc:
            missing = _NO_RELATION.search(str(exc))
            if missing is None:
                raise
            raise Failed(_no_table(lake, missing.group(1), pipeline)) from exc
    frame = _printable(frame)
    if fmt == "csv":
        click.echo(frame.write_csv(), nl=False)
    elif fmt == "json":
        click.echo(frame.write_json())
    else:
        with pl.Config(
            tbl_hide_dataframe_shape=True,
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=80,
            tbl_width_chars=200,
            fmt_table_cell_list_len=10,
        ):
            click.echo(_trimmed(frame))


def _no_table(lake: Lake, table: str, pipeline: str) -> str:
    """What to do when the SQL names a table the sink does not hold, as ``plot`` says it."""
    from lakeflow.secrets import mask_uri

    there = ", ".join(lake.tables) or "none yet"
    message = f"query failed: no table {table!r} under {mask_uri(lake.uri)} (tables there: {there})"
    writes = lake.pipeline.tables
    if table in writes:
        return f"{message}; run the pipeline first (lakeflow run {pipeline}): it writes {table!r}"
    if table in lake.names():
        # A system table (_gaps, _dead_letters, _drift) is created by its first row.
        return f"{message}; {table!r} has no row yet"
    return f"{message}; {pipeline} writes {', '.join(writes) or 'no table'}"


def _in_utc() -> None:
    """Make this process's local time UTC, so that SQL's now() is UTC like the tables.

    polars evaluates now() as local wall time without a zone; compared with the tables'
    UTC timestamps it would be off by the machine's UTC offset. The command is a process
    of its own, so changing its zone affects nothing else.
    """
    import os
    import time

    os.environ["TZ"] = "UTC"
    time.tzset()


def _trimmed(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimals as text without trailing zeros, for people: ``28021929.874423800000000000``
    reads ``28021929.8744238`` and ``1.000000000000000000`` reads ``1``. Only the table
    shows them so; CSV and JSON keep the exact values, scale included."""
    import polars as pl

    decimals = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Decimal)]
    # As text, per column in polars: only zeros after the point go (an integer's stay),
    # then a point left bare.
    return frame.with_columns(
        pl.col(name).cast(pl.String).str.replace(r"(\.\d*?)0+$", "${1}").str.strip_suffix(".")
        for name in decimals
    )


def _printable(frame: pl.DataFrame) -> pl.DataFrame:
    """Binary columns (raw payloads) as text where they are UTF-8, else as 0x-hex."""
    import polars as pl

    binary = [name for name, dtype in frame.schema.items() if dtype == pl.Binary]
    return frame.with_columns(
        pl.col(name)
        .cast(pl.String, strict=False)
        .fill_null(pl.lit("0x") + pl.col(name).bin.encode("hex"))
        for name in binary
    )
