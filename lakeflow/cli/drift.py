"""``lakeflow drift``: what arrived that no source declared, from ``_drift``."""

from __future__ import annotations

import click

from lakeflow.cli.common import open_lake, pipeline_argument


@click.command()
@pipeline_argument
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@click.option(
    "--ack", is_flag=True, help="Mark what is shown as seen: `lakeflow status` stops flagging it."
)
@click.option("--examples/--no-examples", default=True, help="Show an example payload of each.")
def drift(pipeline: str, sources: tuple[str, ...], ack: bool, examples: bool) -> None:
    """Show what arrived that no source declared: the exchange may have changed.

    One entry per source, kind, path and value: a key no field reads ("key"), a value
    outside a field's domain ("value"), an instrument no reference list names
    ("instrument"), with its count, first and last sighting and an example payload.
    Nothing was dropped because of it: the rows are in their tables.
    """
    import time

    import polars as pl

    from lakeflow.runtime.status import mark_seen, read_seen
    from lakeflow.runtime.view import age

    lake = open_lake(pipeline)
    frame = lake.drift
    if sources:
        frame = frame.filter(pl.col("source").is_in(list(sources)))
    found = frame.collect()
    if found.is_empty():
        where = f" for {', '.join(sources)}" if sources else ""
        click.echo(f"no drift recorded{where}: every payload matched what its source declares")
        return
    state_dir = lake.pipeline.runtime.state_dir
    seen = read_seen(state_dir)
    now = time.time()
    for row in found.iter_rows(named=True):
        key = (row["source"], row["kind"], row["path"], row["value"])
        what = row["path"] + (f" = {row['value']!r}" if row["value"] else "")
        mark = "" if key in seen else "  [new]"
        click.echo(
            f"{row['source']} ({row['table']}): {row['kind']} {what}: {row['count']:,} time(s), "
            f"first {row['first_seen']:%Y-%m-%d %H:%M:%S} UTC, "
            f"last {age(now - row['last_seen'].timestamp())} ago{mark}"
        )
        if examples and row["example"]:
            text = row["example"].decode("utf-8", "replace")
            click.echo(f"    example: {text[:300]}{'...' if len(text) > 300 else ''}")
    if ack:
        shown = found.select("source", "kind", "path", "value").rows()
        mark_seen(state_dir, set(shown))
        click.echo(f"{found.height} drift entr{'y' if found.height == 1 else 'ies'} marked seen")
