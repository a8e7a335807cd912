"""``lakeflow run --once`` end to end in a subprocess, and the README's commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from prices_standin import Reply, StandIn, tickers

LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
README = Path(__file__).parents[1] / "README.md"
# Only this plugin: the test must not depend on what else happens to be installed.
ENV = {**os.environ, "LAKEFLOW_PLUGINS": "binance_prices"}

PIPELINE = """
[sink]
uri = "tables"
flush_interval = 0.2

[sources.prices]
type = "binance_prices"
market = "spot"
base_url = "{url}"
interval = 60.0
"""


@dataclass
class OnceRun:
    folder: Path
    process: subprocess.CompletedProcess[str]
    server: StandIn


def lakeflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnceRun]:
    """One ``lakeflow run --once`` against the stand-in, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("once")
    with StandIn() as server:  # on its own thread: the command runs in a subprocess
        (folder / "lakeflow.toml").write_text(PIPELINE.format(url=server.url), encoding="utf-8")
        process = lakeflow(folder, "run", "--once")
        yield OnceRun(folder, process, server)


def test_run_once_stores_one_snapshot_and_exits_0(once: OnceRun) -> None:
    assert once.process.returncode == 0, once.process.stderr
    assert len(once.server.requests) == 1
    rows = pl.read_delta(str(once.folder / "tables" / "prices"))
    assert rows.height == len(tickers("spot"))
    assert rows["polled_at"].n_unique() == 1
    assert sorted(rows["symbol"]) == sorted(t["symbol"] for t in tickers("spot"))


RESTRICTED = (
    b'{"code":0,"msg":"Service unavailable from a restricted location according to '
    b"'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service "
    b'if you believe you received this message in error."}'
)


def test_run_once_exits_1_when_binance_refuses_the_location(tmp_path: Path) -> None:
    with StandIn() as server:
        server.queue(Reply(451, RESTRICTED))
        (tmp_path / "lakeflow.toml").write_text(PIPELINE.format(url=server.url), encoding="utf-8")
        process = lakeflow(tmp_path, "run", "--once")

    assert process.returncode == 1, process.stderr
    assert len(server.requests) == 1  # stopped, not retried
    said = [line for line in process.stderr.splitlines() if "HTTP 451" in line]
    assert len(said) == 1, process.stderr
    assert "Binance refuses requests from this machine's location" in said[0]
    assert "Run lakeflow from a host in a location Binance serves" in said[0]


def readme_commands(prefix: str) -> list[list[str]]:
    """The README's shell lines that start with ``prefix``, split like a shell would."""
    lines = re.findall(rf"^{re.escape(prefix)}.*$", README.read_text(encoding="utf-8"), re.M)
    return [shlex.split(line)[2:] for line in lines]  # drop "uv run"


def test_readme_query_examples_run_on_a_snapshot(once: OnceRun) -> None:
    examples = readme_commands("uv run lakeflow query")
    assert examples, "the README shows no `lakeflow query` example"
    for args in examples:
        result = lakeflow(once.folder, *args[1:])
        assert result.returncode == 0, (args, result.stderr)
        assert "BTCUSDT" in result.stdout, args


def test_readme_once_command_is_the_one_tested() -> None:
    assert ["lakeflow", "run", "--once"] in readme_commands("uv run lakeflow run")
