"""``lakeflow validate``: check a pipeline file and say what it would run.

It refuses what ``lakeflow run`` refuses before it collects, in the same words and with
the same exit code: a file with no sources, a store that cannot be used (a missing
bucket, refused credentials, an unreachable endpoint), a table a source cannot append
to. ``--offline`` skips what needs the network (the store, a remote table's schema) and
says so. The ``[metrics] listen`` address is not tried: the pipeline's own collector,
running while its next version is validated, holds it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from lakeflow.cli.common import Refused, load, open_sink, pipeline_argument
from lakeflow.errors import SchemaMismatch
from lakeflow.secrets import mask_uri, redact

if TYPE_CHECKING:
    from lakeflow.config import Pipeline, SourceSpec
    from lakeflow.sinks import Sink


@click.command()
@pipeline_argument
@click.option(
    "--offline",
    is_flag=True,
    help="Skip the checks that need the network: the store and remote tables.",
)
def validate(pipeline: str, offline: bool) -> None:
    """Check a pipeline file as `run` would, and say what it would run. Exits 2 if it is wrong.

    Without --offline it also reaches the store (the bucket exists, the credentials
    are accepted), as `run` does before it starts; a failure is the same line and exit
    code as `run`'s.
    """
    from lakeflow.sinks.delta.store import is_remote

    registry, spec = load(pipeline)
    if not spec.sources:
        raise Refused(f"{pipeline}: no [sources.NAME] sections: nothing to run")
    remote = is_remote(spec.sink.uri)
    # `run` checks the store before any source opens: the same call, the same error.
    sink = open_sink(registry, spec, check=not offline)
    if not (offline and remote):
        # A local table is read at once even offline: a plugin upgrade that changed a
        # column's type is found here, before a run.
        _check_schemas(pipeline, spec, sink)
    click.echo(f"{pipeline}: valid")
    if offline:
        skipped = ["the store"] + (["its tables' schemas"] if remote else [])
        click.echo(f"network checks skipped (--offline): {', '.join(skipped)} not checked")
    elif remote:
        click.echo("store: reached; the bucket exists and the credentials are accepted")
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


def _check_schemas(pipeline: str, spec: Pipeline, sink: Sink) -> None:
    """Refuse (exit 2) when a source's table cannot take its schema's rows, naming each."""
    mismatches = []
    for name, source in spec.sources.items():
        try:
            sink.check_schema(source.table, source.schema)
        except SchemaMismatch as exc:
            mismatches.append(f"{pipeline}: sources.{name}: {exc}")
    if mismatches:
        raise Refused("\n".join(mismatches))
