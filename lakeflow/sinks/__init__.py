"""Sinks: where tables are written. The built-in one is :mod:`lakeflow.sinks.delta`.

A sink type is a :class:`Sink` subclass registered through ``register_sinks``. ``[sink]``
holds the keys every sink has (``type``, ``uri``, the flush and buffer limits: the core's
:class:`~lakeflow.config.SinkConfig`) beside the sink type's own, which its ``Config``
(a :class:`SinkSettings` subclass) validates, as a source's ``Config`` validates its
section. ``lakeflow.testing.check_sink`` checks a sink type against this contract.
"""

from __future__ import annotations

import builtins
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import polars as pl
from pydantic import BaseModel, ConfigDict

from lakeflow.errors import RowsRefused
from lakeflow.schema import TableSchema
from lakeflow.secrets import MASK, is_secret_key, redact

if TYPE_CHECKING:
    from lakeflow.config.models import SinkConfig


class SinkSettings(BaseModel):
    """Base of every sink type's ``Config``: its own keys of ``[sink]``. Unknown keys are
    rejected.

    Subclass it with the sink type's keys (with defaults: a pipeline that names only
    ``type`` and ``uri`` must work) and set it as the sink's ``Config``; the sink reads
    the validated values as ``self.settings``. The generic keys (``type``, ``uri``,
    ``flush_interval``, ``flush_rows``, ``max_buffered``, ``max_buffered_bytes``) are the
    core's and must not be redeclared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class TableInfo:
    """What ``lakeflow tables`` shows about one table."""

    name: str
    uri: str
    version: int
    files: int
    rows: int
    bytes: int
    last_commit: datetime | None


class MaintenanceReport(Protocol):
    """What one table's maintenance did, as :meth:`Sink.maintain` returns it."""

    @property
    def skipped(self) -> bool:
        """True when the table was left alone (another maintainer had it)."""
        ...

    def summary(self) -> str:
        """One line for the log and ``lakeflow maintain``: before, after, what was done."""
        ...


class Sink(ABC):
    """A store of tables. One instance is shared by every source of a pipeline.

    Its methods block (they do file or network I/O) and are called from worker
    threads, never on the event loop; an implementation must be safe to call from
    several threads at once for different tables.
    """

    type: ClassVar[str]
    #: Whether :meth:`maintain` is implemented: then ``lakeflow run`` maintains the
    #: pipeline's tables on ``[maintenance]``'s schedule and ``lakeflow maintain`` runs
    #: it by hand; otherwise neither does, and ``lakeflow maintain`` says so.
    maintains: ClassVar[bool] = False
    #: The model of the sink type's own keys of ``[sink]``; none by default.
    # builtins.type: the class attribute ``type`` above shadows the builtin in this body.
    Config: ClassVar[builtins.type[SinkSettings]] = SinkSettings

    #: This sink's own settings: ``config``'s sink-type keys, validated by ``Config``.
    settings: SinkSettings

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        # The pipeline's loader validated the same keys already, to name the file and key
        # of a mistake; a sink made in code (tests, scripts) is validated here.
        self.settings = self.Config.model_validate(config.options)

    @abstractmethod
    def committed_sequence(self, table: str, app_id: str) -> int | None:
        """The highest sequence number ``app_id`` has committed to ``table``, or None."""

    @abstractmethod
    def commit(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, app_id: str, sequence: int
    ) -> bool:
        """Append ``rows`` to ``table`` in one atomic commit tagged ``(app_id, sequence)``.

        Creates the table with ``schema`` if it does not exist. Returns False without
        writing when the table already holds ``sequence`` for ``app_id`` (a retry of a
        batch that did land), True when it wrote.
        """

    def check_rows(self, table: str, schema: TableSchema, rows: pl.DataFrame) -> None:
        """Raise :class:`~lakeflow.RowsRefused` if ``commit`` would refuse ``rows``; write nothing.

        The runtime calls it only after a commit failed in a way it cannot classify, and
        then on halves of the batch, to find the payloads whose rows the sink cannot
        store: those go to ``_dead_letters`` and the rest commits. A sink whose ``commit``
        raises ``RowsRefused`` should implement it (DeltaSink writes the rows to an
        in-memory table). The default checks that the rows take the schema's types.
        """
        try:
            schema.conform(rows)
        except Exception as exc:
            raise RowsRefused(f"table {table!r} cannot take the rows: {exc}") from exc

    def upsert(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, keys: tuple[str, ...]
    ) -> None:
        """Fold ``rows`` into ``table`` by ``keys``: counts added, first/last times kept.

        For ``_drift``, whose rows are running tallies: a row whose keys the table holds
        adds its ``count`` and moves ``last_seen``; a new one is inserted. The default
        appends (readers such as ``lakeflow drift`` then sum per key); a sink that can
        merge in place overrides it.
        """
        self.commit(table, schema, rows, f"upsert:{table}", time.time_ns() // 1000)

    @abstractmethod
    def table_uri(self, table: str) -> str:
        """Where ``table`` lives, for readers such as ``polars.scan_delta``."""

    @abstractmethod
    def tables(self) -> list[str]:
        """The names of the tables that exist in this sink."""

    @abstractmethod
    def info(self, table: str) -> TableInfo | None:
        """Statistics of ``table``, or None if it does not exist."""

    def describe(self) -> list[str]:
        """Lines for ``lakeflow validate`` about the sink's own settings; secrets masked.

        The default lists the settings that differ from their defaults as ``key=value``
        (a value under a key that names a credential shown as ``***``). Never does I/O.
        """
        changed = self.settings.model_dump(mode="json", exclude_defaults=True)
        if not changed:
            return []
        shown = ", ".join(
            f"{key}={MASK if is_secret_key(key) else redact(json.dumps(_masked(value)))}"
            for key, value in sorted(changed.items())
        )
        return [f"settings: {shown}"]

    def check(self) -> None:
        """Make sure the store can be used (reachable, the credentials accepted).

        Called by commands before they start; raises an error that says what to fix.
        The default does nothing.
        """
        return None

    def check_schema(self, table: str, schema: TableSchema) -> None:
        """Raise :class:`~lakeflow.SchemaMismatch` if ``table`` cannot take ``schema``'s rows.

        Called before a source starts (``lakeflow run``, ``lakeflow validate``), so that a
        plugin upgrade that changed a column's type is one clear error, not a commit that
        fails forever. Columns the schema added are fine (the next commit adds them); a
        missing table is fine. The default checks nothing.
        """
        return None

    @abstractmethod
    def scan(self, table: str) -> pl.LazyFrame | None:
        """A lazy polars scan of ``table``, with whatever options the store needs, or
        None if it does not exist.

        The one way commands read a table (``query``, ``plot``): it works the same on a
        local folder and on an object store.
        """

    def maintain(self, table: str, *, dry_run: bool = False) -> MaintenanceReport | None:
        """Compact ``table`` and clean up after it as the sink's settings say; None if it is
        missing.

        ``[maintenance]`` only says when (``lakeflow run``'s schedule); how is the sink's
        own business, in its ``Config``. Blocks (it runs in a worker thread); with
        ``dry_run`` nothing is written and the report says what would be done. A sink
        that implements it sets ``maintains`` and :meth:`describe_maintenance`.
        """
        raise NotImplementedError(f"sink type {self.type!r} does not maintain its tables")

    def describe_maintenance(self) -> str:
        """What :meth:`maintain` does, in one line, for the log and ``lakeflow maintain``
        (``"target 128.0 MiB files, Z-order by symbol, ..."``)."""
        return f"as sink type {self.type!r} maintains its tables"


def _masked(value: Any) -> Any:
    """``value`` with every entry under a key that names a credential shown as ``***``."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value
