"""``lakeflow new-plugin``: write a plugin distribution that installs, lists and passes its tests.

The command is here; :mod:`lakeflow.cli.new_plugin.scaffold` derives the names and writes
the files from the templates in ``templates/`` beside it.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lakeflow.cli.new_plugin.scaffold import Kind


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--streaming/--polling",
    default=True,
    help="A WebSocket source (the default) or a REST source polled on an interval.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write it (default: ./lakeflow-NAME). Must not exist, or be empty.",
)
def new_plugin(name: str, streaming: bool, directory: Path | None) -> None:
    """Write a new plugin distribution NAME: pyproject, source, schema, tests, README.

    NAME is the source type, in lower case (kraken_trades); the distribution is
    lakeflow-NAME. Install it with `uv pip install -e DIR` (or pip) and it appears in
    `lakeflow list-sources`; its tests run offline with `pytest DIR`.
    """
    from lakeflow.cli.new_plugin.scaffold import Names, PluginNameError, scaffold

    kind: Kind = "streaming" if streaming else "polling"
    try:
        names = Names.of(name)
        target = directory if directory is not None else Path(names.dist)
        written = scaffold(name, kind, target)
    except (PluginNameError, FileExistsError) as exc:
        # The command line is at fault: click's usage error shows the usage with it.
        raise click.UsageError(str(exc)) from None
    try:
        if importlib.metadata.distribution(names.dist):
            click.echo(
                f"warning: a distribution {names.dist} is already installed; installing this "
                "one replaces it",
                err=True,
            )
    except importlib.metadata.PackageNotFoundError:
        pass
    click.echo(f"Created {names.dist} ({kind} source type {names.type!r}) in {target}:")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    click.echo("Next:")
    workspace = lakeflow_workspace(target)
    if workspace is not None:
        # Inside lakeflow's own repository: `uv run` installs what the root's dev group
        # lists, and an installed-by-hand plugin would be removed at the next sync.
        click.echo(
            f"  add {names.dist!r} to the dev group and `{names.dist} = {{ workspace = true }}` "
            f"to [tool.uv.sources] in {workspace / 'pyproject.toml'}"
        )
        click.echo("  uv run lakeflow list-sources")
        click.echo(f"  uv run pytest {target}")
    else:
        click.echo(f'  uv pip install -e "{target}[test]"    # or: pip install -e "{target}[test]"')
        click.echo("  lakeflow list-sources")
        click.echo(f"  pytest {target}")
    click.echo("The guide: docs/plugins.md in the lakeflow repository.")


def lakeflow_workspace(target: Path) -> Path | None:
    """The root of lakeflow's own uv workspace that ``target`` lies in, if any."""
    import tomllib

    for folder in target.resolve().parents:
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        uv = data.get("tool", {}).get("uv", {})
        if data.get("project", {}).get("name") == "lakeflow-core" and "workspace" in uv:
            return folder
    return None
