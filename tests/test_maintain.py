"""Table maintenance: `lakeflow maintain`, the Delta sink's maintenance settings in [sink],
the [maintenance] schedule, and the schedule in `run`."""

from __future__ import annotations

import logging
import os
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from lakeflow_testsource import RECORD, SequenceSource

from harness import Plugin, committed, reaped, run, start_run, wait_for
from lakeflow.config import MaintenanceConfig, SinkConfig, load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load
from lakeflow.sinks import SinkSettings
from lakeflow.sinks.delta import DeltaSettings, DeltaSink
from lakeflow.sinks.delta.maintain import exclusive

COLLECT = """
[sink]
uri = "tables"
flush_interval = 0.05

[maintenance]
{maintenance}

[sources.seq]
type = "test_sequence"
count = {count}
rate = {rate}
"""


CLOCK = (
    '[sink]\nuri = "tables"\n{sink}\n[maintenance]\n{maintenance}\n'
    '[sources.clock]\ntype = "test_clock"\n'
)


@pytest.fixture
def table(tmp_path: Path, write_toml) -> Path:
    """A `test_records` table of 30 one-row commits through the real sink."""
    write_toml(CLOCK.format(sink="", maintenance=""))
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables")))
    now = datetime.now(UTC)
    for n in range(1, 31):
        rows = pl.DataFrame(
            {"source": "clock", "n": n, "value": str(n), "received_at": now, "date": now.date()}
        )
        sink.commit("test_records", RECORD, rows, "clock", n)
    return tmp_path / "tables" / "test_records"


def files_on_disk(table: Path) -> int:
    return sum(1 for _ in table.rglob("*.parquet") if "_delta_log" not in _.parts)


def configure(write_toml, maintenance: str = "", sink: str = "") -> None:
    write_toml(CLOCK.format(sink=sink, maintenance=maintenance))


def test_maintain_prints_files_bytes_versions_before_and_after_and_seconds(table, cli):
    done = cli("maintain")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("test_records:"))
    assert line.startswith("test_records: files 30 -> 1, bytes ")
    assert "version 29 -> 3" in line
    assert line.endswith("s") and "; rewrote 30 files" in line


def test_maintain_keeps_every_row(table, cli):
    rows = pl.read_delta(str(table)).sort("n")
    cli("maintain")
    assert pl.read_delta(str(table)).sort("n").equals(rows)


def test_z_order_columns_a_table_lacks_are_skipped(table, cli, write_toml):
    configure(write_toml, sink='z_order = ["symbol", "n"]')
    done = cli("maintain")
    assert done.returncode == 0, done.stderr
    assert "Z-ordered by n;" in done.stdout.replace(", vacuumed", ";")
    assert "symbol" not in done.stdout.split("\n", 1)[1]


def test_a_table_without_any_z_order_column_is_compacted(table, cli):
    done = cli("maintain")
    assert "rewrote 30 files" in done.stdout and ", compacted," in done.stdout


def test_a_second_maintain_on_a_maintained_table_changes_nothing(table, cli):
    cli("maintain")
    version = DeltaTable(str(table)).version()
    done = cli("maintain")
    assert "nothing to compact" in done.stdout
    assert DeltaTable(str(table)).version() == version


def test_dry_run_reports_the_plan_and_changes_nothing(table, cli):
    version = DeltaTable(str(table)).version()
    done = cli("maintain", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "test_records: 30 files" in done.stdout
    assert "would rewrite 30 files" in done.stdout
    assert DeltaTable(str(table)).version() == version
    assert files_on_disk(table) == 30


def test_vacuum_deletes_rewritten_files_past_the_retention(table, cli, write_toml):
    configure(write_toml, sink="vacuum_retention = 0")
    done = cli("maintain")
    assert "vacuumed 30 files" in done.stdout
    assert files_on_disk(table) == 1


def test_vacuum_keeps_rewritten_files_younger_than_the_retention(table, cli):
    cli("maintain")
    assert files_on_disk(table) == 31


def test_log_retention_becomes_the_tables_log_retention_duration(table, cli, write_toml):
    configure(write_toml, sink='log_retention = "2d"')
    cli("maintain")
    config = DeltaTable(str(table)).metadata().configuration
    assert config["delta.logRetentionDuration"] == "interval 172800 seconds"


def test_vacuum_retention_becomes_the_tables_tombstone_retention(table, cli, write_toml):
    configure(write_toml, sink='vacuum_retention = "2d"')
    cli("maintain")
    config = DeltaTable(str(table)).metadata().configuration
    assert config["delta.deletedFileRetentionDuration"] == "interval 172800 seconds"


def test_vacuum_deletes_a_file_no_version_references_once_past_the_retention(table, cli):
    """A crash's leftover, or a rewrite's file whose ``remove`` left the checkpoints."""
    stray = table / f"date={datetime.now(UTC).date()}" / "part-stray.parquet"
    stray.write_bytes(b"PAR1")
    old = time.time() - 2 * 86_400
    os.utime(stray, (old, old))
    done = cli("maintain")
    assert done.returncode == 0, done.stderr
    assert not stray.exists()
    assert files_on_disk(table) == 31  # the rewrite's 30 sources stay: removed just now


def test_maintain_writes_a_checkpoint(table, cli):
    cli("maintain")
    assert list((table / "_delta_log").glob("*.checkpoint.parquet"))


def test_maintain_of_a_missing_table_says_so(table, cli):
    done = cli("maintain", "--table", "nowhere")
    assert done.returncode == 0
    assert "nowhere: no such table" in done.stdout


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("6h", 21_600.0),
        ("7d", 604_800.0),
        ("1w", 604_800.0),
    ],
)
def test_durations_are_seconds_or_a_number_with_a_unit(value, seconds):
    assert MaintenanceConfig(interval=value).interval == seconds
    assert DeltaSettings(vacuum_retention=value).vacuum_retention == seconds
    assert DeltaSettings(log_retention=value).log_retention == seconds


@pytest.mark.parametrize(
    ("value", "size"), [(2 << 20, 2 << 20), ("128MiB", 128 << 20), ("64MB", 64_000_000)]
)
def test_target_file_size_is_bytes_or_a_number_with_a_unit(value, size):
    assert DeltaSettings(target_file_size=value).target_file_size == size


def load_errors(write_toml, maintenance: str, sink: str = "") -> str:
    path = write_toml(f"[sink]\n{sink}\n[maintenance]\n{maintenance}\n")
    with pytest.raises(ConfigError) as error:
        load_pipeline(path, load())
    return str(error.value)


def test_an_unknown_maintenance_key_is_an_error_with_a_suggestion(write_toml):
    message = load_errors(write_toml, "intervall = 60")
    assert "maintenance.intervall: unknown key; did you mean 'interval'?" in message


def test_an_unknown_sink_setting_is_an_error_with_a_suggestion(write_toml):
    message = load_errors(write_toml, "", sink='z_orderr = ["n"]')
    assert "lakeflow.toml: sink.z_orderr: unknown key; did you mean 'z_order'?" in message


def test_a_malformed_duration_is_an_error_naming_the_key(write_toml):
    message = load_errors(write_toml, 'interval = "6 hours"')
    assert "maintenance.interval:" in message
    assert "is not a duration" in message


def test_a_malformed_sink_setting_is_an_error_naming_the_key(write_toml):
    message = load_errors(write_toml, "", sink='target_file_size = "huge"')
    assert "sink.target_file_size:" in message
    assert "is not a size" in message


def test_the_sinks_maintenance_settings_reach_the_sink(write_toml):
    path = write_toml(CLOCK.format(sink='z_order = ["n"]\nvacuum_retention = "2d"', maintenance=""))
    settings = DeltaSink(load_pipeline(path, load()).sink).settings
    assert settings.z_order == ["n"]
    assert settings.vacuum_retention == 172_800.0
    assert settings.target_file_size == DeltaSettings().target_file_size


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        ("target_file_size", '"64MiB"', 64 << 20),
        ("z_order", '["n"]', ["n"]),
        ("vacuum_retention", '"2d"', 172_800.0),
        ("log_retention", '"2h"', 7_200.0),
    ],
)
def test_a_moved_maintenance_key_still_applies_with_a_notice_naming_its_new_place(
    write_toml, key, value, read
):
    path = write_toml(CLOCK.format(sink="", maintenance=f"{key} = {value}"))
    pipeline = load_pipeline(path, load())
    assert getattr(DeltaSink(pipeline.sink).settings, key) == read
    assert pipeline.notices == (
        f"{path}: [maintenance] {key} is deprecated: it is a setting of the delta sink now; "
        f"move it to [sink] {key}",
    )
    assert pipeline.maintenance.moved() == {}


def test_run_writes_a_moved_keys_notice_to_the_log_the_pipeline_names(write_toml, cli, tmp_path):
    # Logged once the file's [log] is set up, so that it reaches the log file too.
    toml = CLOCK.format(sink="", maintenance='z_order = ["n"]')
    write_toml(toml + '\n[log]\nfile = "lakeflow.log"\n')
    done = cli("run", "--once")

    assert done.returncode == 0, done.stderr
    log = (tmp_path / "lakeflow.log").read_text()
    assert "[maintenance] z_order is deprecated" in log
    assert done.stderr.count("[maintenance] z_order is deprecated") == 1


def test_a_bad_value_of_a_moved_key_is_named_where_it_was_written(write_toml):
    message = load_errors(write_toml, 'vacuum_retention = "a while"')
    assert "lakeflow.toml: maintenance.vacuum_retention:" in message
    assert "is not a duration" in message


def test_a_moved_key_set_in_both_places_is_refused(write_toml):
    message = load_errors(write_toml, 'z_order = ["n"]', sink='z_order = ["symbol"]')
    assert "maintenance.z_order: also set as sink.z_order" in message


class KeylessSink(DeltaSink):
    """A sink type whose settings lack the Delta sink's maintenance keys."""

    type = "keyless"
    Config = SinkSettings


def test_a_moved_key_the_sink_type_does_not_have_is_refused(pm, write_toml):
    pm.register(Plugin(SequenceSource, sinks=[KeylessSink]), name="t")
    path = write_toml('[sink]\ntype = "keyless"\n[maintenance]\nz_order = ["n"]\n')
    with pytest.raises(ConfigError) as error:
        load_pipeline(path, load(pm, entry_points=False))
    assert (
        "maintenance.z_order: no longer a [maintenance] key (it was a setting of the delta "
        "sink), and sink type 'keyless' has no such setting; remove it"
    ) in str(error.value)


def test_interval_zero_turns_the_schedule_off():
    assert not MaintenanceConfig(interval=0).scheduled
    assert not MaintenanceConfig(enabled=False).scheduled
    assert MaintenanceConfig().scheduled


def test_the_schedule_inside_run_maintains_tables_while_collecting(pm, tmp_path, caplog):
    pm.register(Plugin(SequenceSource), name="t")
    caplog.set_level("INFO")
    result, tables = run(
        pm,
        tmp_path,
        COLLECT.format(maintenance="interval = 0.5", count=300, rate=100),
        until=lambda stats: stats["seq"].rows >= 300 and "maintained" in caplog.text,
        timeout=60,
    )
    assert result.ok
    assert "maintained test_records: files" in caplog.text
    rows = pl.read_delta(str(tables / "test_records"))
    assert rows["n"].sort().to_list() == list(range(1, 301))
    files = DeltaTable(str(tables / "test_records")).get_add_actions().num_rows
    assert files < result.stats["seq"].commits


class UnmaintainedSink(DeltaSink):
    """A sink type without the maintenance capability (Delta underneath, for the rows)."""

    type = "unmaintained"
    maintains = False

    def maintain(self, *args, **kwargs):
        raise AssertionError("a sink that does not maintain was asked to")


def test_a_sink_without_maintenance_is_never_scheduled_for_it(pm, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    pm.register(Plugin(SequenceSource, sinks=[UnmaintainedSink]), name="t")
    toml = COLLECT.format(maintenance="interval = 0.1", count=200, rate=400)
    result, tables = run(
        pm,
        tmp_path,
        toml.replace("[sink]\n", '[sink]\ntype = "unmaintained"\n'),
        until=lambda stats: stats["seq"].rows >= 200,
    )
    assert result.ok
    assert pl.read_delta(str(tables / "test_records")).height == 200
    assert "maintenance" not in caplog.text


def test_a_failing_maintenance_is_logged_and_the_run_goes_on(pm, tmp_path, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(DeltaSink, "maintain", broken)
    pm.register(Plugin(SequenceSource), name="t")
    result, tables = run(
        pm,
        tmp_path,
        COLLECT.format(maintenance="interval = 0.2", count=200, rate=200),
        until=lambda stats: stats["seq"].rows >= 200 and "disk on fire" in caplog.text,
    )
    assert result.ok
    assert "maintenance of test_records failed, next try in 0s: disk on fire" in caplog.text
    assert pl.read_delta(str(tables / "test_records")).height == 200


def test_no_maintenance_runs_when_disabled(pm, tmp_path, caplog):
    pm.register(Plugin(SequenceSource), name="t")
    caplog.set_level("INFO")
    run(
        pm,
        tmp_path,
        COLLECT.format(maintenance="enabled = false\ninterval = 0.1", count=100, rate=200),
        until=lambda stats: stats["seq"].rows >= 100,
    )
    assert not [r for r in caplog.records if r.name == "lakeflow.runtime.maintenance"]


def test_scheduled_and_manual_maintenance_while_writing_lose_and_double_nothing(tmp_path, cli):
    # The collector maintains its own table every 0.3 s while `lakeflow maintain` runs
    # beside it: appends race two rewriters, which race each other.
    (tmp_path / "lakeflow.toml").write_text(
        COLLECT.format(maintenance="interval = 0.3", count=4000, rate=1000)
    )
    table = tmp_path / "tables" / "test_records"
    with reaped(start_run(tmp_path)) as collector:
        deadline = time.monotonic() + 60
        wait_for(lambda: committed(table, "seq") > 0, 60, "the collector's first commit")
        while committed(table, "seq") < 4000:
            done = cli("maintain", "--table", "test_records")
            assert done.returncode == 0, done.stderr
            assert time.monotonic() < deadline + 60, "collector did not finish"
        collector.terminate()
        _, err = collector.communicate(timeout=60)
    assert collector.returncode == 0, err
    assert "maintained test_records" in err
    assert pl.read_delta(str(table))["n"].sort().to_list() == list(range(1, 4001))


def test_a_table_whose_maintenance_lock_is_taken_is_skipped(table, cli):
    # Two rewrites at once would both commit (delta-rs does not see that they removed
    # the same files) and double the rows, so the second one must stand aside.
    with exclusive(str(table)):
        done = cli("maintain")
    assert done.returncode == 0, done.stderr
    assert "test_records: skipped, another maintenance of this table is running" in done.stdout
    assert DeltaTable(str(table)).get_add_actions().num_rows == 30


def readme_section(name: str) -> dict:
    """The keys of the README's pipeline-file reference under ``[name]``."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split(f"\n[{name}]", 1)[1].split("\n\n", 1)[0]
    return tomllib.loads(section.split("\n", 1)[1])


def test_the_readme_maintenance_section_is_valid_and_the_defaults():
    assert MaintenanceConfig.model_validate(readme_section("maintenance")) == MaintenanceConfig()


def test_the_readme_sink_section_shows_the_delta_sinks_defaults():
    data = readme_section("sink")
    generic = {key: data.pop(key) for key in list(data) if key in SinkConfig.model_fields}
    assert generic["type"] == "delta"
    assert set(data) == set(DeltaSettings.model_fields) - {"storage_options"}
    assert DeltaSettings.model_validate(data) == DeltaSettings()


def test_validate_shows_the_maintenance_schedule(cli, write_toml):
    configure(write_toml, 'interval = "6h"')
    assert "maintenance: every 6h: target 128.0 MiB files" in cli("validate").stdout
    configure(write_toml, "enabled = false")
    assert "maintenance: off" in cli("validate").stdout


def commit_rows(tmp_path: Path, day: datetime, first: int, count: int) -> None:
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables")))
    for n in range(first, first + count):
        rows = pl.DataFrame(
            {"source": "clock", "n": n, "value": str(n), "received_at": day, "date": day.date()}
        )
        sink.commit("test_records", RECORD, rows, "clock", n)


def test_only_partitions_that_received_appends_are_rewritten(tmp_path, cli, write_toml):
    write_toml(CLOCK.format(sink="", maintenance=""))
    monday, tuesday = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    commit_rows(tmp_path, monday, 1, 5)
    commit_rows(tmp_path, tuesday, 6, 5)
    cli("maintain")
    table = DeltaTable(str(tmp_path / "tables" / "test_records"))
    monday_file = [p for p in table.file_uris() if "2026-11-02" in p]
    commit_rows(tmp_path, tuesday, 11, 3)
    done = cli("maintain")
    assert "rewrote 4 files" in done.stdout and "in 1 partition," in done.stdout
    table = DeltaTable(str(tmp_path / "tables" / "test_records"))
    assert [p for p in table.file_uris() if "2026-11-02" in p] == monday_file
    assert table.get_add_actions().num_rows == 2
