"""The shipped default, as shipped: the repository's own ``lakeflow.toml``, unchanged, run by
the real ``lakeflow`` command against stand-ins at Binance's, Bybit's and OKX's real
hostnames over TLS: three exchanges' liquidations into one table, every event once.

The stand-ins speak Binance as it runs today: since 2026-04-23 USD-M liquidation events only
under fstream's ``/market`` routed base, its legacy paths silent (they accept the connection,
answer pings and subscriptions, forward nothing); since 2026-06-30 the all-market stream of
either host carries USD-M and COIN-M events interleaved, each marked by ``st`` inside ``o``,
and dstream serves it at the root path COIN-M's pages document. Both products' instrument
lists (``exchangeInfo``) answer at fapi and dapi. Each test runs in a network namespace of its own
(``lakeflow.testing.run_at_hostnames``): nothing reaches the internet. Under ``CI=true`` a
machine that cannot make namespaces fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from decimal import ROUND_HALF_EVEN, Decimal
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
#: Trade time of the first event; event k trades 25 ms after event k-1. Ten minutes ago,
#: so that the README's "last hour" query sees every event.
BASE_MS = (int(time.time()) - 600) * 1000
BYBIT_STREAM = "/v5/public/linear"
OKX_STREAM = "/ws/v5/public"
#: Bybit's linear instruments: symbol -> quote coin (all Trading).
BYBIT_COINS = {"BTCUSDT": "USDT", "ETHPERP": "USDC", "SOLUSDT": "USDT"}
#: OKX's instruments: instId -> (instType, ctVal, ctType, settleCcy, ctValCcy).
OKX_INSTRUMENTS = {
    "ETH-USDT-SWAP": ("SWAP", "0.1", "linear", "USDT", "ETH"),
    "BTC-USD-SWAP": ("SWAP", "100", "inverse", "BTC", "USD"),
    "ETH-USDT-261225": ("FUTURES", "0.1", "linear", "USDT", "ETH"),
}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "1000PEPEUSDT", "XRPUSDT", "BTCUSDT_261225")
#: COIN-M contracts of the merged stream: symbol -> (pair, contract size in USD).
COINM = {"BTCUSD_PERP": ("BTCUSD", 100), "ETHUSD_261225": ("ETHUSD", 10)}
DSTREAM = "/ws/!forceOrder@arr"  # COIN-M's documented path


def is_coinm(k: int) -> bool:
    """Every fourth event of the merged stream is a COIN-M one."""
    return k % 4 == 3


def force_order(k: int) -> str:
    """The k-th event of the merged stream, shaped like live 2026 frames: ``ps`` and ``st``
    inside ``o``; COIN-M events count contracts."""
    trade = BASE_MS + 25 * k
    if is_coinm(k):
        symbol = list(COINM)[k % len(COINM)]
        pair, kind, quantity = COINM[symbol][0], 2, str(k % 9 + 1)
    else:
        symbol = SYMBOLS[k % len(SYMBOLS)]
        pair, kind, quantity = symbol.split("_")[0], 1, f"{k % 90 + 1}.{k % 1000:03d}"
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
                "ps": pair,
                "st": kind,
            },
        },
        separators=(",", ":"),
    )


def bybit_frame(k: int) -> str:
    """The k-th Bybit ``allLiquidation`` frame: one to three events of one symbol."""
    symbol = list(BYBIT_COINS)[k % len(BYBIT_COINS)]
    events = [
        {
            "T": BASE_MS + 25 * k + i,
            "s": symbol,
            "S": "Buy" if (k + i) % 2 else "Sell",  # the position's side: Buy = a long
            "v": f"{k % 40 + 1}.{i}5",
            "p": f"{2000 + k}.{k % 100:02d}",
        }
        for i in range(k % 3 + 1)
    ]
    frame = {"topic": f"allLiquidation.{symbol}", "type": "snapshot", "ts": BASE_MS + 25 * k + 9}
    return json.dumps({**frame, "data": events}, separators=(",", ":"))


def okx_frame(k: int) -> str:
    """The k-th OKX ``liquidation-orders`` frame: two instruments of one type, each with
    one or two details; positions in hedge mode (long/short) and one-way mode (net)."""
    kind = "SWAP" if k % 3 else "FUTURES"
    names = [name for name, spec in OKX_INSTRUMENTS.items() if spec[0] == kind]
    data = []
    for n, name in enumerate(names):
        details = []
        for i in range((k + n) % 2 + 1):
            side = "sell" if (k + i) % 2 else "buy"
            pos = "net" if k % 5 == 0 else ("long" if side == "sell" else "short")
            details.append(
                {
                    "side": side,
                    "posSide": pos,
                    "bkPx": "50000" if name.startswith("BTC") else f"{3000 + k}.5",
                    "sz": f"{k % 7 + 1}.{i}5" if not name.startswith("BTC") else str(k % 9 + 1),
                    "bkLoss": "0",
                    "ccy": "",
                    "ts": str(BASE_MS + 25 * k + 10 * n + i),
                }
            )
        family = name.rsplit("-", 1)[0]
        data.append(
            {
                "instId": name,
                "instFamily": family,
                "uly": family,
                "instType": kind,
                "details": details,
            }
        )
    arg = {"channel": "liquidation-orders", "instType": kind}
    return json.dumps({"arg": arg, "data": data}, separators=(",", ":"))


def bybit_instruments() -> dict:
    listed = [
        {
            "symbol": s,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "quoteCoin": c,
            "settleCoin": c,
            "baseCoin": s[:3],
        }
        for s, c in BYBIT_COINS.items()
    ]
    result = {"category": "linear", "list": listed, "nextPageCursor": ""}
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": BASE_MS}


def okx_instruments(kind: str) -> dict:
    data = [
        {
            "instType": t,
            "instId": name,
            "ctVal": val,
            "ctType": ct,
            "settleCcy": settle,
            "ctValCcy": ccy,
            "ctMult": "1",
            "state": "live",
        }
        for name, (t, val, ct, settle, ccy) in OKX_INSTRUMENTS.items()
        if t == kind
    ]
    return {"code": "0", "msg": "", "data": data}


def exchange_info(product: str) -> dict:
    """Binance's ``exchangeInfo`` of one product, with the symbols the stream carries."""
    if product == "usdm":
        listed = [
            {"symbol": s, "pair": s.split("_")[0], "status": "TRADING", "quoteAsset": "USDT"}
            for s in SYMBOLS
        ]
    else:
        listed = [
            {"symbol": s, "pair": p, "contractStatus": "TRADING", "contractSize": size}
            for s, (p, size) in COINM.items()
        ]
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "limit": 2400}]
    return {"timezone": "UTC", "rateLimits": limits, "symbols": listed}


#: Frames a second on each stream: several flushes' worth in a few seconds.
RATE = 160.0


def exchanges(
    frames: list[str],
    bybit: list[str] = (),
    okx: list[str] = (),  # type: ignore[assignment]
    *,
    dstream: list[str] = (),  # type: ignore[assignment]
) -> HostnameStandIn:
    """Binance as it runs today, with ``frames`` on fstream's merged all-market stream (and
    ``dstream`` on dstream's); Bybit's linear stream and OKX's public one with theirs;
    every instrument list."""
    spot = (PRICES_FIXTURES / "spot_ticker_24hr.json").read_bytes()
    usdm = (PRICES_FIXTURES / "usdm_ticker_24hr.json").read_bytes()
    return HostnameStandIn(
        [
            WebSocketRoute("fstream.binance.com", MARKET, frames=frames, rate=RATE),
            WebSocketRoute("fstream.binance.com", LEGACY),
            WebSocketRoute("fstream.binance.com", "/ws"),
            WebSocketRoute("dstream.binance.com", MARKET),
            WebSocketRoute("dstream.binance.com", DSTREAM, frames=list(dstream), rate=RATE),
            HttpRoute("api.binance.com", "/api/v3/ticker/24hr", body=spot),
            HttpRoute("fapi.binance.com", "/fapi/v1/ticker/24hr", body=usdm),
            HttpRoute("fapi.binance.com", "/fapi/v1/exchangeInfo", body=exchange_info("usdm")),
            HttpRoute("dapi.binance.com", "/dapi/v1/exchangeInfo", body=exchange_info("coinm")),
            WebSocketRoute("stream.bybit.com", BYBIT_STREAM, frames=list(bybit), rate=RATE),
            HttpRoute("api.bybit.com", "/v5/market/instruments-info", body=bybit_instruments()),
            WebSocketRoute("ws.okx.com", OKX_STREAM, port=8443, frames=list(okx), rate=RATE),
            HttpRoute(
                "www.okx.com",
                "/api/v5/public/instruments?instType=SWAP",
                body=okx_instruments("SWAP"),
            ),
            HttpRoute(
                "www.okx.com",
                "/api/v5/public/instruments?instType=FUTURES",
                body=okx_instruments("FUTURES"),
            ),
        ],
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
    at RATE a second on the current endpoint, then SIGINT."""
    require_hostnames()
    folder = tmp_path_factory.mktemp("default")
    path = shipped(folder)
    assert path.read_bytes() == (REPO / "lakeflow.toml").read_bytes()
    frames = [force_order(k) for k in range(800)]
    bybit = [bybit_frame(k) for k in range(200)]
    okx = [okx_frame(k) for k in range(200)]
    result = run_at_hostnames(
        [LAKEFLOW, "run"], exchanges(frames, bybit, okx), cwd=folder, settle=3.0, timeout=120
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


def liquidations(folder: Path, exchange: str) -> pl.DataFrame:
    rows = pl.read_delta(str(folder / "tables" / "liquidations"))
    return rows.filter(pl.col("exchange") == exchange).sort("trade_time", "symbol")


def test_every_liquidation_served_lands_once(default_run):
    folder, result, frames = default_run
    served = result.served[f"wss://fstream.binance.com{MARKET}"].frames

    rows = liquidations(folder, "binance")

    assert served == len(frames)
    assert rows.height == served
    trade_ms = rows["trade_time"].dt.epoch("ms").to_list()
    assert trade_ms == [BASE_MS + 25 * k for k in range(len(frames))]


def binance_expected(order: dict) -> tuple:
    """(market, position, base quantity, notional, currency) of one order, by its product."""
    filled, average = Decimal(order["z"]), Decimal(order["ap"])
    position = {"SELL": "long", "BUY": "short"}[order["S"]]
    if order["st"] == 1:
        return ("usdm", position, filled, filled * average, "USDT")
    notional = filled * COINM[order["s"]][1]
    base = (notional / average).quantize(Decimal("1e-18"), ROUND_HALF_EVEN)
    return ("coinm", position, base, notional, "USD")


def assert_sized_by_product(rows: pl.DataFrame, frames: list[str]) -> None:
    """Every row's market, position and sizes are those of its order's product."""
    sent = {json.loads(f)["o"]["T"]: json.loads(f)["o"] for f in frames}
    for row in rows.iter_rows(named=True):
        order = sent[int(row["trade_time"].timestamp() * 1000)]
        got = (
            row["market"],
            row["position_side"],
            row["base_quantity"],
            row["notional"],
            row["notional_currency"],
        )
        assert got == binance_expected(order), row
        assert row["pair"] == order["ps"]


def test_binance_rows_are_each_sized_by_their_own_product(default_run):
    folder, _, frames = default_run

    rows = liquidations(folder, "binance")

    assert_sized_by_product(rows, frames)
    assert rows.filter(pl.col("market") == "coinm").height == sum(map(is_coinm, range(800)))


def bybit_expected() -> list[tuple]:
    out = []
    for k in range(200):
        for event in json.loads(bybit_frame(k))["data"]:
            size, price = Decimal(event["v"]), Decimal(event["p"])
            position = "long" if event["S"] == "Buy" else "short"
            coin = BYBIT_COINS[event["s"]]
            out.append((event["T"], event["s"], event["S"], position, size, size * price, coin))
    return sorted(out, key=lambda row: (row[0], row[1]))


def test_every_bybit_event_of_every_frame_lands_once_with_its_position_and_notional(default_run):
    folder, result, _ = default_run

    rows = liquidations(folder, "bybit")

    assert result.served[f"wss://stream.bybit.com{BYBIT_STREAM}"].frames == 200
    got = [
        (
            int(r["trade_time"].timestamp() * 1000),
            r["symbol"],
            r["side"],
            r["position_side"],
            r["quantity"],
            r["notional"],
            r["notional_currency"],
        )
        for r in rows.iter_rows(named=True)
    ]
    assert got == bybit_expected()
    assert (rows["base_quantity"] == rows["quantity"]).all()
    assert set(rows["market"]) == {"linear"}


def okx_expected() -> list[tuple]:
    out = []
    for k in range(200):
        for item in json.loads(okx_frame(k))["data"]:
            _, value, kind, settle, ccy = OKX_INSTRUMENTS[item["instId"]]
            for d in item["details"]:
                size, price = Decimal(d["sz"]), Decimal(d["bkPx"])
                if d["posSide"] == "net":
                    position = "long" if d["side"] == "sell" else "short"
                else:
                    position = d["posSide"]
                if kind == "linear":
                    base = size * Decimal(value)
                    notional, currency = base * price, settle
                else:
                    notional, currency = size * Decimal(value), ccy
                    base = (notional / price).quantize(Decimal("1e-18"), ROUND_HALF_EVEN)
                out.append((int(d["ts"]), item["instId"], position, size, base, notional, currency))
    return sorted(out, key=lambda row: (row[0], row[1]))


def test_every_okx_detail_of_every_frame_lands_once_sized_by_its_contract(default_run):
    folder, result, _ = default_run

    rows = liquidations(folder, "okx")

    assert result.served[f"wss://ws.okx.com:8443{OKX_STREAM}"].frames == 200
    got = [
        (
            int(r["trade_time"].timestamp() * 1000),
            r["symbol"],
            r["position_side"],
            r["quantity"],
            r["base_quantity"],
            r["notional"],
            r["notional_currency"],
        )
        for r in rows.iter_rows(named=True)
    ]
    assert got == okx_expected()
    assert set(rows["market"]) == {"swap", "futures"}


def test_the_readme_query_of_the_last_hour_gives_long_and_short_notional_per_exchange(
    default_run,
):
    folder, _, _ = default_run
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sql = re.search(r'^uv run lakeflow query "(SELECT exchange, .+ INTERVAL .+)"$', readme, re.M)
    assert sql, "the README shows the per-exchange query of the last hour"

    done = lakeflow(folder, "query", sql.group(1), "--format", "json")

    assert done.returncode == 0, done.stderr
    print(lakeflow(folder, "query", sql.group(1)).stdout)
    got = {(r["exchange"], r["currency"]): r for r in json.loads(done.stdout)}
    rows = pl.read_delta(str(folder / "tables" / "liquidations"))
    for (exchange, currency), row in got.items():
        mine = rows.filter(
            (pl.col("exchange") == exchange) & (pl.col("notional_currency") == currency)
        )
        for side in ("long", "short"):
            want = mine.filter(pl.col("position_side") == side)["notional"].sum() or 0
            assert Decimal(str(row[f"{side}_notional"] or 0)) == want, (exchange, currency, side)
    assert {exchange for exchange, _ in got} == {"binance", "bybit", "okx"}
    assert ("okx", "USD") in got and ("bybit", "USDC") in got
    # COIN-M rows in USD beside USD-M's in USDT: never contracts times price.
    assert ("binance", "USD") in got and ("binance", "USDT") in got


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
    # Today's protocol is what the plugins declare: nothing in it is drift.
    assert not (folder / "tables" / "_drift").exists()


def test_status_and_tables_after_the_default_run(default_run):
    folder, _, frames = default_run

    status = lakeflow(folder, "status")
    tables = lakeflow(folder, "tables")

    assert status.returncode == 1  # stopped: "not running"
    assert "liquidations: not running" in status.stdout
    assert tables.returncode == 0
    every = len(frames) + len(bybit_expected()) + len(okx_expected())
    assert re.search(rf"^liquidations\s+\d+\s+\d+\s+{every}\s", tables.stdout, re.M)
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
        exchanges(frames),
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
    assert "    keeps: USD-M and COIN-M liquidations from fstream.binance.com" in done.stdout
    assert "reference coinm: https://dapi.binance.com/dapi/v1/exchangeInfo" in done.stdout
    assert "    silent when: more than 5m without data (source type's default)" in done.stdout
    assert "    url: https://api.binance.com/api/v3/ticker/24hr\n" in done.stdout


def one_source_per_product(text: str) -> str:
    """The shipped pipeline with Binance split: USD-M from fstream, COIN-M from dstream."""
    shipped_section = re.search(r"\[sources\.liquidations\]\n(?:[^\[]*\n)", text)
    assert shipped_section, "the shipped pipeline has a [sources.liquidations] section"
    split = (
        '[sources.liquidations]\ntype = "binance_liquidations"\nmarket = "usdm"\n\n'
        '[sources.coinm_liquidations]\ntype = "binance_liquidations"\nmarket = "coinm"\n\n'
    )
    return text.replace(shipped_section.group(0), split)


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HostnameRun, list[str]]:
    """One source per product, each host serving the same merged stream (as Binance does)."""
    require_hostnames()
    folder = tmp_path_factory.mktemp("split")
    shipped(folder, edit=one_source_per_product)
    frames = [force_order(k) for k in range(400)]
    result = run_at_hostnames(
        [LAKEFLOW, "run", "--source", "liquidations", "--source", "coinm_liquidations"],
        exchanges(frames, dstream=frames),
        cwd=folder,
        settle=3.0,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result, frames


def test_one_source_per_product_stores_every_event_once_sized_by_its_product(split_run):
    folder, result, frames = split_run

    rows = liquidations(folder, "binance")

    assert result.served[f"wss://fstream.binance.com{MARKET}"].frames == len(frames)
    assert result.served[f"wss://dstream.binance.com{DSTREAM}"].frames == len(frames)
    assert rows.height == len(frames)  # both hosts sent every event: each kept once
    assert_sized_by_product(rows, frames)


def test_one_source_per_product_connects_coinm_to_its_documented_path(split_run):
    _, result, _ = split_run

    assert f"connected to wss://dstream.binance.com{DSTREAM}" in result.stderr
    assert result.served[f"wss://dstream.binance.com{MARKET}"].connections == 0


#: From this event on, the stream carries a key no decoder reads, as `st` once did.
CHANGE_AT = 300


def changed(k: int) -> str:
    """The k-th event after Binance changed its stream mid-run: a new key inside ``o``,
    and one event of a symbol neither instrument list names."""
    event = json.loads(force_order(k))
    if k >= CHANGE_AT:
        event["o"]["mt"] = "ISOLATED"
    if k == CHANGE_AT + 50:
        event["o"]["s"] = event["o"]["ps"] = "NEWCOINUSDT"
        event["o"]["st"] = 1
    return json.dumps(event, separators=(",", ":"))


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HostnameRun, list[str]]:
    """The shipped pipeline while Binance changes its stream mid-run."""
    require_hostnames()
    folder = tmp_path_factory.mktemp("drift")
    shipped(folder)
    frames = [changed(k) for k in range(600)]
    result = run_at_hostnames(
        [LAKEFLOW, "run", "--source", "liquidations"],
        exchanges(frames),
        cwd=folder,
        settle=3.0,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result, frames


def test_a_key_that_appears_mid_run_is_one_warning_naming_it(drift_run):
    _, result, _ = drift_run

    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]

    keyed = [line for line in warnings if "a key no field reads: o.mt" in line]
    assert len(keyed) == 1, warnings
    assert "[liquidations]" in keyed[0] and "may have changed its stream" in keyed[0]


def test_a_change_mid_run_loses_no_row(drift_run):
    folder, result, frames = drift_run

    rows = liquidations(folder, "binance")

    assert result.served[f"wss://fstream.binance.com{MARKET}"].frames == len(frames)
    assert rows.height == len(frames)
    assert "NEWCOINUSDT" in set(rows["symbol"])


def test_a_change_mid_run_is_recorded_in_drift(drift_run):
    folder, _, frames = drift_run

    drift = pl.read_delta(str(folder / "tables" / "_drift"))

    entries = {(r["kind"], r["path"], r["value"]): r for r in drift.iter_rows(named=True)}
    key = entries[("key", "o.mt", "")]
    assert key["source"] == "liquidations" and key["table"] == "liquidations"
    assert 1 <= key["count"] <= len(frames) - CHANGE_AT
    assert b'"mt":"ISOLATED"' in key["example"]
    assert ("instrument", "symbol", "NEWCOINUSDT") in entries
    assert drift.height == len(entries)  # one row per entry, however many rounds


def test_a_change_mid_run_reads_the_instrument_lists_again_early(drift_run):
    _, result, _ = drift_run

    reads = [r for r in result.requests if r.target == "/fapi/v1/exchangeInfo"]

    assert len(reads) == 2  # before the first decode, then once for NEWCOINUSDT


def test_lakeflow_drift_and_status_show_the_change(drift_run):
    folder, _, _ = drift_run

    shown = lakeflow(folder, "drift")
    status = lakeflow(folder, "status")

    assert shown.returncode == 0, shown.stderr
    assert "liquidations (liquidations): key o.mt:" in shown.stdout
    assert "instrument symbol = 'NEWCOINUSDT'" in shown.stdout
    assert "liquidations: drift: " in status.stdout
    print(shown.stdout, status.stdout, sep="\n")
