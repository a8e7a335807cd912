"""The Delta sink's own keys of ``[sink]``: its store's options and how it maintains tables.

``[sink]``'s generic keys (``type``, ``uri``, the flush and buffer limits) are the core's
(:class:`lakeflow.config.SinkConfig`); these are validated by :class:`DeltaSettings`,
``DeltaSink.Config``. Durations are seconds or strings with a unit (``"1h"``, ``"7d"``);
sizes are bytes or strings with a unit (``"128MiB"``), as :mod:`lakeflow.units` reads them.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from lakeflow.sinks import SinkSettings
from lakeflow.units import format_duration, format_size, parse_duration, parse_size


class DeltaSettings(SinkSettings):
    """``[sink]`` keys of ``type = "delta"``: storage options and maintenance settings."""

    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Options given to deltalake and polars as they are (credentials, endpoint).",
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
        # Set on every table the sink creates, from its first commit. Without it
        # delta-rs keeps 30 days of log, and a commit to a local table lists the whole
        # _delta_log twice (about 3 us an entry per commit here): 518,400 entries at the
        # default 5 s flush. A day (17,280 entries) measured 65-75 ms a commit against
        # 18 ms at first; an hour (720 entries) stayed at the first commits' cost
        # (bench/README.md, "longrun.py").
        default=3_600.0,
        gt=0,
        description=(
            "Keep log entries this long (the table's delta.logRetentionDuration). Every "
            "commit to a local table lists its whole log, so a longer log costs every commit."
        ),
    )

    _durations = field_validator("vacuum_retention", "log_retention", mode="before")(
        lambda value: parse_duration(value)
    )
    _sizes = field_validator("target_file_size", mode="before")(lambda value: parse_size(value))

    def summary(self) -> str:
        """What maintenance does, in one line: ``"target 128.0 MiB files, Z-order by symbol,
        vacuum after 1d, log kept 1h"``."""
        z = ", ".join(self.z_order) or "nothing"
        return (
            f"target {format_size(self.target_file_size)} files, Z-order by {z}, "
            f"vacuum after {format_duration(self.vacuum_retention)}, "
            f"log kept {format_duration(self.log_retention)}"
        )
