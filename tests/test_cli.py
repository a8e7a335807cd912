"""The real ``lakeflow`` command in subprocesses: run, stop by signal, inspect the tables."""

from __future__ import annotations

import json
import signal

import click
import polars as pl
import pytest

from harness import committed, reaped, start_run, wait_for
from lakeflow.cli import cli as lakeflow_group

#: Every command `lakeflow --help` lists: the built-ins and those installed plugins add.
COMMANDS = lakeflow_group.list_commands(click.Context(lakeflow_group))

PIPELINE = """
[sink]
uri = "tables"
flush_interval = 0.3

[sources.seq]
type = "test_sequence"
count = {count}
rate = {rate}

[sources.clock]
type = "test_clock"
interval = 0.2
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_stopped_by_a_signal_commits_everything_received_and_exits_0(tmp_path, write_toml, sig):
    # A slow stream, so the signal arrives while payloads are still buffered.
    write_toml(PIPELINE.format(count=100_000, rate=2000))
    table = tmp_path / "tables" / "test_records"
    with reaped(start_run(tmp_path)) as process:
        wait_for(lambda: committed(table, "seq") >= 500)
        process.send_signal(sig)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    rows = pl.read_delta(str(table)).filter(pl.col("source") == "seq")
    last = committed(table, "seq")
    # Every payload received before the stop, each once: the sequence has no holes.
    assert rows["n"].sort().to_list() == list(range(1, last + 1))
    assert "stopping: committing what is buffered" in err
    assert f"{last} rows in" in err


def test_run_only_the_named_source(tmp_path, write_toml):
    write_toml(PIPELINE.format(count=10, rate=0))
    table = tmp_path / "tables" / "test_records"
    with reaped(start_run(tmp_path, "--source", "clock")) as process:
        wait_for(lambda: committed(table, "clock") >= 2)
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert set(pl.read_delta(str(table))["source"]) == {"clock"}
    assert "[seq]" not in err


def test_run_with_an_unknown_source_name_exits_2(cli, write_toml):
    write_toml(PIPELINE.format(count=10, rate=0))
    done = cli("run", "--source", "nope")
    assert done.returncode == 2
    assert "no source named nope (the pipeline has: seq, clock)" in done.stderr


def test_run_with_a_bad_pipeline_exits_2_before_starting(cli, write_toml, tmp_path):
    write_toml(PIPELINE.format(count=10, rate=0) + "bogus = 1\n")
    done = cli("run")
    assert done.returncode == 2
    assert "sources.clock.bogus: unknown key" in done.stderr
    assert not (tmp_path / "tables").exists()


def test_run_once_collects_one_snapshot_and_exits_0(cli, write_toml, tmp_path):
    write_toml(PIPELINE.format(count=10, rate=0))
    done = cli("run", "--once")
    assert done.returncode == 0, done.stderr
    assert pl.read_delta(str(tmp_path / "tables" / "test_records")).height == 1
    assert "--once: skipping streaming sources seq" in done.stderr


def test_run_logs_to_a_file_when_asked(cli, write_toml, tmp_path):
    write_toml(PIPELINE.format(count=10, rate=0))
    done = cli("run", "--once", "--log-file", "logs/run.log")
    assert done.returncode == 0, done.stderr
    assert (
        "[clock] 1 rows in 1 commits to test_records" in (tmp_path / "logs" / "run.log").read_text()
    )


def test_secret_from_a_variable_never_appears_in_run_logs(cli, write_toml, tmp_path):
    write_toml(PIPELINE.format(count=10, rate=0).replace('"tables"', '"${DATA_DIR}"'))
    done = cli("run", "--once", env={"DATA_DIR": "secret-folder-name"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "secret-folder-name").is_dir()
    assert "secret-folder-name" not in done.stderr


def test_tables_shows_version_files_rows_and_size(cli, write_toml):
    write_toml(PIPELINE.format(count=10, rate=0))
    cli("run", "--once")
    done = cli("tables")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert header.split()[:5] == ["table", "version", "files", "rows", "size"]
    assert row.split()[:4] == ["test_records", "0", "1", "1"]


def test_query_runs_sql_over_tables_by_name_in_each_format(cli, write_toml):
    write_toml(PIPELINE.format(count=10, rate=0))
    cli("run", "--once")
    sql = "SELECT source, n FROM test_records"
    assert "clock" in cli("query", sql).stdout
    assert cli("query", "lakeflow.toml", sql, "--format", "csv").stdout == "source,n\nclock,1\n"
    assert json.loads(cli("query", sql, "--format", "json").stdout) == [{"source": "clock", "n": 1}]


def test_query_with_bad_sql_exits_1_with_the_reason(cli, write_toml):
    write_toml(PIPELINE.format(count=10, rate=0))
    done = cli("query", "SELECT * FROM nowhere")
    assert done.returncode == 1
    assert "query failed" in done.stderr


def test_maintain_compacts_every_table(cli, write_toml):
    write_toml(PIPELINE.format(count=10, rate=0))
    for _ in range(3):
        cli("run", "--once")
    done = cli("maintain")
    assert done.returncode == 0, done.stderr
    assert "test_records: files 3 -> 1" in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command):
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: lakeflow " + command in done.stdout
