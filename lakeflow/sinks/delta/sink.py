"""The built-in sink: Delta Lake tables in a local folder or object store (deltalake).

One batch is one Delta commit. Each commit carries an application transaction
``(app_id, sequence)``: ``app_id`` names the source instance, ``sequence`` the last
payload in the batch. Before writing, the sink reads the table's recorded sequence for
that app_id, so a batch that already landed (a retry after an error that struck after
the commit, or a replay after a crash) is skipped rather than written twice.

A record schema may grow: when a plugin upgrade adds columns, the next commit to an
existing table adds them as nullable columns (rows written before read null). That is
the only change made to a table's schema; a column whose type changed, or a table
column the record schema no longer has, stops the commit with :class:`SchemaMismatch`.

A collector commits for months in one process, so no commit may cost more because many
came before it. A table the sink creates gets a checkpoint every
:data:`CHECKPOINT_INTERVAL` commits (``delta.checkpointInterval``), written by the commit
that reaches it; the sink keeps one handle per table, refreshed between checkpoints and
opened afresh after each one, and leaves the log listing that expired-log cleanup needs
to the commits that write a checkpoint. A table it creates also keeps an hour of log
(``delta.logRetentionDuration``): delta-rs lists a local table's whole log on every
commit, so the log's length is a commit's cost. What still grows is the table's own
file list: that is maintenance's job, and the sink warns once when a table holds more
than :data:`FILES_WARNING` files, or a local one more than :data:`LOG_WARNING` log
entries.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from pathlib import Path

import polars as pl
from arro3.core import DataType, RecordBatchReader, Table
from deltalake import (
    CommitProperties,
    DeltaTable,
    PostCommitHookProperties,
    Schema,
    Transaction,
    write_deltalake,
)
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    DeltaProtocolError,
    SchemaMismatchError,
    TableNotFoundError,
)
from deltalake.schema import PrimitiveType

from lakeflow.config.models import SinkConfig, check_table_name
from lakeflow.errors import LakeflowError, RowsRefused, SchemaMismatch, SinkError
from lakeflow.schema import TableSchema
from lakeflow.secrets import MASK, is_secret_key, mask_uri, redact
from lakeflow.sinks import Sink, TableInfo
from lakeflow.sinks.delta.maintain import MaintainReport, maintain_table
from lakeflow.sinks.delta.settings import DeltaSettings
from lakeflow.sinks.delta.store import StoreError, check_options, explain, is_remote, recognize
from lakeflow.sinks.delta.table import LOG_RETENTION, retention_interval, table_info

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "delta.checkpointInterval"
#: Log entries of a local table above which the sink warns (checked once a checkpoint).
LOG_WARNING = 50_000
#: ``delta.checkpointInterval`` of the tables the sink creates. delta-rs's own default,
#: written down so that other writers (Spark's default is 10) keep the same cadence.
#: A shorter interval writes proportionally more checkpoints, each holding every file
#: of the table, for replays that are already short (at most 99 JSON entries).
CHECKPOINT_INTERVAL = 100
#: What delta-rs assumes for a table without the property.
DEFAULT_CHECKPOINT_INTERVAL = 100
#: Active data files above which the sink warns that a table needs maintenance.
FILES_WARNING = 10_000
#: How deltalake says a table needs what it cannot do ("Unsupported: Feature 'x' is not
#: supported"): at an open, that is the table's protocol, never the rows. Not an HTTP
#: status line ("415 Unsupported Media Type" from a proxy is an outage to retry).
_UNSUPPORTED = re.compile(r"(?<!\d{3} )\bUnsupported\b(?! Media Type)|is not supported")


class DeltaSink(Sink):
    """Delta tables under ``sink.uri``, one folder (or prefix) per table."""

    type = "delta"
    maintains = True
    Config = DeltaSettings
    settings: DeltaSettings

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        self.root = config.uri.rstrip("/")
        self.storage_options = dict(self.settings.storage_options) or None
        self.remote = is_remote(self.root)
        # Options under which concurrent commits are unsafe are refused before any I/O.
        check_options(self.root, self.settings.storage_options)
        # One lock per table: commits from several sources to one table take turns in
        # this process instead of racing to the same log version and retrying.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._tables: dict[str, DeltaTable] = {}
        # delta-rs appends every incremental refresh of a handle to the handle's file list
        # and never merges it (delta-io/kafka-delta-ingest#227): a handle kept for the life
        # of the process makes every commit slower and the process bigger (issue 16: 3,000
        # commits, 14 s per 500 at first, 182 s at the end, RSS 180 -> 269 MB), while a
        # fresh open reads the latest checkpoint and little else. So a handle lives from
        # one checkpoint to the next.
        #: Per table, the version its handle was opened at and its checkpoint interval.
        self._opened: dict[str, int] = {}
        self._intervals: dict[str, int] = {}
        #: Per table, whether its commits may delete expired log entries.
        self._cleanup: dict[str, bool] = {}
        #: Tables warned about for their file count (once, until maintenance catches up).
        self._crowded: set[str] = set()
        #: Handles opened, a table's first open included (seen by tests and bench/longrun.py).
        self.opens = 0
        #: Active files above which a table is reported as needing maintenance.
        self.files_warning = FILES_WARNING
        #: Log entries above which a local table is reported as keeping too long a log.
        self.log_warning = LOG_WARNING
        self._long_logs: set[str] = set()
        #: Per record schema, its columns as Delta types (worked out once, compared per commit).
        self._delta_types: dict[str, dict[str, object]] = {}

    def table_uri(self, table: str) -> str:
        return f"{self.root}/{check_table_name(table)}"

    def _lock(self, table: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(table, threading.Lock())

    def describe(self) -> list[str]:
        """The storage options, for ``lakeflow validate``: credentials masked.

        The maintenance settings are shown with the schedule (:meth:`describe_maintenance`).
        """
        if not self.settings.storage_options:
            return []
        shown = ", ".join(
            f"{key}={MASK if is_secret_key(key) else redact(value)}"
            for key, value in sorted(self.settings.storage_options.items())
        )
        return [f"storage options: {shown}"]

    def check(self) -> None:
        """Reach the store once; :class:`StoreError` says what is wrong if it cannot.

        A missing bucket, refused credentials, an unreachable endpoint. A local folder
        needs nothing (it is created on the first commit).
        """
        if not self.remote:
            return
        try:
            # The root itself is (normally) no table: "not found" proves the bucket
            # exists and the credentials may list it, in one request.
            DeltaTable(self.root, storage_options=self.storage_options)
        except TableNotFoundError:
            return
        except OSError as exc:
            raise explain(self.root, exc) from exc

    def _open(self, table: str) -> DeltaTable | None:
        """The table's handle at its latest version, or None if there is no table yet.

        Refreshed in place between checkpoints, opened afresh once a checkpoint was
        written since it was opened. Call it under the table's lock.
        """
        handle = self._tables.get(table)
        try:
            if handle is not None and self._refreshed(table, handle):
                return handle
            handle = DeltaTable(self.table_uri(table), storage_options=self.storage_options)
        except TableNotFoundError:
            self._tables.pop(table, None)
            return None
        except (OSError, DeltaError) as exc:
            # Opening reads the log only: whatever fails, the rows are not at fault (so
            # the committer must not look for payloads to set aside). A table needing
            # Delta features this deltalake lacks, a refused write or credential needs a
            # person; the rest (an outage, a log entry the store served half of) is
            # retried. deltalake 1.x reports an unknown feature as a plain DeltaError.
            if isinstance(exc, DeltaError) and (
                isinstance(exc, DeltaProtocolError) or _UNSUPPORTED.search(str(exc))
            ):
                raise self._unsupported(table, exc, "read") from exc
            raise explain(self.table_uri(table), exc) from exc
        self._tables[table] = handle
        self._opened_now(table, handle)
        return handle

    def _opened_now(self, table: str, handle: DeltaTable) -> None:
        """Note what a fresh handle says about its table; warn if it holds too many files."""
        self.opens += 1
        self._opened[table] = handle.version()
        configuration = handle.metadata().configuration
        self._intervals[table] = _interval(configuration.get(CHECKPOINT_KEY))
        # delta-rs cleans the log after commits unless the table says otherwise.
        cleanup = configuration.get("delta.enableExpiredLogCleanup", "true")
        self._cleanup[table] = str(cleanup).strip().lower() != "false"
        # Here, once a checkpoint interval, the file count is nearly free (the handle has
        # just read the list): a commit rereads that list, and every reader of the table
        # with it, so a table that maintenance does not compact gets slower to commit to.
        files = handle.get_add_actions().num_rows
        if files <= self.files_warning:
            self._crowded.discard(table)
        elif table not in self._crowded:
            self._crowded.add(table)
            logger.warning(
                "table %r (%s) holds %s data files, more than %s: every commit and every "
                "open of the table reads all of them, so commits get slower and the "
                "collector bigger. Compact it with `lakeflow maintain`, or turn on "
                "scheduled maintenance (`[maintenance]` enabled = true and an interval, "
                "hourly by default); if it is on, its log lines say why it did not run "
                "(skipped while another maintainer holds the table, or failed).",
                table,
                mask_uri(self.table_uri(table)),
                f"{files:,}",
                f"{self.files_warning:,}",
            )
        if not self.remote:
            self._check_log(table, configuration.get(LOG_RETENTION))

    def _check_log(self, table: str, retention: str | None) -> None:
        """Warn once when a local table's ``_delta_log`` holds more than ``log_warning`` entries.

        delta-rs lists a local log whole, twice, on every commit, so the log's length is
        what a commit costs once the files are compacted. Expired entries go at the
        commits that write a checkpoint, so the log is as long as its retention.
        """
        log = Path(self.table_uri(table).removeprefix("file://")) / "_delta_log"
        try:
            with os.scandir(log) as entries:
                count = sum(1 for _ in entries)
        except OSError:
            return
        if count <= self.log_warning:
            self._long_logs.discard(table)
        elif table not in self._long_logs:
            self._long_logs.add(table)
            logger.warning(
                "table %r (%s) keeps %s log entries, more than %s: every commit lists them "
                "all (about %.0f ms a commit now). Its log retention is %s; a shorter "
                "`[sink] log_retention` (set on the table by scheduled maintenance or "
                "`lakeflow maintain`) keeps the log, and the commits, short.",
                table,
                mask_uri(self.table_uri(table)),
                f"{count:,}",
                f"{self.log_warning:,}",
                count * 2 * 1.7e-3,
                retention or "delta-rs's default of 30 days",
            )

    def _refreshed(self, table: str, handle: DeltaTable) -> bool:
        """Bring ``handle`` to the table's latest version; False if it should be reopened.

        An object store's listing starts at the handle's version: refresh. A local
        folder is listed whole on every refresh (as long as the log is: a day of
        entries), so there the next version's file is
        looked for instead: versions have no gaps, so when it is absent nobody committed
        since (the handle follows the sink's own commits). When the handle's own version
        is gone too, log cleanup ran past an idle handle: only a fresh open is safe.
        """
        if self._past_checkpoint(table, handle):
            return False
        if self.remote:
            handle.update_incremental()
        else:
            log = Path(self.table_uri(table).removeprefix("file://")) / "_delta_log"
            version = handle.version()
            if not (log / f"{version:020d}.json").exists():
                return False
            if (log / f"{version + 1:020d}.json").exists():
                handle.update_incremental()
        return not self._past_checkpoint(table, handle)

    def _past_checkpoint(self, table: str, handle: DeltaTable) -> bool:
        """True once a checkpoint version lies after the handle's open, up to its version.

        delta-rs checkpoints version ``v`` when ``(v + 1) % interval == 0``. Should a
        writer place them elsewhere, this still renews the handle once an interval.
        """
        every = self._intervals.get(table, DEFAULT_CHECKPOINT_INTERVAL)
        return (handle.version() + 1) // every > (self._opened.get(table, -1) + 1) // every

    def _post_commit(self, table: str, handle: DeltaTable | None) -> PostCommitHookProperties:
        """Checkpoint when one is due, and clean up the log only on that commit.

        delta-rs's cleanup of expired log entries lists the whole ``_delta_log`` after
        every commit (a third listing beside the commit's own two, each as long as the
        log), and only the newest checkpoint lets it delete anything. So it runs on the commit
        that should write a checkpoint (the next version, unless another writer wins the
        race: then a later checkpoint does it), and only if the table allows it.
        """
        if handle is None:
            return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
        every = self._intervals.get(table, DEFAULT_CHECKPOINT_INTERVAL)
        due = (handle.version() + 2) % every == 0
        return PostCommitHookProperties(
            create_checkpoint=True,
            cleanup_expired_logs=due and self._cleanup.get(table, True),
        )

    def committed_sequence(self, table: str, app_id: str) -> int | None:
        with self._lock(table):
            handle = self._open(table)
            return None if handle is None else handle.transaction_version(app_id)

    def commit(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, app_id: str, sequence: int
    ) -> bool:
        """Append ``rows`` in one commit tagged ``(app_id, sequence)``; see the module.

        Errors come out as lakeflow's kinds, so the committer never reads their text:
        :class:`RowsRefused` when the rows cannot take the schema's types,
        :class:`SchemaMismatch`, a :class:`~lakeflow.sinks.delta.store.StoreError` for the
        store (``config`` when a person must act: a missing bucket, refused credentials or
        writes; not for an outage, a lost race or a log it could not read), a
        :class:`SinkError` with ``config`` for a table needing Delta features this
        deltalake lacks. A writer's error whose words do not say whose fault it is (a
        panic on a partition value) passes as it is: :meth:`check_rows` then tells
        whether the rows are at fault.
        """
        try:
            frame = schema.conform(rows)
        except Exception as exc:  # polars says InvalidOperationError, ComputeError, ...
            raise RowsRefused(f"table {table!r} cannot take the rows: {_first_line(exc)}") from exc
        except BaseException as exc:
            # A Rust panic in polars (pyo3's PanicException is a BaseException).
            if type(exc).__name__ != "PanicException":
                raise
            raise RowsRefused(f"table {table!r} cannot take the rows: {exc}") from exc
        with self._lock(table):
            handle = self._open(table)
            added: list[str] = []
            if handle is not None:
                done = handle.transaction_version(app_id)
                if done is not None and done >= sequence:
                    return False
                added = self._added_columns(table, schema, handle)
            try:
                # A race with another writer (another collector, `lakeflow maintain`) for
                # the same log version is retried inside deltalake: its put-if-absent lets
                # one writer win, and a blind append never conflicts with the winner.
                write_deltalake(
                    handle if handle is not None else self.table_uri(table),
                    portable(frame),
                    mode="append",
                    partition_by=list(schema.partition_by) or None,
                    # Only when columns were added: merge mode also casts mismatched
                    # types silently, which _added_columns has already refused.
                    schema_mode="merge" if added else None,
                    storage_options=self.storage_options if handle is None else None,
                    description=schema.description or None,
                    # Table properties only when creating: an append never changes them.
                    configuration={
                        CHECKPOINT_KEY: str(CHECKPOINT_INTERVAL),
                        LOG_RETENTION: retention_interval(self.settings.log_retention),
                    }
                    if handle is None
                    else None,
                    post_commithook_properties=self._post_commit(table, handle),
                    commit_properties=CommitProperties(
                        app_transactions=[Transaction(app_id, sequence)],
                        custom_metadata={"lakeflow.source": app_id},
                    ),
                )
            except Exception as exc:
                failure = self._write_failure(table, schema, exc)
                if failure is None:
                    # It cannot be told here whether the rows or the store are at fault
                    # (a writer's error on a partition value, a store answering garbage):
                    # the committer asks check_rows, which writes the rows nowhere.
                    raise
                raise failure from exc
            if added:
                # deltalake moves this handle past its own commit, but the schema change
                # is rare enough to pay one fresh open for, so that no later commit or
                # scan of this sink can compare against the schema from before it.
                self._tables.pop(table, None)
            return True

    def _write_failure(
        self, table: str, schema: TableSchema, exc: Exception
    ) -> LakeflowError | None:
        """A failed write to ``table`` as lakeflow's kind of error, so that the committer
        never reads error text; None when the words do not say whose fault it is.
        """
        where = f"table {table!r} ({mask_uri(self.table_uri(table))})"
        if isinstance(exc, SchemaMismatchError):
            # What _added_columns did not foresee: said in lakeflow's terms, so that the
            # committer stops the source instead of retrying forever.
            return SchemaMismatch(
                f"{where} refused the rows of record schema {schema.name!r}: {exc}"
            )
        if isinstance(exc, OSError):
            return explain(self.table_uri(table), exc)
        if isinstance(exc, CommitFailedError):
            # A race lost even after deltalake's own retries: the next attempt may win.
            return StoreError(
                f"table {table!r}: another writer kept winning the commit race: {_first_line(exc)}",
                config=False,
            )
        if isinstance(exc, DeltaProtocolError):
            return self._unsupported(table, exc, "write")
        if isinstance(exc, DeltaError):
            # deltalake reports a refused write, an unreachable store or a missing bucket
            # in words only (a read-only folder even as "table not found").
            known = recognize(self.table_uri(table), exc)
            if known is not None or not isinstance(exc, TableNotFoundError):
                return known
            # Deleted under the open handle, or its folder not there to create it in: the
            # next attempt opens (or creates) it afresh.
            self._tables.pop(table, None)
            return StoreError(
                f"{where} was not found while committing: {_first_line(exc)}", config=False
            )
        return None

    def _unsupported(self, table: str, exc: DeltaError, doing: str) -> SinkError:
        """The table needs Delta features this deltalake lacks: a person must act."""
        return SinkError(
            f"table {table!r} ({mask_uri(self.table_uri(table))}) uses Delta features "
            f"this deltalake cannot {doing}: {_first_line(exc)}",
            config=True,
        )

    def check_rows(self, table: str, schema: TableSchema, rows: pl.DataFrame) -> None:
        """Write ``rows`` as ``table`` would, into a throwaway in-memory table.

        deltalake fails (or panics) on some values only while writing them, a partition
        value out of its calendar for one: the same write into ``memory://`` fails the
        same way, with nothing stored anywhere, so the committer can find which payloads
        are at fault. Raises :class:`RowsRefused` with the writer's reason.
        """
        try:
            frame = portable(schema.conform(rows))
            write_deltalake(
                f"memory:///lakeflow-check-{uuid.uuid4().hex}",
                frame,
                mode="append",
                partition_by=list(schema.partition_by) or None,
            )
        except Exception as exc:
            raise RowsRefused(f"table {table!r} cannot store the rows: {_first_line(exc)}") from exc
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            raise RowsRefused(f"table {table!r} cannot store the rows: {exc}") from exc

    def upsert(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, keys: tuple[str, ...]
    ) -> None:
        """A Delta MERGE by ``keys``: ``count`` added, the first sighting and its example
        kept, the rest replaced.

        The table is created by a plain write the first time.
        """
        frame = schema.conform(rows)
        with self._lock(table):
            handle = self._open(table)
            if handle is None:
                write_deltalake(
                    self.table_uri(table),
                    portable(frame),
                    mode="append",
                    storage_options=self.storage_options,
                    description=schema.description or None,
                    configuration={
                        CHECKPOINT_KEY: str(CHECKPOINT_INTERVAL),
                        LOG_RETENTION: retention_interval(self.settings.log_retention),
                    },
                )
                return
            predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
            updates = {
                f"`{c}`": f"s.`{c}`"
                for c in schema.columns
                if c not in (*keys, "first_seen", "example")
            }
            if "count" in schema.columns:
                updates["`count`"] = "t.`count` + s.`count`"
            try:
                (
                    handle.merge(
                        portable(frame),
                        predicate=predicate,
                        source_alias="s",
                        target_alias="t",
                        post_commithook_properties=self._post_commit(table, handle),
                    )
                    .when_matched_update(updates=updates)
                    .when_not_matched_insert_all()
                    .execute()
                )
            except Exception as exc:
                failure = self._write_failure(table, schema, exc)
                if failure is None:
                    raise
                raise failure from exc

    def check_schema(self, table: str, schema: TableSchema) -> None:
        """Raise :class:`SchemaMismatch` if the table cannot take ``schema`` by appends."""
        with self._lock(table):
            handle = self._open(table)
            if handle is not None:
                self._added_columns(table, schema, handle)

    def _added_columns(self, table: str, schema: TableSchema, handle: DeltaTable) -> list[str]:
        """The columns of ``schema`` that the table lacks, in schema order.

        Raises :class:`SchemaMismatch` if a column's type differs, the table has a
        column ``schema`` does not, or the partition columns differ: only additions
        are merged.
        """
        # Compared as Delta types, the level the table stores: polars' view types and
        # Arrow's string flavours all become the same Delta `string`. The Arrow schema
        # comes through arro3 (deltalake's own Arrow layer) because pl.Schema exports
        # one only in newer polars than lakeflow requires.
        wanted = self._delta_types.get(schema.name)
        if wanted is None:
            arrow = RecordBatchReader.from_arrow(schema.empty()).schema
            wanted = {f.name: f.type for f in Schema.from_arrow(arrow).fields}
            self._delta_types[schema.name] = wanted
        stored = {f.name: f.type for f in handle.schema().fields}
        where = f"table {table!r} ({mask_uri(self.table_uri(table))})"
        for name, kind in wanted.items():
            if name in stored and stored[name] != kind:
                raise SchemaMismatch(
                    f"{where}: column {name!r} is {_named(stored[name])} in the table but "
                    f"{_named(kind)} in "
                    f"record schema {schema.name!r}. lakeflow only adds new columns to an "
                    "existing table and never changes a column's type: write into a new "
                    "table (the source's `table` key), or convert this table's column "
                    "yourself."
                )
        partitioned = list(handle.metadata().partition_columns)
        if partitioned != list(schema.partition_by):
            raise SchemaMismatch(
                f"{where}: the table is partitioned by {partitioned or 'nothing'} but record "
                f"schema {schema.name!r} by {list(schema.partition_by) or 'nothing'}. A "
                "table's partitioning cannot change by appends: write into a new table "
                "(the source's `table` key), or rewrite this one with the new partitioning."
            )
        gone = [name for name in stored if name not in wanted]
        if gone:
            raise SchemaMismatch(
                f"{where}: the table has column(s) {', '.join(map(repr, gone))} that record "
                f"schema {schema.name!r} no longer has. lakeflow only adds columns to an "
                "existing table and never drops or renames one: write into a new table "
                "(the source's `table` key), or run the plugin version that has them."
            )
        return [name for name in wanted if name not in stored]

    def tables(self) -> list[str]:
        """The tables found under a local root.

        An object store is not listed (that needs a client beyond deltalake): commands
        show the pipeline's own tables and the system tables there.
        """
        if self.remote:
            return []
        root = Path(self.root.removeprefix("file://"))
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())

    def info(self, table: str) -> TableInfo | None:
        with self._lock(table):
            handle = self._open(table)
            if handle is None:
                return None
            return table_info(handle, table, self.table_uri(table))

    def maintain(self, table: str, *, dry_run: bool = False) -> MaintainReport | None:
        """Compact (or Z-order), vacuum, checkpoint and clean the log of ``table`` as the
        sink's settings say (``target_file_size``, ``z_order``, the retentions)."""
        return maintain_table(
            table,
            self.table_uri(table),
            self.settings,
            storage_options=self.storage_options,
            dry_run=dry_run,
        )

    def describe_maintenance(self) -> str:
        """``"target 128.0 MiB files, Z-order by symbol, vacuum after 1d, log kept 1h"``."""
        return self.settings.summary()

    def scan(self, table: str) -> pl.LazyFrame | None:
        with self._lock(table):
            handle = self._open(table)
        # polars reads the snapshot of the handle just opened (with its storage options)
        # instead of opening the table a second time: on a table with a long log that
        # open is most of a small query.
        return None if handle is None else pl.scan_delta(handle)


def portable(frame: pl.DataFrame) -> Table:
    """``frame`` as Arrow with plain ``string`` and ``binary`` columns instead of views.

    polars exports its strings as Arrow's ``string_view`` (and bytes as ``binary_view``),
    and the Parquet files keep the Arrow schema they were written with: a reader built on
    an Arrow without view types (pyarrow before 16, daft 0.7, older DuckDB and Spark's
    Arrow path) then fails on every file that maintenance has not rewritten. The cast is
    one copy of the column's bytes, done in Arrow (arro3, deltalake's own Arrow layer).
    """
    table = Table.from_arrow(frame)
    columns = []
    for column in table.columns:
        kind = column.type
        if DataType.is_string_view(kind):
            column = column.cast(DataType.utf8())
        elif DataType.is_binary_view(kind):
            column = column.cast(DataType.binary())
        columns.append(column)
    return Table.from_arrays(columns, names=table.column_names)


def _interval(value: str | None) -> int:
    """A table's ``delta.checkpointInterval``; delta-rs's default if unset or invalid."""
    try:
        every = int(value) if value is not None else DEFAULT_CHECKPOINT_INTERVAL
    except ValueError:
        return DEFAULT_CHECKPOINT_INTERVAL
    return every if every > 0 else DEFAULT_CHECKPOINT_INTERVAL


def _first_line(exc: BaseException) -> str:
    """An error's first line: deltalake's and polars' messages run on for pages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _named(kind: object) -> str:
    """A Delta type as Delta writes it (``decimal(38,18)``, ``long``)."""
    return kind.type if isinstance(kind, PrimitiveType) else str(kind)
