"""Record schemas change across plugin upgrades: additions land, the rest is one clear error.

A column the schema gained is added to the existing table by the next commit. A change
Delta cannot take as an append (a type, a dropped column, the partitioning) is found
before the source starts, by ``lakeflow validate`` and ``lakeflow run``, naming the
table, the column and both types; the other sources run on. A commit refused for good
stops its source instead of being retried forever, and what it received stays in the
spool for the next run.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from deltalake import write_deltalake
from lakeflow_testsource import RECORD, SequenceSource

from harness import Plugin, run, run_until
from lakeflow import SchemaMismatch
from lakeflow.config import SinkConfig
from lakeflow.sinks.delta import DeltaSink

TWO_SOURCES = (
    "[sink]\nflush_interval = 0.1\n"
    '[sources.changed]\ntype = "test_sequence"\ncount = 20\n'
    '[sources.other]\ntype = "test_sequence"\ncount = 20\ntable = "other_records"\n'
)


def old_table(tables: Path, *, n: pl.DataType) -> None:
    """``test_records`` as an older plugin version wrote it, with ``n`` of type ``n``."""
    frame = pl.DataFrame(
        {
            "source": ["old"],
            "n": pl.Series([1]).cast(n),
            "value": pl.Series(["1.5"]).cast(RECORD.columns["value"]),
            "received_at": [datetime(2026, 1, 1, tzinfo=UTC)],
            "date": [date(2026, 1, 1)],
        }
    ).with_columns(pl.col("received_at").cast(RECORD.columns["received_at"]))
    write_deltalake(str(tables / "test_records"), frame, partition_by=["date"])


def test_a_type_change_is_found_by_check_schema_naming_table_column_and_types(tmp_path):
    old_table(tmp_path, n=pl.String())
    sink = DeltaSink(SinkConfig(uri=str(tmp_path)))

    with pytest.raises(SchemaMismatch) as refused:
        sink.check_schema("test_records", RECORD)

    message = str(refused.value)
    assert "table 'test_records'" in message
    assert "column 'n' is string in the table but long in record schema 'test_record'" in message
    assert "write into a new table (the source's `table` key)" in message


def test_other_partitioning_is_found_by_check_schema(tmp_path):
    write_deltalake(str(tmp_path / "test_records"), RECORD.empty())
    sink = DeltaSink(SinkConfig(uri=str(tmp_path)))

    with pytest.raises(SchemaMismatch, match=r"partitioned by nothing but record schema"):
        sink.check_schema("test_records", RECORD)


def test_added_columns_pass_check_schema(tmp_path):
    narrow = RECORD.empty().drop("value")
    write_deltalake(str(tmp_path / "test_records"), narrow, partition_by=["date"])

    DeltaSink(SinkConfig(uri=str(tmp_path))).check_schema("test_records", RECORD)


def test_lakeflow_run_adds_the_column_a_plugin_upgrade_brought(tmp_path, write_toml):
    """The user's side of an upgrade: the old table, today's plugin, plain ``lakeflow run``."""
    write_toml('[sink]\nflush_interval = 0.1\n[sources.new]\ntype = "test_sequence"\ncount = 20\n')
    table = tmp_path / "tables" / "test_records"
    old = pl.DataFrame({"source": ["old"], "n": [0]}).with_columns(
        pl.lit(datetime(2026, 1, 1, tzinfo=UTC))
        .cast(RECORD.columns["received_at"])
        .alias("received_at"),
        pl.lit(date(2026, 1, 1)).alias("date"),
    )  # written by a plugin version without the `value` column
    write_deltalake(str(table), old, partition_by=["date"])

    run_until(tmp_path, lambda: pl.read_delta(str(table)).height >= 21)

    rows = pl.read_delta(str(table)).sort("n")
    assert rows["value"][0] is None  # the old row reads null in the new column
    assert rows["value"][1:].null_count() == 0
    assert rows["n"].to_list() == list(range(21))


def test_validate_exits_2_on_a_type_change_before_anything_runs(tmp_path, cli, write_toml):
    write_toml(TWO_SOURCES)
    old_table(tmp_path / "tables", n=pl.String())

    done = cli("validate")

    assert done.returncode == 2
    assert "sources.changed: table 'test_records'" in done.stderr
    assert "column 'n' is string in the table but long" in done.stderr
    assert "other" not in done.stderr


def test_run_refuses_the_changed_source_at_start_and_runs_the_others(pm, tmp_path, caplog):
    pm.register(Plugin(SequenceSource), name="t")
    old_table(tmp_path / "tables", n=pl.String())
    caplog.set_level(logging.ERROR)

    result, tables = run(pm, tmp_path, TWO_SOURCES, until=lambda s: s["other"].rows >= 20)

    assert result.failed == ["changed"]
    assert result.stats["changed"].received == 0  # refused before it read anything
    assert pl.read_delta(str(tables / "other_records")).height == 20
    assert any("cannot start" in r.getMessage() and "'n'" in r.getMessage() for r in caplog.records)


def test_a_commit_refused_for_good_stops_the_source_and_keeps_its_payloads(pm, tmp_path):
    """The table changes under a running source: no retry forever, the spool keeps all."""
    pm.register(Plugin(SequenceSource), name="t")
    toml = '[sink]\nflush_interval = 1.0\n[sources.changed]\ntype = "test_sequence"\ncount = 20\n'
    tables = tmp_path / "tables"

    def until(stats) -> bool:
        if stats["changed"].received == 20 and not (tables / "test_records").exists():
            old_table(tables, n=pl.String())  # before the first flush, another writer
        return stats["changed"].state == "failed"

    result, _ = run(pm, tmp_path, toml, until=until)

    assert result.failed == ["changed"]
    assert result.stats["changed"].rows == 0
    assert pl.read_delta(str(tables / "test_records"))["source"].to_list() == ["old"]

    # Fixed (the old table moved away): the next run lands every spooled payload once
    # (the source itself sends nothing new this time).
    shutil.rmtree(tables / "test_records")
    quiet = toml.replace("count = 20", "count = 0")
    again, _ = run(pm, tmp_path, quiet, until=lambda s: s["changed"].rows >= 20)

    rows = pl.read_delta(str(tables / "test_records"))
    assert sorted(rows["n"].to_list()) == list(range(1, 21))
    assert not again.failed
