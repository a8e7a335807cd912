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
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from arro3.core import RecordBatchReader
from deltalake import CommitProperties, DeltaTable, Schema, Transaction, write_deltalake
from deltalake.exceptions import SchemaMismatchError, TableNotFoundError
from deltalake.schema import PrimitiveType

from lakeflow.config import SinkConfig, check_table_name
from lakeflow.errors import SchemaMismatch
from lakeflow.hookspecs import hookimpl
from lakeflow.schema import TableSchema
from lakeflow.secrets import mask_uri
from lakeflow.sinks import Sink, TableInfo
from lakeflow.sinks.store import check_options, explain, is_remote


class DeltaSink(Sink):
    """Delta tables under ``sink.uri``, one folder (or prefix) per table."""

    type = "delta"

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        self.root = config.uri.rstrip("/")
        self.storage_options = dict(config.storage_options) or None
        self.remote = is_remote(self.root)
        # Options under which concurrent commits are unsafe are refused before any I/O.
        check_options(self.root, config.storage_options)
        # One lock per table: commits from several sources to one table take turns in
        # this process instead of racing to the same log version and retrying.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._tables: dict[str, DeltaTable] = {}
        #: Per record schema, its columns as Delta types (worked out once, compared per commit).
        self._delta_types: dict[str, dict[str, object]] = {}

    def table_uri(self, table: str) -> str:
        return f"{self.root}/{check_table_name(table)}"

    def _lock(self, table: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(table, threading.Lock())

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
        handle = self._tables.get(table)
        try:
            if handle is not None:
                handle.update_incremental()
                return handle
            handle = DeltaTable(self.table_uri(table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except OSError as exc:
            raise explain(self.table_uri(table), exc) from exc
        self._tables[table] = handle
        return handle

    def committed_sequence(self, table: str, app_id: str) -> int | None:
        with self._lock(table):
            handle = self._open(table)
            return None if handle is None else handle.transaction_version(app_id)

    def commit(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, app_id: str, sequence: int
    ) -> bool:
        frame = schema.conform(rows)
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
                    frame,
                    mode="append",
                    partition_by=list(schema.partition_by) or None,
                    # Only when columns were added: merge mode also casts mismatched
                    # types silently, which _added_columns has already refused.
                    schema_mode="merge" if added else None,
                    storage_options=self.storage_options if handle is None else None,
                    description=schema.description or None,
                    commit_properties=CommitProperties(
                        app_transactions=[Transaction(app_id, sequence)],
                        custom_metadata={"lakeflow.source": app_id},
                    ),
                )
            except SchemaMismatchError as exc:
                # What _added_columns did not foresee: said in lakeflow's terms, so that
                # the committer stops the source instead of retrying forever.
                raise SchemaMismatch(
                    f"table {table!r} ({mask_uri(self.table_uri(table))}) refused the rows "
                    f"of record schema {schema.name!r}: {exc}"
                ) from exc
            except OSError as exc:
                raise explain(self.table_uri(table), exc) from exc
            if added:
                # deltalake moves this handle past its own commit, but the schema change
                # is rare enough to pay one fresh open for, so that no later commit or
                # scan of this sink can compare against the schema from before it.
                self._tables.pop(table, None)
            return True

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

    def scan(self, table: str) -> pl.LazyFrame | None:
        with self._lock(table):
            handle = self._open(table)
        # polars reads the snapshot of the handle just opened (with its storage options)
        # instead of opening the table a second time: on a table with a long log that
        # open is most of a small query.
        return None if handle is None else pl.scan_delta(handle)


def _named(kind: object) -> str:
    """A Delta type as Delta writes it (``decimal(38,18)``, ``long``)."""
    return kind.type if isinstance(kind, PrimitiveType) else str(kind)


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


@hookimpl
def register_sinks(register) -> None:  # type: ignore[no-untyped-def]
    register(DeltaSink)
