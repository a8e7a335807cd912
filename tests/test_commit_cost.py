"""What keeps a commit as cheap after months of commits as after the first few.

Real Delta tables on disk, a small checkpoint interval so that a few commits cross
several checkpoints. No timings: bench/longrun.py measures those; these tests pin the
mechanism (the table property, the checkpoints, the handle's renewal, the log cleanup
left to checkpoint commits, the file-count warning).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

import lakeflow.sinks.delta.sink as delta
from lakeflow import TableSchema
from lakeflow.config import SinkConfig
from lakeflow.sinks.delta import DeltaSink

TABLE = "events"
APP = "src"
SCHEMA = TableSchema(name="event", table=TABLE, columns={"n": pl.Int64(), "date": pl.Date()})


def rows(n: int) -> pl.DataFrame:
    return pl.DataFrame({"n": [n], "date": [date(2026, 12, 1)]})


def commit(sink: DeltaSink, *sequences: int) -> None:
    for sequence in sequences:
        assert sink.commit(TABLE, SCHEMA, rows(sequence), APP, sequence)


@pytest.fixture
def sink(tmp_path: Path) -> DeltaSink:
    return DeltaSink(SinkConfig(uri=str(tmp_path / "tables")))


@pytest.fixture
def every_5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables created from here on checkpoint every 5 commits (versions 4, 9, 14...)."""
    monkeypatch.setattr(delta, "CHECKPOINT_INTERVAL", 5)


def log(sink: DeltaSink) -> Path:
    return Path(sink.table_uri(TABLE)) / "_delta_log"


def test_a_new_table_gets_the_checkpoint_interval(sink: DeltaSink) -> None:
    commit(sink, 1)
    configuration = DeltaTable(sink.table_uri(TABLE)).metadata().configuration
    assert configuration["delta.checkpointInterval"] == str(delta.CHECKPOINT_INTERVAL)


def test_a_new_table_keeps_an_hour_of_log(sink: DeltaSink) -> None:
    commit(sink, 1)
    configuration = DeltaTable(sink.table_uri(TABLE)).metadata().configuration
    assert configuration["delta.logRetentionDuration"] == "interval 3600 seconds"


def test_a_new_table_keeps_the_log_retention_the_pipeline_sets(tmp_path: Path) -> None:
    # From its first commit: scheduled maintenance would otherwise change it an hour later.
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables"), log_retention="2h"))
    commit(sink, 1)
    configuration = DeltaTable(sink.table_uri(TABLE)).metadata().configuration
    assert configuration["delta.logRetentionDuration"] == "interval 7200 seconds"


def test_checkpoint_commits_delete_log_entries_past_the_retention(
    tmp_path: Path, every_5: None
) -> None:
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables"), log_retention=60))
    commit(sink, *range(1, 6))  # versions 0..4, checkpoint at 4
    # Cleanup goes by an entry's age on disk: make entries 0..4 an hour old.
    an_hour_ago = time.time() - 3600
    for entry in log(sink).glob("*.json"):
        os.utime(entry, (an_hour_ago, an_hour_ago))
    commit(sink, *range(6, 11))  # versions 5..9: the commit of 9 checkpoints and cleans
    versions = sorted(int(p.name[:20]) for p in log(sink).glob("*.json"))
    # delta-rs keeps the entries from the checkpoint before the newest one onwards.
    assert versions[0] == 4 and versions[-1] == 9
    assert sink.committed_sequence(TABLE, APP) == 10
    assert pl.read_delta(sink.table_uri(TABLE)).height == 10


def test_a_long_local_log_is_reported_once_with_the_remedy(
    sink: DeltaSink, every_5: None, caplog: pytest.LogCaptureFixture
) -> None:
    sink.log_warning = 8
    with caplog.at_level(logging.WARNING, logger="lakeflow.sinks.delta"):
        commit(sink, *range(1, 17))  # reopened after 3 checkpoints, the log ever longer
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "log entries" in warnings[0] and "log_retention" in warnings[0]
    assert "interval 3600 seconds" in warnings[0]


def test_the_commit_that_reaches_the_interval_writes_a_checkpoint(
    sink: DeltaSink, every_5: None
) -> None:
    commit(sink, *range(1, 11))  # versions 0..9
    checkpoints = sorted(p.name for p in log(sink).glob("*.checkpoint.parquet"))
    assert checkpoints == [f"{4:020d}.checkpoint.parquet", f"{9:020d}.checkpoint.parquet"]


def test_the_handle_is_refreshed_in_place_between_checkpoints(
    sink: DeltaSink, every_5: None
) -> None:
    commit(sink, 1, 2)  # the second commit opens the table the first one created
    handle = sink._tables[TABLE]
    commit(sink, 3, 4, 5)  # versions 2..4: the checkpoint at 4 is written, not yet passed
    assert sink._tables[TABLE] is handle
    assert sink.opens == 1


def test_the_handle_is_opened_afresh_after_each_checkpoint(sink: DeltaSink, every_5: None) -> None:
    commit(sink, *range(1, 13))  # versions 0..11, checkpoints at 4 and 9
    # Opened at version 0, again after the checkpoints at 4 and 9.
    assert sink.opens == 3
    assert sink._tables[TABLE].version() == 11
    assert sink.committed_sequence(TABLE, APP) == 12


def test_an_existing_tables_interval_is_kept_and_followed(sink: DeltaSink) -> None:
    uri = sink.table_uri(TABLE)
    write_deltalake(
        uri, rows(0), partition_by=["date"], configuration={"delta.checkpointInterval": "3"}
    )
    commit(sink, *range(1, 7))  # versions 1..6, checkpoints at 2 and 5
    assert DeltaTable(uri).metadata().configuration["delta.checkpointInterval"] == "3"
    assert sink.opens == 3


def test_a_table_without_the_property_is_not_altered(sink: DeltaSink) -> None:
    uri = sink.table_uri(TABLE)
    write_deltalake(uri, rows(0), partition_by=["date"])
    commit(sink, 1, 2)
    assert "delta.checkpointInterval" not in DeltaTable(uri).metadata().configuration


def test_log_cleanup_runs_only_on_the_commits_that_checkpoint(
    sink: DeltaSink, every_5: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cleanups = []
    write = delta.write_deltalake

    def spy(table: Any, data: Any, **options: Any) -> None:
        # The version the commit is about to write: the handle's next one.
        version = table.version() + 1 if isinstance(table, DeltaTable) else 0
        cleanups.append((version, options["post_commithook_properties"].cleanup_expired_logs))
        write(table, data, **options)

    monkeypatch.setattr(delta, "write_deltalake", spy)
    commit(sink, *range(1, 11))
    assert [version for version, cleanup in cleanups if cleanup] == [4, 9]
    assert all(hooks is not None for _, hooks in cleanups)


def test_a_table_that_refuses_log_cleanup_is_never_cleaned(
    sink: DeltaSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_deltalake(
        sink.table_uri(TABLE),
        rows(0),
        partition_by=["date"],
        configuration={"delta.checkpointInterval": "2", "delta.enableExpiredLogCleanup": "false"},
    )
    cleanups = []
    write = delta.write_deltalake

    def spy(table: Any, data: Any, **options: Any) -> None:
        cleanups.append(options["post_commithook_properties"].cleanup_expired_logs)
        write(table, data, **options)

    monkeypatch.setattr(delta, "write_deltalake", spy)
    commit(sink, *range(1, 7))
    assert cleanups == [False] * 6


def test_another_writers_commits_are_seen_between_the_sinks_own(sink: DeltaSink) -> None:
    commit(sink, 1, 2)
    handle = sink._tables[TABLE]
    # Another collector (another app_id) appends to the same local table.
    write_deltalake(sink.table_uri(TABLE), rows(100), mode="append", partition_by=["date"])
    info = sink.info(TABLE)
    assert info is not None and info.rows == 3
    assert sink._tables[TABLE] is handle  # refreshed, not reopened
    commit(sink, 3)
    table = pl.read_delta(sink.table_uri(TABLE))
    assert sorted(table["n"].to_list()) == [1, 2, 3, 100]


def test_a_handle_whose_log_entries_were_cleaned_away_is_opened_afresh(sink: DeltaSink) -> None:
    commit(sink, 1, 2)  # the sink's handle is at version 1
    other = DeltaTable(sink.table_uri(TABLE))
    for n in (100, 101):
        write_deltalake(other, rows(n), mode="append", partition_by=["date"])
    other.create_checkpoint()  # at version 3
    for entry in log(sink).glob("*.json"):
        if int(entry.name[:20]) < 3:
            entry.unlink()  # what log cleanup does to entries past their retention
    assert sink.committed_sequence(TABLE, APP) == 2
    assert sink.opens == 2
    commit(sink, 3)
    assert DeltaTable(sink.table_uri(TABLE)).version() == 4


def test_too_many_files_are_reported_once_with_the_table_and_the_remedy(
    sink: DeltaSink, every_5: None, caplog: pytest.LogCaptureFixture
) -> None:
    sink.files_warning = 3
    with caplog.at_level(logging.WARNING, logger="lakeflow.sinks.delta"):
        commit(sink, *range(1, 17))  # 16 files, reopened after 3 checkpoints
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sink.opens == 4
    assert len(warnings) == 1
    assert f"table {TABLE!r}" in warnings[0]
    assert "lakeflow maintain" in warnings[0] and "[maintenance]" in warnings[0]


def test_the_warning_comes_back_if_the_files_pile_up_again_after_maintenance(
    sink: DeltaSink, every_5: None, caplog: pytest.LogCaptureFixture
) -> None:
    sink.files_warning = 4
    with caplog.at_level(logging.WARNING, logger="lakeflow.sinks.delta"):
        commit(sink, *range(1, 7))  # reopened after the checkpoint at 4: 5 files, warned
        DeltaTable(sink.table_uri(TABLE)).optimize.compact()  # version 6: one file
        commit(sink, *range(7, 11))  # reopened after the checkpoint at 9: 4 files, under
        commit(sink, *range(11, 17))  # reopened after 14: 9 files, warned again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
