"""The README's examples are valid, and its tables say what the code does."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

from click.testing import CliRunner
from lakeflow_okx_liquidations import LIQUIDATION, OkxLiquidationsConfig, OkxLiquidationsSource

from lakeflow.cli import cli
from lakeflow.testing import code_blocks
from lakeflow.testing import table_after as readme_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return code_blocks(README, language)


def table_after(heading: str) -> list[list[str]]:
    return readme_table(README, heading)


def test_okx_readme_config_examples_are_valid():
    sections = [
        dict(section)
        for block in blocks("toml")
        for section in tomllib.loads(block).get("sources", {}).values()
    ]

    assert len(sections) >= 2
    for section in sections:
        assert section.pop("type") == OkxLiquidationsSource.type
        OkxLiquidationsConfig(**section)


def test_okx_readme_lists_every_config_key():
    keys = [row[0].strip("`") for row in table_after("## Configuration")]

    # type is the core's key, read before the plugin's config.
    assert sorted(keys) == sorted(["type", *OkxLiquidationsConfig.model_fields])


def test_okx_readme_mapping_names_only_schema_columns():
    columns = [row[0].strip("`") for row in table_after("## Mapping")]

    assert set(columns) <= set(LIQUIDATION.columns)


def test_okx_readme_query_runs_on_a_collected_table(okx_frames, okx_exchange, okx_collect):
    (sql,) = re.findall(r'^uv run lakeflow query "(.+)"$', "".join(blocks("sh")), flags=re.M)
    swap = okx_frames("swap_frames.jsonl")
    result = asyncio.run(okx_collect(okx_exchange({"SWAP": swap}), payloads=2 + len(swap)))

    done = CliRunner().invoke(cli, ["query", "--format", "csv", str(result.pipeline), sql])

    assert done.exit_code == 0, done.output
    header, first, *_ = done.stdout.splitlines()
    assert header == "symbol,position_side,liquidations,notional"
    assert first.startswith("BTC-USD-SWAP,short,1,15000")  # 150 contracts of 100 USD
