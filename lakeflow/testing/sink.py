"""The sink author's conformance kit: :func:`check_sink` holds a sink type to lakeflow's contract.

A sink is trusted with exactly-once delivery, schema evolution and the error kinds the
runtime acts on; these checks are what the built-in Delta sink is held to, written so
that a third-party sink runs them from its own tests (no pytest needed)::

    from lakeflow.testing import check_sink

    def test_my_sink_keeps_the_sink_contract(tmp_path):
        check_sink(MySink, tmp_path)  # [sink] uri = tmp_path, the Config's defaults

Each check writes its own table (``conformance_...``) through sinks made for one place,
and the first property broken raises :class:`AssertionError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from lakeflow.config.models import SinkConfig
from lakeflow.errors import RowsRefused, SchemaMismatch
from lakeflow.schema import TableSchema
from lakeflow.sinks import Sink

__all__ = ["check_sink"]

#: The record schema the checks write: a partitioned table, as record schemas are.
SCHEMA = TableSchema(
    name="conformance",
    table="conformance",
    columns={"n": pl.Int64(), "value": pl.String(), "date": pl.Date()},
)
#: ``SCHEMA`` after a plugin upgrade that added a column.
WIDER = TableSchema(
    name="conformance",
    table="conformance",
    columns={**SCHEMA.columns, "note": pl.String()},
)
#: ``SCHEMA`` after a plugin upgrade that changed a column's type.
RETYPED = TableSchema(
    name="conformance",
    table="conformance",
    columns={**SCHEMA.columns, "n": pl.String()},
)
APP = "conformance"
DAY = date(2026, 1, 2)


def check_sink(sink: type[Sink] | Callable[[Path], Sink], folder: Path, **settings: Any) -> None:
    """Hold a sink type to the sink contract; raise :class:`AssertionError` on the first breach.

    ``sink`` is the sink class, made as a pipeline makes it: ``[sink]`` with ``uri`` =
    ``folder`` and ``settings`` (the sink type's own keys; its ``Config``'s defaults
    otherwise). Or a function ``make(folder) -> Sink``, for a sink that needs more (a
    store elsewhere: it may ignore ``folder``, if every call gives the same place).
    Sinks are made more than once, as a restarted collector opens its sink again: a new
    sink must see what an earlier one committed. Checked, each on its own table:

    - exactly once: a commit of ``(app_id, sequence)`` lands once; a repeat, or a lower
      sequence, returns False and writes nothing; ``committed_sequence`` reports the
      highest; another ``app_id`` is counted apart;
    - a commit that landed, retried by a restarted collector, writes nothing twice;
    - a missing table is created with the schema's columns;
    - a schema that gained a nullable column commits, and the older rows read null;
    - a changed column type is refused with :class:`~lakeflow.SchemaMismatch` by
      ``check_schema`` and ``commit``, and nothing is written;
    - ``tables()``, ``info()``, ``scan()`` and ``table_uri()`` agree (a sink that
      cannot list its store may return no tables);
    - ``check_rows`` raises :class:`~lakeflow.RowsRefused` for rows that do not fit the
      schema, and writes nothing for rows that do;
    - with ``maintains = True``: ``maintain`` keeps every row and the exactly-once
      bookkeeping, a dry run writes nothing, a missing table gives None.

    Raises :class:`AssertionError` whose message names the sink type and the property.
    """
    make_sink: Callable[[Path], Sink]
    if isinstance(sink, type) and issubclass(sink, Sink):
        cls = sink

        def make_sink(place: Path) -> Sink:
            return cls(SinkConfig(type=cls.type, uri=str(place), **settings))

    elif isinstance(sink, type):
        raise TypeError(f"{sink.__name__} is not a lakeflow.Sink subclass")
    elif settings:
        raise TypeError("settings go to the sink class, not to a function that makes sinks")
    else:
        make_sink = sink
    for name, check in _CHECKS:
        made = make_sink(folder)
        if name.startswith("maintenance") and not made.maintains:
            continue
        table = f"conformance_{check.__name__.removeprefix('_check_')}"
        try:
            check(made, table, lambda: make_sink(folder))
        except AssertionError as exc:
            raise AssertionError(f"sink type {made.type!r} breaks {name}: {exc}") from None
        except Exception as exc:
            # An error where the contract expects a result is a breach too, named as one.
            raise AssertionError(
                f"sink type {made.type!r} breaks {name}: {type(exc).__name__}: {exc}"
            ) from exc


def _rows(first: int, count: int = 1, **extra: str | None) -> pl.DataFrame:
    """Rows ``n = first .. first + count - 1`` of :data:`SCHEMA` (and ``extra`` columns)."""
    numbers = list(range(first, first + count))
    columns: dict[str, list[Any]] = {
        "n": numbers,
        "value": [f"v{n}" for n in numbers],
        "date": [DAY] * count,
    }
    columns.update({key: [value] * count for key, value in extra.items()})
    return pl.DataFrame(columns)


def _read(sink: Sink, table: str) -> pl.DataFrame:
    """Every row of ``table`` by ``n``; fails if the sink says the table is missing."""
    scan = sink.scan(table)
    assert scan is not None, f"scan({table!r}) is None after a commit created the table"
    return scan.collect().sort("n")


def _numbers(sink: Sink, table: str) -> list[int]:
    return list(_read(sink, table)["n"])


def _check_exactly_once(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    assert sink.committed_sequence(table, APP) is None, "a missing table reports a sequence"
    assert sink.commit(table, SCHEMA, _rows(1, 2), APP, 2) is True, "the first commit said False"
    assert sink.committed_sequence(table, APP) == 2, (
        f"committed_sequence is {sink.committed_sequence(table, APP)!r} after committing 2"
    )
    assert sink.commit(table, SCHEMA, _rows(1, 2), APP, 2) is False, (
        "a repeated (app_id, sequence) was not skipped (commit returned True)"
    )
    assert sink.commit(table, SCHEMA, _rows(9), APP, 1) is False, (
        "a lower sequence than the one committed was not skipped"
    )
    assert _numbers(sink, table) == [1, 2], (
        f"rows {_numbers(sink, table)} after a commit and two skipped ones, expected [1, 2]"
    )
    assert sink.commit(table, SCHEMA, _rows(3), "another", 1) is True, (
        "another app_id's sequence 1 was skipped: sequences are per app_id"
    )
    assert sink.commit(table, SCHEMA, _rows(4), APP, 3) is True, "the next sequence was skipped"
    assert sink.committed_sequence(table, APP) == 3
    assert sink.committed_sequence(table, "another") == 1
    assert _numbers(sink, table) == [1, 2, 3, 4], f"rows {_numbers(sink, table)}"


def _check_retry_after_landing(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    sink.commit(table, SCHEMA, _rows(1, 3), APP, 7)
    # The collector died after the commit landed and before it knew: its successor
    # resumes from what the table says, and retries the batch.
    again = reopen()
    assert again.committed_sequence(table, APP) == 7, (
        "a sink opened afresh does not see the sequence another one committed "
        f"({again.committed_sequence(table, APP)!r}, expected 7)"
    )
    assert again.commit(table, SCHEMA, _rows(1, 3), APP, 7) is False, (
        "a retried commit that had landed was written again"
    )
    assert _numbers(again, table) == [1, 2, 3], f"rows {_numbers(again, table)} after the retry"


def _check_creates_the_table(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    sink.check_schema(table, SCHEMA)  # a missing table is fine
    sink.commit(table, SCHEMA, _rows(1).select("date", "value", "n"), APP, 1)
    rows = _read(sink, table)
    assert rows.columns == list(SCHEMA.columns), (
        f"the table's columns are {rows.columns}, not the schema's {list(SCHEMA.columns)}"
    )
    assert rows.to_dicts() == [{"n": 1, "value": "v1", "date": DAY}], f"read {rows.to_dicts()}"


def _check_added_columns(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    sink.commit(table, SCHEMA, _rows(1, 2), APP, 1)
    sink.check_schema(table, WIDER)
    assert sink.commit(table, WIDER, _rows(3, note="new"), APP, 2) is True
    rows = _read(reopen(), table)
    assert "note" in rows.columns, f"the added column is missing: {rows.columns}"
    assert rows["note"].to_list() == [None, None, "new"], (
        f"the added column reads {rows['note'].to_list()}, expected null for older rows"
    )


def _check_refused_type_change(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    sink.commit(table, SCHEMA, _rows(1), APP, 1)
    try:
        sink.check_schema(table, RETYPED)
    except SchemaMismatch:
        pass
    else:
        raise AssertionError("check_schema accepted a column whose type changed")
    changed = _rows(2).with_columns(pl.col("n").cast(pl.String))
    try:
        sink.commit(table, RETYPED, changed, APP, 2)
    except SchemaMismatch:
        pass
    else:
        raise AssertionError("commit took rows whose column changed type")
    assert _numbers(reopen(), table) == [1], "a refused commit wrote rows"


def _check_table_listing(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    other = f"{table}_other"
    assert sink.info(table) is None, "info() of a missing table is not None"
    assert sink.scan(table) is None, "scan() of a missing table is not None"
    assert table not in sink.tables(), "tables() lists a table never written"
    sink.commit(table, SCHEMA, _rows(1, 2), APP, 1)
    sink.commit(table, SCHEMA, _rows(3), APP, 2)
    sink.commit(other, SCHEMA, _rows(1), APP, 1)
    listed = reopen().tables()
    assert not listed or {table, other} <= set(listed), (
        f"tables() lists {listed} without the tables written"
    )
    assert sink.table_uri(table) != sink.table_uri(other), "two tables share one table_uri"
    info = sink.info(table)
    assert info is not None, "info() of a table written is None"
    assert info.name == table, f"info().name is {info.name!r}"
    assert info.uri == sink.table_uri(table), (
        f"info().uri {info.uri!r} is not table_uri() {sink.table_uri(table)!r}"
    )
    assert info.rows == 3 == _read(sink, table).height, (
        f"info() counts {info.rows} rows, scan() reads {_read(sink, table).height}, 3 written"
    )
    assert info.files >= 1, f"info() counts {info.files} files"


def _check_rows_refused(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    unfit = _rows(1).with_columns(pl.lit("not a number").alias("n"))
    try:
        sink.check_rows(table, SCHEMA, unfit)
    except RowsRefused:
        pass
    else:
        raise AssertionError("check_rows accepted a string in an integer column")
    sink.check_rows(table, SCHEMA, _rows(1, 3))
    assert sink.info(table) is None, "check_rows wrote a table"


def _check_maintenance(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    assert sink.maintain(table) is None, "maintain() of a missing table is not None"
    for n in range(1, 6):
        sink.commit(table, SCHEMA, _rows(n), APP, n)
    before, rows = sink.info(table), _read(sink, table)
    report = sink.maintain(table, dry_run=True)
    assert report is not None, "a dry run of maintain() returned None for a table"
    assert isinstance(report.summary(), str)
    after = sink.info(table)
    assert after is not None and before is not None
    assert (after.version, after.files) == (before.version, before.files), (
        f"a dry run changed the table: version {before.version} -> {after.version}, "
        f"files {before.files} -> {after.files}"
    )
    report = sink.maintain(table)
    assert report is not None and isinstance(report.summary(), str)
    assert _read(reopen(), table).equals(rows), "maintain() changed the rows"
    again = reopen()
    assert again.committed_sequence(table, APP) == 5, "maintain() lost the committed sequence"
    assert again.commit(table, SCHEMA, _rows(5), APP, 5) is False, (
        "after maintain() a retried commit was written again"
    )
    assert isinstance(sink.describe_maintenance(), str)


#: Each property and its check, in the order run; the name is what a failure says.
_CHECKS: list[tuple[str, Callable[[Sink, str, Callable[[], Sink]], None]]] = [
    ("exactly once (a repeated or lower sequence is skipped)", _check_exactly_once),
    ("exactly once across a restart (a landed commit retried)", _check_retry_after_landing),
    ("table creation with the schema's columns", _check_creates_the_table),
    ("added columns (older rows read null)", _check_added_columns),
    ("refused type change (SchemaMismatch)", _check_refused_type_change),
    ("tables(), info(), scan() and table_uri() agreeing", _check_table_listing),
    ("check_rows (RowsRefused for rows that do not fit)", _check_rows_refused),
    ("maintenance (every row kept, a dry run writes nothing)", _check_maintenance),
]
