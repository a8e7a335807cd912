"""``lakeflow query`` on a table that is not there says which tables are, and what to do."""

from __future__ import annotations

PIPELINE = """
[sink]
uri = "tables"
flush_interval = 0.3

[sources.clock]
type = "test_clock"
interval = 0.2
"""


def test_query_before_any_run_names_the_table_and_says_to_run_the_pipeline(cli, write_toml):
    write_toml(PIPELINE)
    done = cli("query", "SELECT * FROM test_records")
    assert done.returncode == 1
    assert "no table 'test_records' under" in done.stderr
    assert "(tables there: none yet)" in done.stderr
    assert "run the pipeline first (lakeflow run lakeflow.toml)" in done.stderr


def test_query_of_a_table_the_pipeline_does_not_write_lists_those_it_does(cli, write_toml):
    write_toml(PIPELINE)
    assert cli("run", "--once").returncode == 0
    done = cli("query", "SELECT * FROM liquidations")
    assert done.returncode == 1
    assert "no table 'liquidations' under" in done.stderr
    assert "tables there: test_records" in done.stderr
    assert "lakeflow.toml writes test_records" in done.stderr


def test_query_with_bad_sql_still_says_what_polars_said(cli, write_toml):
    write_toml(PIPELINE)
    done = cli("query", "SELEKT 1")
    assert done.returncode == 1
    assert "query failed: " in done.stderr
    assert "no table" not in done.stderr
