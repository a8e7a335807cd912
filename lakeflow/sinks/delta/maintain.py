"""Table maintenance: compaction, Z-order, vacuum, checkpoint and log cleanup of Delta tables.

Safe while a collector writes: the rewrite commits with ``dataChange = false`` and only
removes files it read, so a concurrent blind append never conflicts with it (delta-rs
rebases the append on top, or the rewrite on top of the append); a rewrite whose commit
fails anyway is planned again and retried. Maintenance never takes the sink's per-table
commit lock.

Two rewrites of one table must never run at once: delta-rs 1.6 does not detect that two
concurrent optimize commits removed the same files, and both land, which doubles the
rows (checked: two handles, two ``compact()``, twice the rows). So a local table is
maintained under an exclusive ``flock`` on ``<table>/_lakeflow_maintenance.lock``
(``_`` files are ignored by Delta readers and by vacuum), shared by the scheduled
maintenance of ``lakeflow run`` and by ``lakeflow maintain``; a maintenance that finds
it taken skips the table. On object storage, where there is no lock to take, the same
part is played by a lease kept through Delta commits (:mod:`lakeflow.sinks.delta.lease`), so
several collectors' schedules and `lakeflow maintain` may share one table.

Incremental: only partitions that received appends since they were last rewritten
(two or more small files) are rewritten, so a table maintained an hour ago costs one rewrite of the
partition that grew since, and an untouched table costs a look at its file list.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from lakeflow.errors import LakeflowError
from lakeflow.sinks import TableInfo
from lakeflow.sinks.delta.lease import LeaseHeld, lease
from lakeflow.sinks.delta.settings import DeltaSettings
from lakeflow.sinks.delta.store import explain
from lakeflow.sinks.delta.table import (
    LOG_RETENTION,
    TOMBSTONE_RETENTION,
    retention_interval,
    table_info,
)
from lakeflow.units import format_size

#: Attempts at a rewrite that keeps losing commit races before giving up until next time.
ATTEMPTS = 5


@dataclass(frozen=True)
class Plan:
    """What maintenance would rewrite in one table."""

    partitions: list[dict[str, str]]
    files: int
    bytes: int
    z_order: tuple[str, ...]

    def describe(self) -> str:
        """``"rewrite 43200 files (4.6 GB) in 30 partitions, Z-ordered by symbol"``."""
        if not self.files:
            return "nothing to compact"
        how = f"Z-ordered by {', '.join(self.z_order)}" if self.z_order else "compacted"
        count = len(self.partitions)
        plural = "s" if count > 1 else ""
        where = f" in {count} partition{plural}" if self.partitions != [{}] else ""
        return f"rewrite {self.files} files ({format_size(self.bytes)}){where}, {how}"


@dataclass(frozen=True)
class MaintainReport:
    """A table before and after maintenance, and what it took."""

    table: str
    before: TableInfo
    after: TableInfo
    plan: Plan
    vacuumed_files: int
    seconds: float
    dry_run: bool
    retries: int = 0
    skipped: bool = False
    #: Who holds the table's maintenance, when known (an object store's lease).
    holder: str = ""

    def summary(self) -> str:
        """One line: files, bytes and version before and after, and the time it took."""
        b, a = self.before, self.after
        if self.skipped:
            held = f" ({self.holder})" if self.holder else ""
            return f"{self.table}: skipped, another maintenance of this table is running{held}"
        if self.dry_run:
            return (
                f"{self.table}: {b.files} files, {format_size(b.bytes)}, version {b.version}; "
                f"would {self.plan.describe()}, vacuum {self.vacuumed_files} files "
                f"(dry run, {self.seconds:.2f}s)"
            )
        done = self.plan.describe().replace("rewrite", "rewrote", 1)
        return (
            f"{self.table}: files {b.files} -> {a.files}, bytes {format_size(b.bytes)} -> "
            f"{format_size(a.bytes)}, version {b.version} -> {a.version}; {done}, vacuumed "
            f"{self.vacuumed_files} files; {self.seconds:.2f}s"
            + (f" ({self.retries} commit conflicts retried)" if self.retries else "")
        )


def plan(handle: DeltaTable, settings: DeltaSettings) -> Plan:
    """The partitions worth rewriting: those holding two or more small files.

    A file is small below a quarter of ``target_file_size``. Appends are small (one
    flush each); a rewrite leaves at most one small file per partition (the remainder),
    since delta-rs fills its output files to between about half the target and the
    target. So a partition that received appends since the last run is rewritten whole,
    Z-ordered when the table has the ``z_order`` columns, and one that did not is left
    alone: a second run on a maintained table only reads the file list.
    """
    columns = {f.name for f in handle.schema().fields}
    partition_by = list(handle.metadata().partition_columns)
    z_order = tuple(c for c in settings.z_order if c in columns and c not in partition_by)
    actions = pl.DataFrame(handle.get_add_actions(flatten=True))
    if actions.height == 0:
        return Plan([], 0, 0, z_order)
    keys = [f"partition.{c}" for c in partition_by]
    small = pl.col("size_bytes") < settings.target_file_size // 4
    groups = (
        actions.group_by(keys or pl.lit(0).alias("_all"))
        .agg(
            pl.len().alias("files"),
            pl.col("size_bytes").sum().alias("bytes"),
            small.sum().alias("small"),
        )
        .filter(pl.col("small") >= 2)
    )
    if groups.height == 0:
        return Plan([], 0, 0, z_order)
    partitions = [
        {c: _partition_value(row[f"partition.{c}"]) for c in partition_by}
        for row in groups.iter_rows(named=True)
    ]
    return Plan(partitions, int(groups["files"].sum()), int(groups["bytes"].sum()), z_order)


def _partition_value(value: Any) -> str:
    # Delta stores partition values as strings; dates as ISO dates.
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _rewrite(handle: DeltaTable, work: Plan, settings: DeltaSettings) -> None:
    """Compact or Z-order the planned partitions, one commit per filter."""
    if work.partitions == [{}] or not work.partitions:
        filters: list[Any] = [None]
    elif len(work.partitions[0]) == 1:
        # One partition column (the usual `date`): every planned partition in one call.
        (column,) = work.partitions[0]
        filters = [[(column, "in", [p[column] for p in work.partitions])]]
    else:
        filters = [[(c, "=", v) for c, v in p.items()] for p in work.partitions]
    for partition_filters in filters:
        if work.z_order:
            handle.optimize.z_order(
                list(work.z_order),
                partition_filters=partition_filters,
                target_size=settings.target_file_size,
            )
        else:
            handle.optimize.compact(
                partition_filters=partition_filters, target_size=settings.target_file_size
            )


def _with_retries(action: Callable[[], None], handle: DeltaTable) -> int:
    """Run ``action``; when its commit loses a race, reload the table and run it again."""
    for attempt in range(ATTEMPTS):
        try:
            action()
            return attempt
        except CommitFailedError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
            handle.update_incremental()
    return ATTEMPTS


class Busy(LakeflowError):
    """Another maintenance of the table holds its lock or lease."""


@contextlib.contextmanager
def exclusive(uri: str, storage_options: Mapping[str, str] | None = None) -> Iterator[None]:
    """Hold the table's maintenance lock, or its lease on object storage.

    Raises :class:`Busy` at once if another maintenance holds it.
    """
    if "://" in uri and not uri.startswith("file://"):
        try:
            with lease(uri, storage_options):
                yield
        except LeaseHeld as exc:
            raise Busy(str(exc)) from None
        return
    path = Path(uri.removeprefix("file://")) / "_lakeflow_maintenance.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy() from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def maintain_table(
    table: str,
    uri: str,
    settings: DeltaSettings,
    *,
    storage_options: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> MaintainReport | None:
    """Compact (or Z-order), vacuum, checkpoint and clean the log of ``table`` at ``uri``.

    Returns None when the table does not exist. With ``dry_run`` nothing is written:
    the report says what would be rewritten and vacuumed. Blocks; call it from a
    worker thread inside the event loop.
    """
    options = dict(storage_options) if storage_options else None
    try:
        return _open_and_maintain(table, uri, settings, options, dry_run)
    except OSError as exc:
        # An object store's failures arrive as OSError: one line that says what to change.
        raise explain(uri, exc) from exc


def _open_and_maintain(
    table: str,
    uri: str,
    settings: DeltaSettings,
    storage_options: dict[str, str] | None,
    dry_run: bool,
) -> MaintainReport | None:
    started = time.perf_counter()
    try:
        handle = DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return None
    before = table_info(handle, table)
    if dry_run:
        return _maintain(handle, table, before, settings, True, started)
    try:
        with exclusive(uri, storage_options):
            return _maintain(handle, table, before, settings, False, started)
    except Busy as exc:
        empty = Plan([], 0, 0, ())
        return MaintainReport(
            table, before, before, empty, 0, 0.0, False, skipped=True, holder=str(exc)
        )


def _maintain(
    handle: DeltaTable,
    table: str,
    before: TableInfo,
    settings: DeltaSettings,
    dry_run: bool,
    started: float,
) -> MaintainReport:
    # deltalake vacuums by whole hours: round up, so nothing younger than asked goes.
    vacuum_hours = math.ceil(settings.vacuum_retention / 3600)
    work = plan(handle, settings)
    if dry_run:
        doomed = handle.vacuum(
            retention_hours=vacuum_hours, dry_run=True, enforce_retention_duration=False, full=True
        )
        return MaintainReport(
            table, before, before, work, len(doomed), time.perf_counter() - started, True
        )

    # Under the lock now: what another maintenance committed before must be seen, or
    # this one would rewrite files that are already gone (and double their rows).
    handle.update_incremental()
    retries = 0
    wanted = {
        LOG_RETENTION: retention_interval(settings.log_retention),
        TOMBSTONE_RETENTION: retention_interval(settings.vacuum_retention),
    }
    configuration = handle.metadata().configuration
    if any(configuration.get(key) != value for key, value in wanted.items()):
        # A metadata commit, so only when a setting changes: cleanup_metadata reads the
        # log retention, and checkpoints drop the rewrites' `remove` actions once they
        # are older than the tombstone retention. Without it delta-rs keeps them a week,
        # in every checkpoint and every opened snapshot: 20,000 commits compacted hourly
        # left 20,000 of them, ~1.8 KB of memory each (bench/README.md, "longrun.py").
        retries += _with_retries(lambda: handle.alter.set_table_properties(wanted), handle)

    def rewrite() -> None:
        nonlocal work
        work = plan(handle, settings)  # again after a lost race: the table moved on
        if work.files:
            _rewrite(handle, work, settings)

    retries += _with_retries(rewrite, handle)
    # Full, not lite: a lite vacuum deletes only the files whose `remove` the snapshot
    # still holds, and a checkpoint drops those once older than the tombstone retention,
    # so a round that came late (skipped, failing, maintenance off for a while) would
    # leave their files on disk for good. Full lists the table's data files and deletes
    # any that no version within the retention references (crash leftovers too).
    vacuumed = handle.vacuum(
        retention_hours=vacuum_hours, dry_run=False, enforce_retention_duration=False, full=True
    )
    handle.update_incremental()
    handle.create_checkpoint()
    handle.cleanup_metadata()
    after = table_info(handle, table)
    return MaintainReport(
        table,
        before,
        after,
        work,
        len(vacuumed),
        time.perf_counter() - started,
        False,
        retries,
    )
