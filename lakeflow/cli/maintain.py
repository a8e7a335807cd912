"""``lakeflow maintain``: compact, Z-order, vacuum and checkpoint the tables."""

from __future__ import annotations

import click

from lakeflow.cli.common import Failed, Refused, failing, load, open_sink, pipeline_argument


@click.command()
@pipeline_argument
@click.option("--table", "only", multiple=True, metavar="T", help="Only this table (repeatable).")
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
def maintain(pipeline: str, only: tuple[str, ...], dry_run: bool) -> None:
    """Compact, Z-order, vacuum and checkpoint the pipeline's tables (safe while collecting).

    Settings come from the pipeline's [sink] section (the sink type's own keys, such as
    the Delta sink's z_order). Prints, per table, files, bytes and version before and
    after, and the time it took.
    """
    from lakeflow.lake import Lake

    registry, spec = load(pipeline)
    sink = open_sink(registry, spec)
    if not sink.maintains:
        raise Refused(f"{spec.path}: sink type {spec.sink.type!r} does not maintain its tables")
    names = list(only) or Lake.of(spec, sink).tables
    click.echo(f"maintenance: {sink.describe_maintenance()}")
    for table in names:
        with failing(f"maintenance of {table} failed: ", catch=Exception, raise_as=Failed):
            report = sink.maintain(table, dry_run=dry_run)
        if report is None:
            click.echo(f"{table}: no such table")
            continue
        click.echo(report.summary())
