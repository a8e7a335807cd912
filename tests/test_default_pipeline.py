"""The shipped default, as shipped: the repository's own ``lakeflow.toml``, unchanged, run by
the real ``lakeflow`` command against stand-ins at Binance's real hostnames over TLS.

The stand-ins route like Binance since 2026-04-23: liquidation events only under the
``/market`` routed base, the legacy paths silent (they accept the connection, answer pings
and subscriptions, forward nothing). Each test runs in a network namespace of its own
(``lakeflow.testing.run_at_hostnames``): nothing reaches the internet. Under ``CI=true`` a
machine that cannot make namespaces fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from harness import LAKEFLOW, needs_workspace_plugins
from lakeflow.testing import (
    HostnameRun,
    HostnameStandIn,
    HttpRoute,
    WebSocketRoute,
    require_hostnames,
    run_at_hostnames,
)

REPO = Path(__file__).resolve().parents[1]
PRICES_FIXTURES = REPO / "plugins" / "lakeflow_binance_prices" / "tests" / "fixtures"
#: The shipped default is made of the workspace's Binance plugins.
pytestmark = needs_workspace_plugins
MARKET = "/market/ws/!forceOrder@arr"
LEGACY = "/ws/!forceOrder@arr"
#: Trade time of the first event; event k trades 25 ms after event k-1.
BASE_MS = 1_777_000_000_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "1000PEPEUSDT", "XRPUSDT")


def force_order(k: int) -> str:
    """The k-th event, shaped like live 2026 frames: ``ps`` and ``st`` inside ``o``."""
    symbol = SYMBOLS[k % len(SYMBOLS)]
    trade = BASE_MS + 25 * k
    quantity = f"{k % 90 + 1}.{k % 1000:03d}"
    return json.dumps(
        {
            "e": "forceOrder",
            "E": trade + 1000,  # Binance's 1000 ms snapshot window
            "o": {
                "s": symbol,
                "S": "SELL" if k % 2 else "BUY",
                "o": "LIMIT",
                "f": "IOC",
                "q": quantity,
                "p": f"{100 + k % 700}.{k % 100:02d}",
                "ap": f"{100 + k % 700}.{(k + 1) % 100:02d}",
                "X": "FILLED",
                "l": quantity,
                "z": quantity,
                "T": trade,
                "ps": symbol,
                "st": 0,
            },
        },
        separators=(",", ":"),
    )


def binance(frames: list[str]) -> HostnameStandIn:
    """Binance as it routes today, with ``frames`` on the USD-M all-market stream."""
    spot = (PRICES_FIXTURES / "spot_ticker_24hr.json").read_bytes()
    usdm = (PRICES_FIXTURES / "usdm_ticker_24hr.json").read_bytes()
    return HostnameStandIn(
        [
            WebSocketRoute("fstream.binance.com", MARKET, frames=frames, rate=40.0),
            WebSocketRoute("fstream.binance.com", LEGACY),
            WebSocketRoute("fstream.binance.com", "/ws"),
            WebSocketRoute("dstream.binance.com", MARKET),
            WebSocketRoute("dstream.binance.com", LEGACY),
            HttpRoute("api.binance.com", "/api/v3/ticker/24hr", body=spot),
            HttpRoute("fapi.binance.com", "/fapi/v1/ticker/24hr", body=usdm),
        ],
        hosts=["dapi.binance.com"],
    )


def shipped(folder: Path, *, edit=lambda text: text) -> Path:
    """The repository's ``lakeflow.toml`` in ``folder`` (edited only where a test says so)."""
    text = (REPO / "lakeflow.toml").read_text(encoding="utf-8")
    path = folder / "lakeflow.toml"
    path.write_text(edit(text), encoding="utf-8")
    return path


def lakeflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in ``folder``, outside the namespace (it reads local files only)."""
    return subprocess.run([LAKEFLOW, *args], cwd=folder, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HostnameRun, list[str]]:
    """``lakeflow run`` in a folder holding only the shipped ``lakeflow.toml``: 800 events
    at 40 a second on the current endpoint, then SIGINT."""
    require_hostnames()
    folder = tmp_path_factory.mktemp("default")
    path = shipped(folder)
    assert path.read_bytes() == (REPO / "lakeflow.toml").read_bytes()
    frames = [force_order(k) for k in range(800)]
    result = run_at_hostnames(
        [LAKEFLOW, "run"], binance(frames), cwd=folder, settle=3.0, timeout=120
    )
    return folder, result, frames


def test_the_shipped_default_runs_and_stops_cleanly(default_run):
    _, result, _ = default_run

    assert result.stopped_by == "settle", result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.all_sent


def test_the_shipped_default_connects_to_binances_market_route(default_run):
    _, result, _ = default_run

    assert f"connected to wss://fstream.binance.com{MARKET}" in result.stderr
    assert result.served[f"wss://fstream.binance.com{MARKET}"].connections == 1
    assert result.served[f"wss://fstream.binance.com{LEGACY}"].connections == 0
    assert result.unexpected == []


def test_every_liquidation_served_lands_once(default_run):
    folder, result, frames = default_run
    served = result.served[f"wss://fstream.binance.com{MARKET}"].frames

    rows = pl.read_delta(str(folder / "tables" / "liquidations"))

    assert served == len(frames)
    assert rows.height == served
    trade_ms = rows["trade_time"].dt.epoch("ms").sort().to_list()
    assert trade_ms == [BASE_MS + 25 * k for k in range(len(frames))]
    assert rows["pair"].to_list() == rows["symbol"].to_list()


def test_every_price_served_lands(default_run):
    folder, result, _ = default_run
    bodies = result.served["https://api.binance.com/api/v3/ticker/24hr"].responses
    per_body = len(json.loads((PRICES_FIXTURES / "spot_ticker_24hr.json").read_bytes()))

    rows = pl.read_delta(str(folder / "tables" / "prices"))

    assert bodies >= 1
    assert rows.height == bodies * per_body
    assert set(rows["market"]) == {"spot"}


def test_the_shipped_default_logs_no_warning_and_records_no_gap(default_run):
    folder, result, _ = default_run

    assert not re.search(r" (WARNING|ERROR) ", result.stderr), result.stderr[-3000:]
    assert not (folder / "tables" / "_gaps").exists()


def test_status_and_tables_after_the_default_run(default_run):
    folder, _, frames = default_run

    status = lakeflow(folder, "status")
    tables = lakeflow(folder, "tables")

    assert status.returncode == 1  # stopped: "not running"
    assert "liquidations: not running" in status.stdout
    assert tables.returncode == 0
    assert re.search(rf"^liquidations\s+\d+\s+\d+\s+{len(frames)}\s", tables.stdout, re.M)
    print(status.stdout, tables.stdout, sep="\n")


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The shipped pipeline pinned to the legacy path, silence judged after 4 s, metrics
    on; a probe inside the namespace watches /healthz, /metrics and `lakeflow status`."""
    require_hostnames()
    folder = tmp_path_factory.mktemp("legacy")

    def pin_to_legacy(text: str) -> str:
        text = text.replace(
            "[sources.liquidations]\n",
            '[sources.liquidations]\nroutes = ["legacy"]\nsilence_timeout = "4s"\n',
        )
        return text + '\n[metrics]\nlisten = "127.0.0.1:9464"\n'

    path = shipped(folder, edit=pin_to_legacy)
    probe = [sys.executable, str(Path(__file__).parent / "silent_probe.py")]
    frames = [force_order(k) for k in range(50)]
    run = run_at_hostnames(
        [*probe, LAKEFLOW, str(path), "http://127.0.0.1:9464", "30"],
        binance(frames),
        cwd=folder,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    seen["served"] = run.served
    return folder, seen


def test_a_silent_legacy_path_is_reported_unhealthy_within_the_configured_silence(legacy_run):
    _, seen = legacy_run

    assert seen.get("healthz_status") == 503, seen["log"][-3000:]
    # Connected within a second or two of the start, silent 4 s later, seen within 0.2 s.
    assert seen["at"] - seen["started"] < 4 + 6
    problem = seen["healthz"]["sources"]["liquidations"]["problem"]
    assert problem.startswith("silent: no data for ")
    assert f"on wss://fstream.binance.com{LEGACY} (normal: at most 4s)" in problem
    assert seen["healthz"]["sources"]["prices"]["problem"] is None


def test_a_silent_legacy_path_is_a_warning_naming_the_url_and_the_likely_causes(legacy_run):
    _, seen = legacy_run

    warning = next(line for line in seen["log"].splitlines() if "SILENT" in line)
    assert " WARNING " in warning
    assert f"connected to wss://fstream.binance.com{LEGACY} but no data for" in warning
    assert "moved or retired the stream" in warning
    assert "blocks this region" in warning


def test_a_silent_legacy_path_shows_in_status_and_the_gauge(legacy_run):
    _, seen = legacy_run

    assert seen["status_exit"] == 1
    assert re.search(r"liquidations\s+silent \d+s", seen["status"]), seen["status"]
    assert "liquidations: silent: no data for" in seen["status"]
    gauge = re.search(
        r'^lakeflow_seconds_since_last_payload\{source="liquidations"\} (\S+)$',
        seen["metrics"],
        re.M,
    )
    assert gauge and float(gauge.group(1)) >= 4
    assert 'lakeflow_source_healthy{source="liquidations"} 0.0' in seen["metrics"]


def test_a_silent_legacy_path_collects_nothing_and_records_the_silence_as_gaps(legacy_run):
    folder, seen = legacy_run

    assert seen["exit"] == 0
    assert seen["served"][f"wss://fstream.binance.com{MARKET}"].connections == 0
    assert not (folder / "tables" / "liquidations").exists()
    gaps = pl.read_delta(str(folder / "tables" / "_gaps"))
    silent = gaps.filter(pl.col("reason").str.starts_with("silent: "))
    assert silent.height >= 1
    assert (silent["source"] == "liquidations").all()


def test_validate_shows_the_urls_the_shipped_default_uses(tmp_path):
    shipped(tmp_path)

    done = lakeflow(tmp_path, "validate")

    assert done.returncode == 0, done.stderr
    assert f"    url: wss://fstream.binance.com{MARKET}\n" in done.stdout
    assert f"    then: wss://fstream.binance.com{LEGACY}\n" in done.stdout
    assert "    silent when: more than 5m without a payload (source type's default)" in done.stdout
    assert "    url: https://api.binance.com/api/v3/ticker/24hr\n" in done.stdout
