"""``lakeflow validate``: check a pipeline file and say what it would run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from lakeflow.cli.common import Refused, load, open_sink, pipeline_argument
from lakeflow.errors import SchemaMismatch
from lakeflow.secrets import mask_uri, redact

if TYPE_CHECKING:
    from lakeflow.config import SourceSpec


@click.command()
@pipeline_argument
def validate(pipeline: str) -> None:
    """Check a pipeline file and say what it would run. Exits 2 if it is wrong."""
    from lakeflow.sinks.delta.store import is_remote

    registry, spec = load(pipeline)
    sink = open_sink(registry, spec, check=False)  # options only: validate works offline
    if not is_remote(spec.sink.uri):
        # Local tables are read at once: a plugin upgrade that changed a column's type
        # is found here, before a run. (An object store is checked by `run`.)
        mismatches = []
        for name, source in spec.sources.items():
            try:
                sink.check_schema(source.table, source.schema)
            except SchemaMismatch as exc:
                mismatches.append(f"{pipeline}: sources.{name}: {exc}")
        if mismatches:
            raise Refused("\n".join(mismatches))
    click.echo(f"{pipeline}: valid")
    click.echo(
        f"sink: {spec.sink.type} at {mask_uri(spec.sink.uri)} "
        f"(flush every {spec.sink.flush_interval:g}s or {spec.sink.flush_rows} payloads)"
    )
    if not sink.maintains:
        said = f"none (sink type {spec.sink.type!r} does not maintain its tables)"
    elif spec.maintenance.scheduled:
        said = f"{spec.maintenance.summary()}: {sink.describe_maintenance()}"
    else:
        said = "off"
    click.echo(f"maintenance: {said}")
    for line in sink.describe():
        click.echo(line)
    for name, source in spec.sources.items():
        keys = source.config.model_dump(exclude_defaults=True, exclude={"table"})
        shown = redact(json.dumps(keys, default=str)) if keys else "defaults"
        click.echo(
            f"source {name}: {source.cls.type} ({source.cls.kind}) -> table "
            f"{source.table} [{source.schema.name}] {shown}"
        )
        _describe_endpoints(source)
    for plugin, error in registry.errors.items():
        click.echo(f"warning: plugin {plugin} failed to load: {error}", err=True)


def _describe_endpoints(spec: SourceSpec) -> None:
    """The URLs a source will use and, for a stream, the silence that is normal."""
    from lakeflow.sources import StreamingConfig
    from lakeflow.units import format_duration

    try:
        source = spec.cls(spec.name, spec.config)
        described = source.describe()
        endpoints = source.endpoints()
        references = source.reference_data()
    except Exception as exc:  # a plugin's constructor: report, never crash validate
        click.echo(f"    (cannot tell its endpoints: {type(exc).__name__}: {exc})")
        return
    for line in described:
        click.echo(f"    {line}")
    for index, url in enumerate(endpoints):
        label = "url" if index == 0 else "then"
        click.echo(f"    {label}: {mask_uri(url)}")
    for reference in references:
        where = mask_uri(reference.url) if reference.url else "read by the plugin"
        click.echo(
            f"    reference {reference.name}: {where} (every {format_duration(reference.every)})"
        )
    config = spec.config
    if isinstance(config, StreamingConfig):
        limit = config.silence_limit()
        said = "never judged" if limit is None else f"more than {format_duration(limit)}"
        given = "silence_timeout" in config.model_fields_set and config.silence_timeout is not None
        origin = "pipeline" if given else "source type's default"
        click.echo(f"    silent when: {said} without data ({origin})")
