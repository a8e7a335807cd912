"""The built-in sink: Delta Lake tables (deltalake), on a local folder or an object store.

- :mod:`.sink`: :class:`DeltaSink`, exactly-once appends, schema evolution, the table
  properties it sets and the log it keeps short;
- :mod:`.maintain`: compaction, Z-order, vacuum, checkpoint and log cleanup (the sink's
  maintenance capability, run by ``lakeflow run``'s schedule and ``lakeflow maintain``);
- :mod:`.lease`: the lease that lets one maintainer at a time rewrite a table.

This module is registered as a built-in plugin: it implements ``register_sinks``, the
hook a third-party sink implements the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from lakeflow.hookspecs import hookimpl
from lakeflow.sinks import Sink
from lakeflow.sinks.delta.sink import (
    LOG_RETENTION,
    TOMBSTONE_RETENTION,
    DeltaSink,
    portable,
    retention_interval,
    table_info,
)

__all__ = [
    "LOG_RETENTION",
    "TOMBSTONE_RETENTION",
    "DeltaSink",
    "portable",
    "register_sinks",
    "retention_interval",
    "table_info",
]


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Register :class:`DeltaSink` as sink type ``delta``."""
    register(DeltaSink)
