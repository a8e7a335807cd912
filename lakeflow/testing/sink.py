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

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import polars as pl

from lakeflow.config.models import SinkConfig
from lakeflow.errors import RowsRefused, SchemaMismatch
from lakeflow.schema import TableSchema
from lakeflow.sinks import Sink, TableInfo
from lakeflow.system_tables import DRIFT, DRIFT_KEY

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
#: Two moments of sightings, for ``upsert``'s first/last times.
EARLY = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATE = datetime(2026, 1, 2, 6, 7, 8, tzinfo=UTC)


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
      ``check_schema`` and ``commit``, of the sink that wrote the table and of one
      opened afresh (the runtime checks schemas on a new sink), and nothing is written;
    - ``tables()``, ``info()``, ``scan()`` and ``table_uri()`` agree (a sink that
      cannot list its store may return no tables);
    - ``check_rows`` raises :class:`~lakeflow.RowsRefused` for rows that do not fit the
      schema, and writes nothing for rows that do;
    - rows given to ``upsert`` (as the runtime gives ``_drift``'s) are read back by
      ``scan``, of a sink opened afresh, the way readers sum them per key: counts added,
      the first ``first_seen`` and the last ``last_seen`` (appended, as by default, or
      folded in place);
    - with ``maintains = True``: ``maintain`` keeps every row and the exactly-once
      bookkeeping, a dry run writes nothing (before and after a maintenance: ``info()``
      the same but for ``last_commit`` and, for a ``table_uri`` that is a local path, no
      file under it added, removed or modified), a missing table gives None.

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
    _refuses_the_retyped_schema(sink, table, "")
    # The runtime calls check_schema on the sink it has just made, before a source
    # starts: what the table holds must refuse the change, not what one sink remembers.
    _refuses_the_retyped_schema(reopen(), table, " of a sink opened afresh")
    assert _numbers(reopen(), table) == [1], "a refused commit wrote rows"


def _refuses_the_retyped_schema(sink: Sink, table: str, whose: str) -> None:
    """``sink``'s ``check_schema`` and ``commit`` raise SchemaMismatch for :data:`RETYPED`."""
    try:
        sink.check_schema(table, RETYPED)
    except SchemaMismatch:
        pass
    else:
        raise AssertionError(f"check_schema{whose} accepted a column whose type changed")
    changed = _rows(2).with_columns(pl.col("n").cast(pl.String))
    try:
        sink.commit(table, RETYPED, changed, APP, 2)
    except SchemaMismatch:
        pass
    else:
        raise AssertionError(f"commit{whose} took rows whose column changed type")


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


def _tally(first: int, last: int, count: int, *key: str) -> dict[str, Any]:
    """One row of :data:`~lakeflow.system_tables.DRIFT` for ``key`` (its ``DRIFT_KEY``
    columns; the rest fixed), seen ``count`` times from ``EARLY``/``LATE``."""
    times = (EARLY, LATE)
    return {
        **dict(zip(DRIFT_KEY, key, strict=True)),
        "first_seen": times[first],
        "last_seen": times[last],
        "count": count,
        "example": b"{}",
    }


def _read_tallies(sink: Sink, table: str) -> list[str]:
    """``table`` as readers of ``_drift`` read it: one row per key, counts summed."""
    scan = sink.scan(table)
    assert scan is not None, f"scan({table!r}) is None after upsert() wrote rows to it"
    rows = (
        scan.group_by(DRIFT_KEY)
        .agg(pl.col("first_seen").min(), pl.col("last_seen").max(), pl.col("count").sum())
        .sort(DRIFT_KEY)
        .collect()
        .to_dicts()
    )
    return [_shown(row) for row in rows]


def _shown(tally: dict[str, Any]) -> str:
    """``"s/t/key/$.a/x: count 5, seen 03:04:05..06:07:08"``: one key's tally, short."""
    key = "/".join(str(tally[k]) for k in DRIFT_KEY)
    first, last = (
        f"{seen.astimezone(UTC):%H:%M:%S}" if isinstance(seen, datetime) else repr(seen)
        for seen in (tally["first_seen"], tally["last_seen"])
    )
    return f"{key}: count {tally['count']}, seen {first}..{last}"


def _check_upsert(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    def upsert(*rows: dict[str, Any]) -> None:
        sink.upsert(table, DRIFT, pl.DataFrame(list(rows), schema=DRIFT.polars_schema), DRIFT_KEY)

    def expect(*rows: dict[str, Any], after: str) -> None:
        want = [_shown(row) for row in rows]
        got = _read_tallies(reopen(), table)
        assert got == want, f"after {after}, scan() reads per key {got}, expected {want}"

    a, b = ("s", "t", "key", "$.a", "x"), ("s", "t", "key", "$.b", "x")
    upsert(_tally(0, 0, 2, *a), _tally(0, 0, 1, *b))
    expect(_tally(0, 0, 2, *a), _tally(0, 0, 1, *b), after="upsert() into a missing table")
    # ``a`` again (its count added, its last sighting moved), and a key new but for one
    # column: a row of its own.
    ay = (*a[:-1], "y")
    upsert(_tally(1, 1, 3, *a), _tally(1, 1, 1, *ay))
    expect(
        _tally(0, 1, 5, *a),
        _tally(1, 1, 1, *ay),
        _tally(0, 0, 1, *b),
        after="a second upsert() of a key the table held and a new one",
    )


def _files_under(uri: str) -> dict[str, tuple[int, int]] | None:
    """Every file under ``uri`` (a local path or ``file://`` URI) with its size and mtime;
    None for a store elsewhere."""
    if "://" in uri:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            return None
        path = Path(url2pathname(parsed.path))
    else:
        path = Path(uri)
    found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    listing: dict[str, tuple[int, int]] = {}
    for file in found:
        try:
            stat = file.stat()
        except FileNotFoundError:  # gone between the listing and the stat
            continue
        listing[file.relative_to(path).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return listing


def _dry_run_writes_nothing(sink: Sink, table: str) -> None:
    def state() -> tuple[TableInfo | None, dict[str, tuple[int, int]] | None]:
        info = sink.info(table)
        info = None if info is None else dataclasses.replace(info, last_commit=None)
        return info, _files_under(uri)

    uri = sink.table_uri(table)
    before, files = state()
    report = sink.maintain(table, dry_run=True)
    assert report is not None, "a dry run of maintain() returned None for a table"
    assert isinstance(report.summary(), str)
    after, now = state()
    assert after is not None and before is not None
    moved = [
        f"{field.name} {getattr(before, field.name)!r} -> {getattr(after, field.name)!r}"
        for field in dataclasses.fields(TableInfo)
        if getattr(before, field.name) != getattr(after, field.name)
    ]
    assert not moved, f"a dry run changed the table: {', '.join(moved)}"
    if files is not None and now is not None:
        added, removed = sorted(now.keys() - files.keys()), sorted(files.keys() - now.keys())
        changed = sorted(f for f in files.keys() & now.keys() if files[f] != now[f])
        assert not (added or removed or changed), (
            f"a dry run changed the table's files: added {added}, removed {removed}, "
            f"modified {changed} (under {uri})"
        )


def _check_maintenance(sink: Sink, table: str, reopen: Callable[[], Sink]) -> None:
    assert sink.maintain(table) is None, "maintain() of a missing table is not None"
    for n in range(1, 4):
        sink.commit(table, SCHEMA, _rows(n), APP, n)
    _dry_run_writes_nothing(sink, table)
    report = sink.maintain(table)
    assert report is not None and isinstance(report.summary(), str)
    # Again on a table maintained once (what it replaced may lie about, waiting for its
    # retention), with work to do: still nothing written, nothing deleted.
    for n in range(4, 6):
        sink.commit(table, SCHEMA, _rows(n), APP, n)
    rows = _read(sink, table)
    _dry_run_writes_nothing(sink, table)
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
    ("upsert (the rows read back, counts added per key)", _check_upsert),
    ("maintenance (every row kept, a dry run writes nothing)", _check_maintenance),
]
