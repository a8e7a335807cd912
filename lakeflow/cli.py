"""The ``lakeflow`` command. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from lakeflow import logs
from lakeflow.errors import ConfigError, SchemaMismatch, SinkError
from lakeflow.scaffold import new_plugin
from lakeflow.secrets import MASK, is_secret_key, mask_uri, redact

if TYPE_CHECKING:
    import polars as pl

    from lakeflow.config import Pipeline, SourceSpec
    from lakeflow.lake import Lake
    from lakeflow.plugins import Registry
    from lakeflow.sinks import Sink

# Each command imports what it uses, when it runs: `lakeflow --help` and `lakeflow status`
# must not wait for polars, deltalake, aiohttp and every plugin (bench/startup.py).

#: The pipeline a command reads when none is named.
DEFAULT_PIPELINE = "lakeflow.toml"

logger = logging.getLogger("lakeflow")

pipeline_argument = click.argument(
    "pipeline", required=False, default=DEFAULT_PIPELINE, type=click.Path(dir_okay=False)
)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"Error: {redact(message)}", err=True)
    sys.exit(code)


def _load(path: str) -> tuple[Registry, Pipeline]:
    from lakeflow.config import load_pipeline
    from lakeflow.plugins import load

    registry = load()
    try:
        return registry, load_pipeline(path, registry)
    except ConfigError as exc:
        _fail(str(exc))


def _sink(registry: Registry, pipeline: Pipeline, *, check: bool = True) -> Sink:
    """The pipeline's sink; with ``check``, after one round trip to its store.

    A missing bucket or refused credentials exit 2 here, before a command starts (a run
    before it opens any source, so nothing received can be lost).
    """
    try:
        sink = registry.sinks[pipeline.sink.type](pipeline.sink)
    except ConfigError as exc:
        _fail(f"{pipeline.path}: {exc}")
    if check:
        try:
            sink.check()
        except SinkError as exc:
            _fail(str(exc), code=2 if exc.config else 1)
    return sink


def _all_errors(registry: Registry) -> dict[str, str]:
    """The plugins' errors: loading and registering, then adding commands (not twice)."""
    errors = dict(registry.errors)
    commands = cli._plugin_commands() if isinstance(cli, LakeflowGroup) else None
    for plugin, error in (commands.errors if commands else {}).items():
        if plugin not in errors:
            errors[plugin] = error
        elif error not in errors[plugin]:
            errors[plugin] = f"{errors[plugin]}; {error}"
    return errors


def _lake(path: str) -> Lake:
    """The pipeline's tables for reading, after one round trip to the sink's store."""
    from lakeflow.lake import Lake

    registry, spec = _load(path)
    return Lake.of(spec, _sink(registry, spec))


def main() -> None:
    """The console script: runs the CLI, turning unexpected errors into one clear line.

    Set ``LAKEFLOW_DEBUG=1`` to see the traceback instead.
    """
    try:
        cli(standalone_mode=True)
    except Exception as exc:
        if os.environ.get("LAKEFLOW_DEBUG"):
            raise
        click.echo(f"Error: {redact(f'{type(exc).__name__}: {exc}')}", err=True)
        click.echo("(set LAKEFLOW_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


class LakeflowGroup(click.Group):
    """The ``lakeflow`` group: the built-in commands, then those the plugins add.

    Plugins are asked for their commands (the ``register_commands`` hook) the first time
    a command is looked up or listed, after every built-in is defined, so that a plugin
    cannot take a built-in's name.
    """

    plugin_registry: Registry | None = None

    def _plugin_commands(self) -> Registry:
        if self.plugin_registry is None:
            from lakeflow.plugins import load_commands

            self.plugin_registry = load_commands(self)
        return self.plugin_registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._plugin_commands()
        return super().get_command(ctx, cmd_name)


@click.group(cls=LakeflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lakeflow-core", prog_name="lakeflow")
def cli() -> None:
    """Collect market data into Delta Lake tables through plugins.

    PIPELINE is a pipeline file, ./lakeflow.toml by default.
    """


@cli.command()
@pipeline_argument
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME",
    help="Run only this source (repeatable). Default: all.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Poll each polling source once, commit and exit (streaming sources are skipped).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Overrides [log] level.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Also log to this file, rotated by size. Overrides [log] file.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Text lines, or one JSON object per line. Overrides [log] format.",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="Draw a live status table (default: when stdout is a terminal).",
)
def run(
    pipeline: str,
    sources: tuple[str, ...],
    once: bool,
    log_level: str | None,
    log_file: str | None,
    log_format: str | None,
    live: bool | None,
) -> None:
    """Run the pipeline's sources into its tables until SIGINT or SIGTERM.

    On a signal, sources stop reading, everything received is committed, and the
    command exits 0. On a terminal a live table shows each source's state; otherwise
    a status line per source is logged every [log] status_interval seconds.
    """
    import asyncio

    from lakeflow.runtime import Runtime
    from lakeflow.runtime.pipeline import MetricsUnavailable

    registry, spec = _load(pipeline)
    cfg = spec.log
    logs.configure(
        level=log_level or cfg.level,
        file=log_file or (str(spec.path.parent / cfg.file) if cfg.file else None),
        terminal=cfg.terminal,
        max_bytes=cfg.max_bytes,
        backups=cfg.backups,
        format=log_format or cfg.format,  # type: ignore[arg-type]
    )
    for plugin, error in registry.errors.items():
        logger.error("plugin %s failed to load and is skipped: %s", plugin, error)
    unknown = [name for name in sources if name not in spec.sources]
    if unknown:
        _fail(
            f"{pipeline}: no source named {', '.join(unknown)} "
            f"(the pipeline has: {', '.join(spec.sources) or 'none'})"
        )
    if not spec.sources:
        _fail(f"{pipeline}: no [sources.NAME] sections: nothing to run")
    if live is None:
        live = sys.stdout.isatty() and not once
    _sink(registry, spec)
    runtime = Runtime(spec, registry, only=list(sources) or None, once=once, live=live)
    if not runtime.specs:
        _fail("--once runs polling sources only, and none is selected")
    try:
        result = asyncio.run(runtime.run())
    except MetricsUnavailable as exc:
        _fail(f"{pipeline}: {exc}")
    if not result.ok:
        logger.error("sources stopped on errors: %s", ", ".join(result.failed))
        sys.exit(1)


@cli.command()
@pipeline_argument
def validate(pipeline: str) -> None:
    """Check a pipeline file and say what it would run. Exits 2 if it is wrong."""
    from lakeflow.sinks.store import is_remote

    registry, spec = _load(pipeline)
    sink = _sink(registry, spec, check=False)  # options only: validate works offline
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
            _fail("\n".join(mismatches))
    click.echo(f"{pipeline}: valid")
    click.echo(
        f"sink: {spec.sink.type} at {mask_uri(spec.sink.uri)} "
        f"(flush every {spec.sink.flush_interval:g}s or {spec.sink.flush_rows} payloads)"
    )
    maintains = registry.sinks[spec.sink.type].maintains
    if not maintains:
        said = f"none (sink type {spec.sink.type!r} does not maintain its tables)"
    else:
        said = spec.maintenance.summary() if spec.maintenance.scheduled else "off"
    click.echo(f"maintenance: {said}")
    if spec.sink.storage_options:
        shown = ", ".join(
            f"{key}={MASK if is_secret_key(key) else redact(value)}"
            for key, value in sorted(spec.sink.storage_options.items())
        )
        click.echo(f"storage options: {shown}")
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
    from lakeflow.units import format_duration

    try:
        source = spec.cls(spec.name, spec.config)
        endpoints = source.endpoints()
    except Exception as exc:  # a plugin's constructor: report, never crash validate
        click.echo(f"    (cannot tell its endpoints: {type(exc).__name__}: {exc})")
        return
    for index, url in enumerate(endpoints):
        label = "url" if index == 0 else "then"
        click.echo(f"    {label}: {mask_uri(url)}")
    if spec.cls.kind == "streaming":
        limit = spec.silence_limit(source)
        said = "never judged" if limit is None else f"more than {format_duration(limit)}"
        origin = "pipeline" if spec.silence_timeout is not None else "source type's default"
        click.echo(f"    silent when: {said} without a payload ({origin})")


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


@cli.command("list-sources")
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


@cli.command()
@pipeline_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(pipeline: str, as_json: bool) -> None:
    """Show what each source of a running (or the last) `lakeflow run` is doing.

    Per source: state, rows/s, rows, last commit age, reconnects, dead letters, gaps
    and backlog, read from the status files the run refreshes every second. Exits 0
    when every source runs and is healthy, 1 otherwise.
    """
    from rich.console import Console

    from lakeflow.pipeline_file import peek
    from lakeflow.runtime.status import read_status, status_dir
    from lakeflow.view import status_table

    # The file alone, not pydantic nor the plugins: the status files say everything else.
    try:
        names, state_dir = peek(pipeline)
    except ConfigError as exc:
        _fail(str(exc))
    statuses = read_status(status_dir(state_dir), names)
    seen = {s.source for s in statuses}
    never = [name for name in names if name not in seen]
    # Health as of each snapshot: the file is up to a publish interval old, and judged
    # now a short poll interval would look overdue. A stale file is "not running".
    problems = {s.source: s.problem(s.updated) for s in statuses}
    if as_json:
        rows = [{**json.loads(s.to_json()), "problem": problems[s.source]} for s in statuses]
        rows += [{"source": name, "running": False, "problem": "never ran"} for name in never]
        click.echo(json.dumps(rows, indent=2))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        if statuses:
            console.print(status_table(statuses))
        for name in never:
            click.echo(f"{name}: never ran with state folder {state_dir}")
        for name, problem in problems.items():
            if problem:
                click.echo(f"{name}: {problem}")
    if never or any(problems.values()):
        sys.exit(1)


@cli.command()
@pipeline_argument
def tables(pipeline: str) -> None:
    """Show each table: version, files, rows, bytes and last commit time."""
    from lakeflow.units import format_size

    lake = _lake(pipeline)
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


@cli.command()
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
    """
    import polars as pl

    if len(args) > 2:
        raise click.UsageError("expected [PIPELINE] SQL; quote the SQL as one argument")
    pipeline, sql = args if len(args) == 2 else (DEFAULT_PIPELINE, args[0])
    lake = _lake(pipeline)
    try:
        frame = lake.sql_context().execute(sql, eager=True)
    except Exception as exc:
        _fail(f"query failed: {exc}", code=1)
        return
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
            click.echo(frame)


def _utc(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cli.command()
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

    from lakeflow.replay import replay as run_replay

    registry, spec = _load(pipeline)
    _sink(registry, spec)
    window = (_utc(since, "--from"), _utc(until, "--to"))
    try:
        stats = asyncio.run(
            run_replay(spec, registry, source, table=table, since=window[0], until=window[1])
        )
    except ConfigError as exc:
        _fail(str(exc))
        return
    target = table or spec.sources[source].table
    click.echo(
        f"{source}: {stats.rows} rows in {stats.commits} commits to {target}, "
        f"{stats.dead_letters} dead letters, {stats.ignored} ignored"
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


@cli.command()
@pipeline_argument
@click.option("--table", "only", multiple=True, metavar="T", help="Only this table (repeatable).")
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
def maintain(pipeline: str, only: tuple[str, ...], dry_run: bool) -> None:
    """Compact, Z-order, vacuum and checkpoint the pipeline's tables (safe while collecting).

    Settings come from the pipeline's [maintenance] section. Prints, per table, files,
    bytes and version before and after, and the time it took.
    """
    from lakeflow.lake import Lake

    registry, spec = _load(pipeline)
    sink = _sink(registry, spec)
    if not sink.maintains:
        _fail(f"{spec.path}: sink type {spec.sink.type!r} does not maintain its tables")
    names = list(only) or Lake.of(spec, sink).tables
    click.echo(f"maintenance: {spec.maintenance.summary().split(': ', 1)[1]}")
    for table in names:
        try:
            report = sink.maintain(table, spec.maintenance, dry_run=dry_run)
        except Exception as exc:
            _fail(f"maintenance of {table} failed: {exc}", code=1)
            return
        if report is None:
            click.echo(f"{table}: no such table")
            continue
        click.echo(report.summary())


cli.add_command(new_plugin)
