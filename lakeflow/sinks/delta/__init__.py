"""The built-in sink: Delta Lake tables (deltalake), on a local folder or an object store.

- :mod:`.sink`: :class:`DeltaSink`, exactly-once appends, schema evolution, the table
  properties it sets and the log it keeps short;
- :mod:`.settings`: :class:`DeltaSettings`, the sink's own keys of ``[sink]`` (storage
  options, maintenance settings), ``DeltaSink.Config``;
- :mod:`.store`: where tables live (a folder, an object store), the options refused, the
  store's errors in words;
- :mod:`.maintain`: compaction, Z-order, vacuum, checkpoint and log cleanup (the sink's
  maintenance capability, run by ``lakeflow run``'s schedule and ``lakeflow maintain``);
- :mod:`.lease`: the lease that lets one maintainer at a time rewrite a table;
- :mod:`.table`: the table properties and statistics the sink and maintenance share.

This module is registered as a built-in plugin: it implements ``register_sinks``, the
hook a third-party sink implements the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from lakeflow.hookspecs import hookimpl
from lakeflow.sinks import Sink
from lakeflow.sinks.delta.settings import DeltaSettings
from lakeflow.sinks.delta.sink import DeltaSink, portable
from lakeflow.sinks.delta.table import (
    LOG_RETENTION,
    TOMBSTONE_RETENTION,
    retention_interval,
    table_info,
)

__all__ = [
    "LOG_RETENTION",
    "TOMBSTONE_RETENTION",
    "DeltaSettings",
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
