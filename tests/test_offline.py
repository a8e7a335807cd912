"""Offline, said once: a machine that reaches no exchange gets one summary, not noise.

With no network, every source fails to connect, each reconnecting with backoff: logged
per source and per attempt that was 64 WARNING lines in 144 s, 65 of one error. Now
each source's attempts are at DEBUG and one line a minute names the hosts.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from harness import LAKEFLOW, free_port, needs_workspace_plugins, reaped, wait_for
from lakeflow.fetch import unreachable_host
from lakeflow.runtime.reach import Reachability

ROOT = Path(__file__).resolve().parent.parent


def test_a_first_summary_waits_until_a_host_has_failed_for_a_while() -> None:
    reach = Reachability(every=3600, after=3600)
    reach.failed("ws.okx.com")

    assert reach.summary() is None


def test_the_summary_names_every_failing_host_once_per_interval() -> None:
    reach = Reachability(every=3600, after=0)
    reach.failed("ws.okx.com")
    reach.failed("fstream.binance.com")
    line = reach.summary()

    assert line is not None
    assert line.startswith("cannot reach fstream.binance.com, ws.okx.com for ")
    assert "is this machine offline or blocked?" in line
    assert reach.summary() is None  # said: not again within the interval


def test_a_host_reached_again_leaves_the_summary() -> None:
    reach = Reachability(every=0, after=0)
    reach.failed("ws.okx.com")
    reach.reached("ws.okx.com")

    assert reach.summary() is None


def test_a_refused_connection_names_its_host_through_the_errors_that_wrap_it() -> None:
    async def connect() -> BaseException:
        async with aiohttp.ClientSession() as session:
            try:
                await session.get(f"http://127.0.0.1:{free_port()}/")
            except aiohttp.ClientError as exc:
                try:
                    raise RuntimeError("the instrument list could not be read") from exc
                except RuntimeError as wrapped:
                    return wrapped
        raise AssertionError("connected to a port nobody listens on")

    assert unreachable_host(asyncio.run(connect())) == "127.0.0.1"


def test_an_error_that_is_not_about_reaching_a_host_names_none() -> None:
    assert unreachable_host(ValueError("bad JSON")) is None


@needs_workspace_plugins
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_the_shipped_pipeline_offline_says_so_once_and_that_it_collected_nothing(
    tmp_path: Path,
) -> None:
    # A private network namespace: no interface but a loopback that is down, no DNS.
    shutil.copy(ROOT / "lakeflow.toml", tmp_path / "lakeflow.toml")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        command = ["unshare", "-n", LAKEFLOW, "run"]
        process = subprocess.Popen(
            command, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        with reaped(process):
            wait_for(lambda: "cannot reach" in log.read_text(), 60, "the offline summary")
            process.send_signal(signal.SIGINT)
            assert process.wait(60) == 0, log.read_text()[-3000:]
    lines = log.read_text().splitlines()
    warnings = [line for line in lines if " WARNING " in line]
    [summary] = [line for line in warnings if "cannot reach" in line]

    for host in ("fstream.binance.com", "stream.bybit.com", "ws.okx.com"):
        assert host in summary
    assert "is this machine offline or blocked?" in summary
    assert not [line for line in warnings if "disconnected (" in line]
    nothing = [line for line in warnings if "collected nothing" in line]
    assert len(nothing) == 4, "\n".join(warnings)
    # The summary, one stop line per source; at most a few others (say, a list's read).
    assert len(warnings) <= 1 + 4 + 3, "\n".join(warnings)
