"""``lakeflow list-sources``: the source types the installed plugins provide."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from lakeflow.cli.group import cli

if TYPE_CHECKING:
    from lakeflow.plugins import Registry


@click.command("list-sources")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_sources(as_json: bool) -> None:
    """List the source types that installed plugins provide, and plugins that failed."""
    from lakeflow.plugins import load

    registry = load()
    rows: list[dict[str, Any]] = []
    for kind, info in sorted(registry.sources.items()):
        schema = registry.schemas.get(info.cls.schema)
        rows.append(
            {
                "type": kind,
                "kind": info.cls.kind,
                "plugin": info.plugin,
                "distribution": info.distribution,
                "version": info.version,
                "schema": info.cls.schema,
                "table": schema.table if schema else None,
                "description": info.cls.description,
                "config": _config_keys(info.cls.Config),
            }
        )
    if as_json:
        errors = [{"plugin": p, "error": e} for p, e in _all_errors(registry).items()]
        click.echo(json.dumps({"sources": rows, "errors": errors}, indent=2, default=str))
        return
    if not rows:
        click.echo("no sources installed (install a lakeflow plugin distribution)")
    for row in rows:
        click.echo(f"{row['type']}  ({row['kind']})  {row['distribution']} {row['version']}")
        click.echo(f"    {row['description']}")
        click.echo(f"    schema {row['schema']} -> table {row['table']}")
        keys = ", ".join(
            f"{k['key']}={k['default']!r}" if not k["required"] else f"{k['key']} (required)"
            for k in row["config"]
        )
        click.echo(f"    config: {keys}")
    for plugin, error in _all_errors(registry).items():
        click.echo(f"BROKEN plugin {plugin}: {error}", err=True)


def _config_keys(model: Any) -> list[dict[str, Any]]:
    keys = []
    for name, field in model.model_fields.items():
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        keys.append(
            {
                "key": name,
                "type": getattr(field.annotation, "__name__", None) or str(field.annotation),
                "required": field.is_required(),
                "default": default,
                "description": field.description or "",
            }
        )
    return keys


def _all_errors(registry: Registry) -> dict[str, str]:
    """The plugins' errors: loading and registering, then adding commands (not twice)."""
    errors = dict(registry.errors)
    for plugin, error in cli.plugin_commands().errors.items():
        if plugin not in errors:
            errors[plugin] = error
        elif error not in errors[plugin]:
            errors[plugin] = f"{errors[plugin]}; {error}"
    return errors
