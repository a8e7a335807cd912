"""The README's examples run, and its tables say what the code does."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from lakeflow_bybit_liquidations import (
    LIQUIDATION,
    BybitLiquidationsConfig,
    BybitLiquidationsSource,
)

from lakeflow.testing import code_blocks
from lakeflow.testing import table_after as readme_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
LAKEFLOW = Path(sys.executable).parent / "lakeflow"


def blocks(language: str) -> list[str]:
    return code_blocks(README, language)


def table_after(heading: str) -> list[list[str]]:
    return readme_table(README, heading)


def test_readme_config_examples_are_valid():
    sections = [
        section
        for block in blocks("toml")
        for section in tomllib.loads(block).get("sources", {}).values()
    ]

    assert len(sections) >= 2
    for section in sections:
        section = dict(section)
        assert section.pop("type") == BybitLiquidationsSource.type
        BybitLiquidationsConfig(**section)


def test_readme_lists_every_config_key():
    keys = [row[0].strip("`") for row in table_after("## Configuration")]

    # type is the core's key, read before the plugin's config.
    assert sorted(keys) == sorted(["type", *BybitLiquidationsConfig.model_fields])


def test_readme_schema_table_is_the_schema_in_order():
    columns = [row[0].strip("`") for row in table_after("## Schema")]

    assert columns == list(LIQUIDATION.columns)


QUERIES = re.findall(r'^uv run lakeflow query "(.+)"$', "".join(blocks("sh")), flags=re.M)


def test_readme_has_query_examples():
    assert len(QUERIES) == 2


@pytest.mark.parametrize("sql", QUERIES, ids=[f"query{i}" for i in range(1, len(QUERIES) + 1)])
def test_readme_query_runs_on_a_collected_table(
    sql, frames, bybit_ws, bybit_rest, collect, tmp_path, monkeypatch
):
    # The refusals are 403s, which the source waits out (10 minutes): shorten the wait.
    monkeypatch.setattr(BybitLiquidationsSource, "ban_wait", 0.2)
    sent = frames("linear_allLiquidation.jsonl")
    ws = bybit_ws({"allLiquidation.ETHUSDT": sent[:1], "allLiquidation.BTCUSDT": sent[1:2]})
    # The instrument list refused twice: the first connection fails, so _gaps has a row too.
    collect(ws, bybit_rest(fail_first=2), payloads=3)

    done = subprocess.run(
        [str(LAKEFLOW), "query", "--format", "csv", str(tmp_path / "lakeflow.toml"), sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) >= 2  # a header and at least one row
