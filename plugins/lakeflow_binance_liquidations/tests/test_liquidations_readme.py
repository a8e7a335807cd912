"""The README's examples run, and its tables say what the code does."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from lakeflow_binance_liquidations import LIQUIDATION, BinanceLiquidationsSource, LiquidationsConfig

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
        assert section.pop("type") == BinanceLiquidationsSource.type
        LiquidationsConfig(**section)


def test_readme_lists_every_config_key():
    keys = [row[0].strip("`") for row in table_after("## Configuration")]

    # type is the core's key, read before the plugin's config.
    assert sorted(keys) == sorted(["type", *LiquidationsConfig.model_fields])


def test_readme_schema_table_is_the_schema_in_order():
    columns = [row[0].strip("`") for row in table_after("## Schema")]

    assert columns == list(LIQUIDATION.columns)


QUERIES = re.findall(r'^uv run lakeflow query "(.+)"$', "".join(blocks("sh")), flags=re.M)


def test_readme_has_query_examples():
    assert len(QUERIES) == 3


@pytest.mark.parametrize("sql", QUERIES, ids=[f"query{i}" for i in range(1, len(QUERIES) + 1)])
def test_readme_query_runs_on_a_collected_table(sql, frames, stand_in, collect, tmp_path):
    sent = frames("usdm_forceOrder_raw.jsonl")

    async def main():
        # A server-side close on the way, so that _gaps has a row to show too.
        async with stand_in("/market/ws/!forceOrder@arr", sent[:2], sent[2:]) as server:
            return await collect(server, {}, payloads=len(sent))

    asyncio.run(main())
    done = subprocess.run(
        [str(LAKEFLOW), "query", "--format", "csv", str(tmp_path / "lakeflow.toml"), sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) >= 2  # a header and at least one row
