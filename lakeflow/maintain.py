"""Table maintenance: compaction, vacuum, checkpoint and log cleanup of Delta tables."""

from __future__ import annotations

import time
from dataclasses import dataclass

from deltalake import DeltaTable

from lakeflow.sinks import Sink, TableInfo
from lakeflow.sinks.store import explain

#: Files no longer referenced are kept this long, so readers of older versions still work.
DEFAULT_VACUUM_HOURS = 168


@dataclass(frozen=True)
class MaintainReport:
    """A table before and after maintenance, and what it took."""

    table: str
    before: TableInfo
    after: TableInfo
    compacted_files: int
    vacuumed_files: int
    seconds: float
    dry_run: bool


def maintain_table(
    sink: Sink,
    table: str,
    *,
    dry_run: bool = False,
    target_size: int | None = None,
    vacuum_hours: int = DEFAULT_VACUUM_HOURS,
) -> MaintainReport | None:
    """Compact small files, vacuum expired ones, checkpoint and clean the log of ``table``.

    Compaction rewrites files into fewer, larger ones in a commit that concurrent blind
    appends do not conflict with. Returns None when the table does not exist.
    """
    before = sink.info(table)
    if before is None:
        return None
    started = time.perf_counter()
    uri = sink.table_uri(table)
    try:
        compacted, vacuumed = _maintain(
            DeltaTable(uri, storage_options=getattr(sink, "storage_options", None)),
            dry_run,
            target_size,
            vacuum_hours,
        )
    except OSError as exc:
        raise explain(uri, exc) from exc
    after = sink.info(table) or before
    return MaintainReport(
        table=table,
        before=before,
        after=after,
        compacted_files=compacted,
        vacuumed_files=vacuumed,
        seconds=time.perf_counter() - started,
        dry_run=dry_run,
    )


def _maintain(
    handle: DeltaTable, dry_run: bool, target_size: int | None, vacuum_hours: int
) -> tuple[int, int]:
    """Compacted and vacuumed file counts (what a dry run would vacuum)."""
    compacted = vacuumed = 0
    if dry_run:
        vacuumed = len(
            handle.vacuum(
                retention_hours=vacuum_hours, dry_run=True, enforce_retention_duration=False
            )
        )
    else:
        metrics = handle.optimize.compact(target_size=target_size)
        compacted = int(metrics.get("numFilesRemoved", 0))
        vacuumed = len(
            handle.vacuum(
                retention_hours=vacuum_hours, dry_run=False, enforce_retention_duration=False
            )
        )
        handle.create_checkpoint()
        handle.cleanup_metadata()
    return compacted, vacuumed
