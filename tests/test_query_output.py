"""``lakeflow query``'s output: decimals trimmed for people in the table, exact in CSV and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

import lakeflow
from lakeflow.cli import cli as lakeflow_cli

PIPELINE = """
[sink]
uri = "tables"
"""
AMOUNTS = lakeflow.TableSchema(
    name="amount",
    table="amounts",
    columns={"name": pl.String(), "amount": lakeflow.DECIMAL, "count": pl.Int64()},
    partition_by=(),
)
EXACT = ["28021929.874423800000000000", "1.000000000000000000", "0.000000000000000000"]


@pytest.fixture
def query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run ``lakeflow query`` in-process over a table of decimals written by the real Delta sink."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lakeflow.toml").write_text(PIPELINE, encoding="utf-8")
    lake = lakeflow.Lake("lakeflow.toml")
    rows = pl.DataFrame(
        {
            "name": ["big", "one", "zero", "none"],
            "amount": [*EXACT, None],
            "count": [100, 1, 0, 10],
        },
        schema={"name": pl.String, "amount": pl.String, "count": pl.Int64},
    ).with_columns(pl.col("amount").cast(lakeflow.DECIMAL))
    lake.sink.commit("amounts", AMOUNTS, rows, "test", 1)

    def run(*args: str) -> Result:
        done = CliRunner().invoke(lakeflow_cli, ["query", *args])
        assert done.exit_code == 0, done.output
        return done

    return run


def cells(table: str) -> list[list[str]]:
    """The cells of each row of polars' table output."""
    return [
        [cell.strip() for cell in line.strip("│").split("┆")]
        for line in table.splitlines()
        if line.startswith("│")
    ]


SQL = "SELECT name, amount, count FROM amounts ORDER BY count DESC"


def test_the_table_trims_trailing_zeros_of_decimals(query):
    rows = cells(query(SQL).stdout)
    assert ["big", "28021929.8744238", "100"] in rows
    assert ["one", "1", "1"] in rows
    assert ["zero", "0", "0"] in rows
    assert ["none", "null", "10"] in rows


def test_integers_keep_their_zeros_in_the_table(query):
    rows = cells(query("SELECT count FROM amounts ORDER BY count DESC").stdout)
    assert ["100"] in rows and ["10"] in rows


def test_csv_keeps_exact_decimals(query):
    lines = query(SQL, "--format", "csv").stdout.splitlines()
    assert lines[1:] == [
        f"big,{EXACT[0]},100",
        "none,,10",
        f"one,{EXACT[1]},1",
        f"zero,{EXACT[2]},0",
    ]


def test_json_keeps_exact_decimals(query):
    amounts = {
        row["name"]: row["amount"] for row in json.loads(query(SQL, "--format", "json").stdout)
    }
    assert amounts == {"big": EXACT[0], "one": EXACT[1], "zero": EXACT[2], "none": None}
