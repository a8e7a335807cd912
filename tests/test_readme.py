"""The README's commands work as written."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import polars as pl

from harness import needs_workspace_plugins
from lakeflow.config import load_pipeline
from lakeflow.plugins import load
from lakeflow.sinks.delta import DeltaSink
from lakeflow.sources import Batch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FIXTURES = ROOT / "plugins" / "lakeflow_binance_liquidations" / "tests" / "fixtures"
#: The README walks through the shipped default: the workspace's Binance plugins.
pytestmark = needs_workspace_plugins


def readme_commands(prefix: str) -> list[list[str]]:
    lines = re.findall(rf"^uv run lakeflow {prefix}.*$", README, re.MULTILINE)
    return [shlex.split(line)[2:] for line in lines]


def test_default_pipeline_is_valid(cli, tmp_path):
    (tmp_path / "lakeflow.toml").write_text((ROOT / "lakeflow.toml").read_text())
    done = cli("validate")
    assert done.returncode == 0, done.stderr
    assert (
        "source liquidations: binance_liquidations (streaming) -> table liquidations" in done.stdout
    )
    assert "source prices: binance_prices (polling) -> table prices" in done.stdout


def test_quick_start_queries_run_on_liquidations(cli, tmp_path):
    (tmp_path / "lakeflow.toml").write_text((ROOT / "lakeflow.toml").read_text())
    registry = load()
    pipeline = load_pipeline(tmp_path / "lakeflow.toml", registry)
    spec = pipeline.sources["liquidations"]
    payloads = (FIXTURES / "usdm_forceOrder_raw.jsonl").read_bytes().splitlines()
    # Received now: a receipt before an event's own time makes that time implausible.
    now = time.time_ns() // 1000
    times = pl.Series([now] * len(payloads), dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    decoded = spec.cls("liquidations", spec.config).decode(Batch(payloads, times))
    DeltaSink(pipeline.sink).commit("liquidations", spec.schema, decoded.rows, "liquidations", 1)
    # The last-hour query needs fresh events: the default run at the exchanges'
    # hostnames runs it (tests/test_default_pipeline.py), on three exchanges' rows.
    commands = [c for c in readme_commands("query") if "now()" not in c[-1]]
    assert commands
    for command in commands:
        done = cli(*command[1:])
        assert done.returncode == 0, (command, done.stderr)
        assert "BTCUSDT" in done.stdout
    assert cli("tables").returncode == 0
