"""``lakeflow tables``: each table's version, files, rows, size and last commit."""

from __future__ import annotations

import click

from lakeflow.cli.common import open_lake, pipeline_argument
from lakeflow.secrets import mask_uri


@click.command()
@pipeline_argument
def tables(pipeline: str) -> None:
    """Show each table: version, files, rows, bytes and last commit time."""
    from lakeflow.units import format_size

    lake = open_lake(pipeline)
    infos = [lake.info(t) for t in lake.tables]
    if not infos:
        click.echo(f"no tables yet under {mask_uri(lake.uri)}")
        return
    header = (
        f"{'table':<20} {'version':>8} {'files':>7} {'rows':>12} {'size':>10}  last commit (UTC)"
    )
    click.echo(header)
    for info in infos:
        when = info.last_commit.strftime("%Y-%m-%d %H:%M:%S") if info.last_commit else "-"
        click.echo(
            f"{info.name:<20} {info.version:>8} {info.files:>7} {info.rows:>12} "
            f"{format_size(info.bytes):>10}  {when}"
        )
