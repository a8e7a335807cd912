"""Every mainstream reader reads every file lakeflow writes, before and after maintenance.

The tables are written by a real ``lakeflow run`` (a ``test_sequence`` source with a
bad payload every 50, so ``_dead_letters`` exists too), then read by polars, by
pyarrow's dataset reader over the files the Delta log lists, and by DuckDB through its
Delta extension (loaded from the ``duckdb-extension-delta`` wheel's file, autoinstall
off: nothing is fetched). The same checks run on a copy compacted by ``lakeflow
maintain``. Decimals, UTC timestamps and the ``date`` partition must come back as they
went in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_delta
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from harness import LAKEFLOW, committed, run_until

COUNT, BAD_EVERY = 300, 50
PIPELINE = f"""
[sink]
uri = "tables"
flush_interval = 0.1

[sources.seq]
type = "test_sequence"
count = {COUNT}
rate = 400
bad_every = {BAD_EVERY}
"""
#: What the source sent, row by row: n and the exact decimal value (bad payloads aside).
SENT = {i: Decimal(f"{i}.{i:06d}") for i in range(1, COUNT + 1) if i % BAD_EVERY}
COLUMNS = ["source", "n", "value", "received_at", "date"]


def lakeflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose run committed every payload (in several commits), then stopped."""
    home = tmp_path_factory.mktemp("fresh")
    (home / "lakeflow.toml").write_text(PIPELINE, encoding="utf-8")
    run_until(home, lambda: committed(home / "tables" / "test_records", "seq") >= COUNT - 1)
    assert len(DeltaTable(str(home / "tables" / "test_records")).file_uris()) > 1
    return home


@pytest.fixture(scope="module")
def maintained(written: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``written`` after ``lakeflow maintain`` (files compacted, log checkpointed)."""
    home = tmp_path_factory.mktemp("maintained") / "home"
    shutil.copytree(written, home)
    lakeflow(home, "maintain")
    assert len(DeltaTable(str(home / "tables" / "test_records")).file_uris()) == 1
    return home


@pytest.fixture(params=["fresh", "maintained"])
def tables(request: pytest.FixtureRequest) -> Path:
    """The tables folder, as the run wrote it and after maintenance."""
    home = request.getfixturevalue("written" if request.param == "fresh" else "maintained")
    return home / "tables"


def _duckdb() -> duckdb.DuckDBPyConnection:
    """DuckDB with the Delta extension from the wheel's file: nothing is downloaded."""
    root = Path(duckdb_extension_delta.__file__).parent / "extensions"
    (extension,) = root.glob(f"v{duckdb.__version__}/delta.duckdb_extension")
    connection = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    connection.execute(f"LOAD '{extension}'")
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def _rows(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return frame.select(COLUMNS).sort("n").rows()


def _check_sent(rows: list[tuple[Any, ...]]) -> None:
    """Every good payload once, its decimal exact, its time UTC, its date that time's."""
    assert {n: value for _, n, value, _, _ in rows} == SENT
    assert len(rows) == len(SENT)
    for source, _, _, received_at, day in rows:
        assert source == "seq"
        assert received_at.utcoffset().total_seconds() == 0
        assert day == received_at.date()


@pytest.fixture
def polars_rows(tables: Path) -> list[tuple[Any, ...]]:
    return _rows(pl.read_delta(str(tables / "test_records")))


def test_no_data_file_carries_an_arrow_view_type(tables):
    for name in ("test_records", "_dead_letters"):
        for uri in DeltaTable(str(tables / name)).file_uris():
            schema = pq.read_schema(uri)
            views = [f.name for f in schema if f.type in (pa.string_view(), pa.binary_view())]
            assert not views, f"{uri}: {views}"


def test_polars_reads_the_rows_as_written(polars_rows):
    _check_sent(polars_rows)


def test_pyarrow_datasets_over_the_logged_files_read_the_rows_as_written(tables, polars_rows):
    table = DeltaTable(str(tables / "test_records"))
    dataset = ds.dataset(
        table.file_uris(),
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
        partition_base_dir=str(tables / "test_records"),
    )
    read = dataset.to_table()
    assert read.schema.field("value").type == pa.decimal128(38, 18)
    assert read.schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert read.schema.field("date").type == pa.date32()
    rows = _rows(pl.from_arrow(read))  # type: ignore[arg-type]
    _check_sent(rows)
    assert rows == polars_rows


def test_duckdb_reads_the_rows_as_written_through_its_delta_extension(tables, polars_rows):
    connection = _duckdb()
    query = f"SELECT {', '.join(COLUMNS)} FROM delta_scan(?) ORDER BY n"
    cursor = connection.execute(query, [str(tables / "test_records")])
    types = {name: str(kind) for name, kind, *_ in cursor.description}
    assert types["value"] == "DECIMAL(38,18)"
    assert types["received_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["date"] == "DATE"
    # Through Arrow, as a notebook takes DuckDB's result into polars (DuckDB's own Python
    # conversion of zoned timestamps needs pytz, which nothing else here needs).
    rows = _rows(cursor.pl())
    _check_sent(rows)
    assert rows == polars_rows


def test_dead_letters_read_back_as_the_bytes_received_in_every_reader(tables):
    path = str(tables / "_dead_letters")
    expected = sorted(b'{"n": %d' % i for i in range(BAD_EVERY, COUNT + 1, BAD_EVERY))
    assert sorted(pl.read_delta(path)["payload"]) == expected
    files = DeltaTable(path).file_uris()
    assert sorted(ds.dataset(files, format="parquet").to_table()["payload"].to_pylist()) == expected
    rows = _duckdb().execute("SELECT payload FROM delta_scan(?)", [path]).fetchall()
    assert sorted(payload for (payload,) in rows) == expected


def test_tables_stay_at_the_lowest_protocol_an_append_only_table_needs(tables):
    for name in ("test_records", "_dead_letters"):
        table = DeltaTable(str(tables / name))
        protocol = table.protocol()
        # No table features: no deletion vectors, no column mapping, nothing a reader
        # must support beyond Delta's first reader version.
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
        assert not protocol.reader_features and not protocol.writer_features
        configuration = table.metadata().configuration
        assert "delta.columnMapping.mode" not in configuration
        assert "delta.enableDeletionVectors" not in configuration
