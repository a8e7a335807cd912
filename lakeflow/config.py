"""The pipeline file (``lakeflow.toml``): pydantic models, ``${VAR}`` substitution, errors.

Every error names the file, the TOML key path and the problem, and never the value
(a value may be a secret).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakeflow.errors import ConfigError
from lakeflow.pipeline_file import read_toml
from lakeflow.secrets import add_secret, is_secret_key
from lakeflow.units import format_duration, format_size, parse_duration, parse_size

if TYPE_CHECKING:
    from lakeflow.plugins import Registry
    from lakeflow.schema import TableSchema
    from lakeflow.sources import Source, SourceConfig

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def check_table_name(name: str) -> str:
    """Validate a table name: letters, digits and ``_`` only, so it stays inside the sink."""
    if not _TABLE_NAME.match(name):
        raise ValueError(
            f"table name {name!r} may hold only letters, digits and '_' "
            "(no path separators, dots or spaces)"
        )
    return name


def _path_like(value: str) -> str:
    """A folder or URI: not empty, no control characters (a NUL byte cannot be a path)."""
    if not value.strip():
        raise ValueError("must not be empty")
    if any(ord(c) < 32 for c in value):
        raise ValueError("must not contain control characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SinkConfig(_Strict):
    """``[sink]``: where and how often tables are written."""

    type: str = Field(default="delta", description="Registered sink type.")
    uri: str = Field(default="tables", description="Folder (relative to the pipeline file) or URI.")
    flush_interval: float = Field(default=5.0, gt=0, description="Max seconds between commits.")
    flush_rows: int = Field(
        # 25k, not more: a burst's peak memory follows the batch (decode and commit each
        # hold several times its bytes), and 50k bought 3 % more throughput for 40 MB
        # (bench/README.md, "The knobs").
        default=25_000,
        gt=0,
        description="Commit earlier at this many payloads, and at most this many per commit.",
    )
    max_buffered: int | None = Field(
        default=None,
        gt=0,
        description="Payloads held per source before backpressure (default: flush_rows).",
    )
    storage_options: dict[str, str] = Field(default_factory=dict)

    _check_uri = field_validator("uri")(lambda value: _path_like(value))

    @property
    def buffer_limit(self) -> int:
        """Payloads a source may hold before its reader waits for the sink."""
        # One batch waits while the previous one commits: more only adds memory.
        return self.max_buffered or self.flush_rows


class LogConfig(_Strict):
    """``[log]``: where log lines go."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = Field(default=None, description="Also log to this file, rotated by size.")
    terminal: bool = Field(default=True, description="Log to the terminal (stderr).")
    max_bytes: int = Field(default=10_000_000, gt=0)
    backups: int = Field(default=5, ge=0)
    format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or as one JSON object per line."
    )
    status_interval: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between status lines when stdout is not a terminal (0: none).",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class RuntimeConfig(_Strict):
    """``[runtime]``: the spool that makes received payloads durable before they commit."""

    spool: bool = Field(
        default=True,
        description="Write every payload to a local spool before it counts as received.",
    )
    state_dir: str = Field(
        default="state", description="Folder of the spool (relative to the pipeline file)."
    )
    fsync_interval: float = Field(
        default=1.0, ge=0, description="Seconds between fsyncs of the spool (0: every write)."
    )
    keep_raw: bool = Field(
        default=False, description="Keep (and gzip) spooled payloads after commit: a raw capture."
    )
    stop_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a stopping run retries a failing commit."
    )
    _check_state_dir = field_validator("state_dir")(lambda value: _path_like(value))

    segment_bytes: int = Field(
        default=64 << 20, ge=1 << 16, description="Start a new spool segment past this size."
    )


def _listen_address(value: str | None) -> str | None:
    """``host:port`` (``[::1]:port`` for IPv6); port 0 picks a free one."""
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, like 127.0.0.1:9464")
    return value


class MetricsConfig(_Strict):
    """``[metrics]``: Prometheus metrics and a health check over HTTP."""

    listen: str | None = Field(
        default=None,
        description="host:port serving /metrics and /healthz (unset: no server).",
    )
    _check_listen = field_validator("listen")(lambda value: _listen_address(value))


class MaintenanceConfig(_Strict):
    """``[maintenance]``: compaction, Z-order, vacuum and log cleanup, by ``lakeflow run``
    every ``interval`` and on demand by ``lakeflow maintain``.

    Durations are seconds or strings with a unit (``"1h"``, ``"7d"``); sizes are bytes or
    strings with a unit (``"128MiB"``).
    """

    enabled: bool = Field(default=True, description="Maintain on a schedule inside `run`.")
    interval: float = Field(
        default=3600.0, ge=0, description="Seconds between scheduled runs (0: never)."
    )
    target_file_size: int = Field(
        default=128 << 20, ge=1 << 20, description="Bytes a compacted data file aims for."
    )
    z_order: list[str] = Field(
        default_factory=lambda: ["symbol"],
        description="Columns to cluster rows by (skipped in tables that lack them).",
    )
    vacuum_retention: float = Field(
        default=86_400.0,
        ge=0,
        description="Delete files unreferenced for longer than this (seconds).",
    )
    log_retention: float = Field(
        default=3_600.0,
        gt=0,
        description=(
            "Keep log entries this long (the table's delta.logRetentionDuration). Every "
            "commit to a local table lists its whole log, so a longer log costs every commit."
        ),
    )

    _durations = field_validator("interval", "vacuum_retention", "log_retention", mode="before")(
        lambda value: parse_duration(value)
    )
    _sizes = field_validator("target_file_size", mode="before")(lambda value: parse_size(value))

    def summary(self) -> str:
        """One line: ``"every 1h: target 128.0 MiB files, Z-order by symbol, vacuum after 1d,
        log kept 1h"``."""
        z = ", ".join(self.z_order) or "nothing"
        return (
            f"every {format_duration(self.interval)}: target {format_size(self.target_file_size)} "
            f"files, Z-order by {z}, vacuum after {format_duration(self.vacuum_retention)}, "
            f"log kept {format_duration(self.log_retention)}"
        )

    @property
    def scheduled(self) -> bool:
        """True when ``lakeflow run`` should maintain on its own."""
        return self.enabled and self.interval > 0


class PipelineFile(_Strict):
    """The whole file, before sources are matched with their plugins."""

    sink: SinkConfig = Field(default_factory=SinkConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)


#: Keys the core reads from every streaming source's section, beside ``type``.
STREAMING_KEYS = ("silence_timeout",)


@dataclass(frozen=True)
class SourceSpec:
    """One configured source instance: its section name, class, validated config, table.

    ``silence_timeout`` is the pipeline's override of the source type's own (seconds;
    0 turns the check off; None: the source type decides).
    """

    name: str
    cls: type[Source]
    config: SourceConfig
    table: str
    schema: TableSchema
    silence_timeout: float | None = None

    def silence_limit(self, source: Source) -> float | None:
        """The silence a connected stream may keep before it is a problem (None: any)."""
        if self.cls.kind != "streaming":
            return None
        if self.silence_timeout is not None:
            return self.silence_timeout or None
        return getattr(source, "silence_timeout", None)


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline, ready to run."""

    path: Path
    sink: SinkConfig
    log: LogConfig
    runtime: RuntimeConfig
    sources: dict[str, SourceSpec]
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)

    def spool_dir(self, source: str) -> Path:
        """The spool folder of one source instance."""
        return Path(self.runtime.state_dir) / source

    @property
    def tables(self) -> list[str]:
        """The data tables this pipeline writes, in source order, without repeats."""
        return list(dict.fromkeys(spec.table for spec in self.sources.values()))


def read_pipeline_file(path: str | Path) -> PipelineFile:
    """Read, substitute and validate a pipeline file's own keys, without any plugin.

    Sources are left as raw sections (their keys belong to their plugins): enough for
    what needs only the file, such as ``lakeflow status``. Raises :class:`ConfigError`.
    """
    where = str(path)
    data = read_toml(path)
    try:
        return PipelineFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(where, exc, (), PipelineFile)) from None


def state_dir_of(path: str | Path, parsed: PipelineFile) -> str:
    """The pipeline's state folder, resolved against the pipeline file's folder."""
    return str((Path(path).parent / parsed.runtime.state_dir).resolve())


def load_pipeline(path: str | Path, registry: Registry) -> Pipeline:
    """Read, substitute and validate a pipeline file. Raises :class:`ConfigError`."""
    path = Path(path)
    where = str(path)
    parsed = read_pipeline_file(path)
    for key, value in parsed.sink.storage_options.items():
        if is_secret_key(key):
            add_secret(value)
    sink = parsed.sink
    if "://" not in sink.uri:
        sink = sink.model_copy(update={"uri": str((path.parent / sink.uri).resolve())})
    if sink.type not in registry.sinks:
        raise ConfigError(
            f"{where}: sink.type: unknown sink type {sink.type!r}"
            f"{_did_you_mean(sink.type, registry.sinks)}"
        )

    sources = {
        name: _load_source(where, name, section, registry)
        for name, section in parsed.sources.items()
    }
    runtime = parsed.runtime.model_copy(update={"state_dir": state_dir_of(path, parsed)})
    return Pipeline(
        path=path,
        sink=sink,
        log=parsed.log,
        runtime=runtime,
        sources=sources,
        metrics=parsed.metrics,
        maintenance=parsed.maintenance,
    )


def _load_source(
    where: str, name: str, section: Mapping[str, Any], registry: Registry
) -> SourceSpec:
    prefix = f"sources.{name}"
    if not _SOURCE_NAME.match(name):
        raise ConfigError(
            f"{where}: {prefix}: a source name may hold only letters, digits, '_' and '-'"
        )
    section = dict(section)
    kind = section.pop("type", None)
    if kind is None:
        raise ConfigError(
            f"{where}: {prefix}.type: missing; say which source this is "
            f"(installed: {', '.join(sorted(registry.sources)) or 'none'})"
        )
    if not isinstance(kind, str) or kind not in registry.sources:
        hint = _did_you_mean(str(kind), registry.sources)
        installed = ", ".join(sorted(registry.sources)) or "none"
        raise ConfigError(
            f"{where}: {prefix}.type: unknown source type {kind!r}{hint} "
            f"(installed: {installed}; `lakeflow list-sources` shows them)"
        )
    cls = registry.sources[kind].cls
    streaming = cls.kind == "streaming"
    silence = None
    if "silence_timeout" in section and "silence_timeout" not in cls.Config.model_fields:
        if not streaming:
            raise ConfigError(
                f"{where}: {prefix}.silence_timeout: applies to streaming sources only; "
                f"{kind!r} polls, and its health follows its polls"
            )
        try:
            silence = _silence_timeout(section.pop("silence_timeout"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {prefix}.silence_timeout: {exc}") from None
    try:
        config = cls.Config.model_validate(section)
    except ValidationError as exc:
        extra = ("type", *STREAMING_KEYS) if streaming else ("type",)
        raise ConfigError(
            _format_errors(where, exc, ("sources", name), cls.Config, extra_keys=extra)
        ) from None
    schema = registry.schemas.get(cls.schema)
    if schema is None:
        raise ConfigError(
            f"{where}: {prefix}.type: source type {kind!r} writes schema {cls.schema!r}, "
            "which no installed plugin registers"
        )
    table = config.table or schema.table
    try:
        check_table_name(table)
    except ValueError as exc:
        raise ConfigError(f"{where}: {prefix}.table: {exc}") from None
    if table.startswith("_"):
        raise ConfigError(
            f"{where}: {prefix}.table: names starting with '_' are reserved "
            "for lakeflow's own tables"
        )
    return SourceSpec(
        name=name, cls=cls, config=config, table=table, schema=schema, silence_timeout=silence
    )


def _silence_timeout(value: Any) -> float:
    """Seconds (a number or ``"10m"``); 0 turns the check off."""
    seconds = parse_duration(value)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError('must be seconds (300) or a duration ("5m", "2h"); 0 turns it off')
    if seconds < 0:
        raise ValueError("must not be negative (0 turns the check off)")
    return float(seconds)


def _format_errors(
    where: str,
    exc: ValidationError,
    prefix: tuple[str, ...],
    model: type[BaseModel],
    extra_keys: tuple[str, ...] = (),
) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join((*prefix, *loc)) or "(top level)"
        if error["type"] == "extra_forbidden":
            known = [*_known_keys(model, loc[:-1]), *extra_keys]
            message = f"unknown key{_did_you_mean(loc[-1], known)}"
            if known:
                message += f" (allowed: {', '.join(sorted(known))})"
        else:
            message = error["msg"]
        lines.append(f"{where}: {key}: {message}")
    return "\n".join(lines)


def _known_keys(model: type[BaseModel], parents: tuple[str, ...]) -> list[str]:
    for name in parents:
        field = model.model_fields.get(name)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
