"""What the sink and its maintenance both need of a Delta table: property names and statistics.

Kept apart from :mod:`.sink` and :mod:`.maintain` so that neither imports the other for
them: the sink calls maintenance, and maintenance reads and sets the same properties.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from deltalake import DeltaTable

from lakeflow.sinks import TableInfo

#: How long a table keeps its log entries; the sink sets it on the tables it creates and
#: maintenance to ``log_retention``.
LOG_RETENTION = "delta.logRetentionDuration"
#: How long checkpoints keep the ``remove`` actions of rewritten files; maintenance sets
#: it to its vacuum retention, after which those files are gone anyway.
TOMBSTONE_RETENTION = "delta.deletedFileRetentionDuration"


def retention_interval(seconds: float) -> str:
    """A duration as a Delta table property takes it: ``"interval 86400 seconds"``."""
    return f"interval {int(seconds)} seconds"


def table_info(handle: DeltaTable, name: str, uri: str | None = None) -> TableInfo:
    """Statistics of an open table: version, files, rows, bytes, last commit."""
    actions = pl.DataFrame(handle.get_add_actions(flatten=True))
    history = handle.history(1)
    last = history[0].get("timestamp") if history else None
    rows = actions["num_records"].sum() if "num_records" in actions.columns else 0
    return TableInfo(
        name=name,
        uri=uri or handle.table_uri,
        version=handle.version(),
        files=actions.height,
        rows=int(rows or 0),
        bytes=int(actions["size_bytes"].sum() or 0) if actions.height else 0,
        last_commit=datetime.fromtimestamp(last / 1000, UTC) if last else None,
    )
