"""The pipeline file's sections as pydantic models, and the validated pipeline.

Lower layers (the sink, maintenance, the committer) import their settings from here;
reading a file and binding it to the plugins is :mod:`lakeflow.config.loader`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakeflow.units import Duration, format_duration, parse_size

if TYPE_CHECKING:
    from lakeflow.schema import TableSchema
    from lakeflow.sources import Source, SourceConfig

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")

#: ``[sink] max_buffered_bytes`` by default: 64 MiB of payloads per source.
DEFAULT_BUFFERED_BYTES = 64 << 20


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
    """``[sink]``: where and how often tables are written.

    These keys are every sink type's. The section's other keys belong to the sink type
    (``storage_options``, ``z_order``, ... for ``delta``): kept as written in
    :attr:`options`, and validated by the sink type's ``Config`` when the pipeline is
    bound to the plugins (:func:`lakeflow.config.load_pipeline`) and when the sink is made.
    """

    # Extra keys are the sink type's, unknown until the plugins are loaded.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(default="delta", description="Registered sink type.")
    uri: str = Field(default="tables", description="Folder (relative to the pipeline file) or URI.")
    flush_interval: Duration = Field(default=5.0, gt=0, description="Max seconds between commits.")
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
    max_buffered_bytes: int = Field(
        # A payload count alone bounds nothing when frames are large: 25,000 frames of
        # 1 MiB are 25 GB. Half of this is also the most one commit decodes at once.
        default=DEFAULT_BUFFERED_BYTES,
        ge=1 << 20,
        description=(
            "Bytes of payloads held per source before backpressure; a flush starts at "
            "half of it, and one commit takes at most half (bytes, or a size like '64MiB')."
        ),
    )
    _check_uri = field_validator("uri")(lambda value: _path_like(value))
    _sizes = field_validator("max_buffered_bytes", mode="before")(lambda value: parse_size(value))

    @property
    def options(self) -> dict[str, Any]:
        """The sink type's own keys of ``[sink]``, as written (its ``Config`` validates them)."""
        return dict(self.model_extra or {})

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
    status_interval: Duration = Field(
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
    fsync_interval: Duration = Field(
        default=1.0, ge=0, description="Seconds between fsyncs of the spool (0: every write)."
    )
    keep_raw: bool = Field(
        default=False, description="Keep (and gzip) spooled payloads after commit: a raw capture."
    )
    stop_timeout: Duration = Field(
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


#: Keys ``[maintenance]`` had before they became settings of the sink type (of the Delta
#: sink, which alone had them): still read there, with a warning, and moved to ``[sink]``
#: by the loader.
MOVED_MAINTENANCE_KEYS = ("target_file_size", "z_order", "vacuum_retention", "log_retention")


class MaintenanceConfig(_Strict):
    """``[maintenance]``: when the sink maintains its tables, by ``lakeflow run`` every
    ``interval`` (``lakeflow maintain`` runs it on demand).

    What maintenance does (compaction, Z-order, vacuum, the log) is the sink type's, set
    in ``[sink]`` (:meth:`lakeflow.Sink.describe_maintenance`). Durations are seconds or
    strings with a unit (``"1h"``, ``"7d"``).
    """

    enabled: bool = Field(default=True, description="Maintain on a schedule inside `run`.")
    interval: Duration = Field(
        default=3600.0, ge=0, description="Seconds between scheduled runs (0: never)."
    )
    # Deprecated: the sink's settings now. Kept as written (the sink type's Config checks
    # them), None when not set; the loader moves them to [sink] (:meth:`moved`).
    target_file_size: Any = Field(default=None, description="Deprecated: [sink] target_file_size.")
    z_order: Any = Field(default=None, description="Deprecated: [sink] z_order.")
    vacuum_retention: Any = Field(default=None, description="Deprecated: [sink] vacuum_retention.")
    log_retention: Any = Field(default=None, description="Deprecated: [sink] log_retention.")

    def moved(self) -> dict[str, Any]:
        """The deprecated keys (:data:`MOVED_MAINTENANCE_KEYS`) this section set, as written."""
        written = self.model_fields_set
        return {key: getattr(self, key) for key in MOVED_MAINTENANCE_KEYS if key in written}

    def summary(self) -> str:
        """The schedule: ``"every 1h"`` (the sink says what it does each time)."""
        return f"every {format_duration(self.interval)}"

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


@dataclass(frozen=True)
class SourceSpec:
    """One configured source instance: its section name, class, validated config, table.

    A streaming source's silence limit is its config's
    (:meth:`lakeflow.StreamingConfig.silence_limit`).
    """

    name: str
    cls: type[Source]
    config: SourceConfig
    table: str
    schema: TableSchema


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
    #: What the file still says the old way (a deprecated key), for the person to fix:
    #: commands log them once logging is set up.
    notices: tuple[str, ...] = ()

    def spool_dir(self, source: str) -> Path:
        """The spool folder of one source instance."""
        return Path(self.runtime.state_dir) / source

    @property
    def tables(self) -> list[str]:
        """The data tables this pipeline writes, in source order, without repeats."""
        return list(dict.fromkeys(spec.table for spec in self.sources.values()))
