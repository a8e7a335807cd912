"""The source's config: what it accepts, what it refuses and how, and the URL it implies."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from lakeflow_binance_liquidations import BinanceLiquidationsSource, LiquidationsConfig
from pydantic import ValidationError

from lakeflow.testing import write_pipeline

LAKEFLOW = Path(sys.executable).parent / "lakeflow"
REPO = Path(__file__).resolve().parents[3]


def lakeflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAKEFLOW), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_unknown_key_is_refused_by_validate_naming_the_key(tmp_path):
    path = write_pipeline(tmp_path, "binance_liquidations", {"symbol": ["BTCUSDT"]})

    done = lakeflow("validate", str(path))

    assert done.returncode == 2
    assert "sources.source.symbol: unknown key; did you mean 'symbols'?" in done.stderr
    allowed = (
        "market, rest_url, routes, silence_timeout, symbols, table, type, usdm_rest_url, ws_url"
    )
    assert f"allowed: {allowed}" in done.stderr


def test_valid_pipeline_passes_validate(tmp_path):
    path = write_pipeline(tmp_path, "binance_liquidations", {"market": "coinm"})

    done = lakeflow("validate", str(path))

    assert done.returncode == 0, done.stderr
    assert "binance_liquidations (streaming) -> table liquidations [liquidation]" in done.stdout


def test_bad_market_is_refused_with_the_choices():
    with pytest.raises(ValidationError, match="'usdm', 'coinm' or 'all'"):
        LiquidationsConfig(market="spot")


def test_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        LiquidationsConfig(url="wss://example.com")


@pytest.mark.parametrize("symbol", ["btcusdt", "BTC/USDT", "BTC-USDT", ""])
def test_symbol_not_written_as_binance_does_is_refused(symbol):
    with pytest.raises(ValidationError, match="not Binance symbols"):
        LiquidationsConfig(symbols=["ETHUSDT", symbol])


def test_more_than_200_symbols_are_refused():
    with pytest.raises(ValidationError, match="at most 200 streams"):
        LiquidationsConfig(symbols=[f"COIN{i}USDT" for i in range(201)])


def test_200_symbols_fit_one_connection():
    config = LiquidationsConfig(symbols=[f"COIN{i}USDT" for i in range(200)])

    assert config.stream_url().count("@forceOrder") == 200


def test_repeated_symbols_are_asked_for_once():
    config = LiquidationsConfig(symbols=["BTCUSDT", "ETHUSDT", "BTCUSDT"])

    assert config.symbols == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize(
    "url", ["https://fstream.binance.com", "fstream.binance.com", "wss://x.test/?a=1", "ws://"]
)
def test_ws_url_must_be_a_websocket_base_url(url):
    with pytest.raises(ValidationError, match="ws_url"):
        LiquidationsConfig(ws_url=url)


def test_every_key_is_described():
    undescribed = [n for n, f in LiquidationsConfig.model_fields.items() if not f.description]

    assert undescribed == []


@pytest.mark.parametrize(
    ("config", "url"),
    [
        ({}, "wss://fstream.binance.com/market/ws/!forceOrder@arr"),
        ({"market": "all"}, "wss://fstream.binance.com/market/ws/!forceOrder@arr"),
        # COIN-M's pages still document the root paths: they come first there.
        ({"market": "coinm"}, "wss://dstream.binance.com/ws/!forceOrder@arr"),
        (
            {"symbols": ["BTCUSDT", "1000PEPEUSDT"]},
            "wss://fstream.binance.com/market/stream?streams="
            "btcusdt@forceOrder/1000pepeusdt@forceOrder",
        ),
        (
            {"market": "coinm", "symbols": ["BTCUSD_PERP"]},
            "wss://dstream.binance.com/stream?streams=btcusd_perp@forceOrder",
        ),
        (
            {"ws_url": "wss://proxy.test/binance/", "symbols": ["BTCUSDT"]},
            "wss://proxy.test/binance/market/stream?streams=btcusdt@forceOrder",
        ),
    ],
)
def test_url_is_binance_market_routing_of_2026(config, url):
    source = BinanceLiquidationsSource("test", LiquidationsConfig(**config))

    assert source.url() == url


@pytest.mark.parametrize(
    "url",
    ["wss://fstream.binance.com/ws", "wss://fstream.binance.com/market/", "ws://x.test/stream"],
)
def test_ws_url_ending_in_a_part_of_the_stream_path_is_refused(url):
    with pytest.raises(ValidationError, match="give the scheme and host only"):
        LiquidationsConfig(ws_url=url)


def test_legacy_path_is_the_fallback_after_the_market_route():
    source = BinanceLiquidationsSource("test", LiquidationsConfig())

    assert source.urls() == [
        "wss://fstream.binance.com/market/ws/!forceOrder@arr",
        "wss://fstream.binance.com/ws/!forceOrder@arr",
    ]


def test_coinm_tries_its_documented_root_path_first_then_the_market_route():
    source = BinanceLiquidationsSource("test", LiquidationsConfig(market="coinm"))

    assert source.urls() == [
        "wss://dstream.binance.com/ws/!forceOrder@arr",
        "wss://dstream.binance.com/market/ws/!forceOrder@arr",
    ]


def test_both_products_from_named_symbols_are_refused_naming_the_fix():
    with pytest.raises(ValidationError, match="one source per market"):
        LiquidationsConfig(market="all", symbols=["BTCUSDT", "BTCUSD_PERP"])


@pytest.mark.parametrize(
    ("market", "lists"),
    [
        ("usdm", ["https://fapi.binance.com/fapi/v1/exchangeInfo"]),
        ("coinm", ["https://dapi.binance.com/dapi/v1/exchangeInfo"]),
        (
            "all",
            [
                "https://fapi.binance.com/fapi/v1/exchangeInfo",
                "https://dapi.binance.com/dapi/v1/exchangeInfo",
            ],
        ),
    ],
)
def test_each_kept_product_reads_its_instrument_list_on_the_shared_budget(market, lists):
    source = BinanceLiquidationsSource("test", LiquidationsConfig(market=market))

    declared = source.reference_data()

    assert [r.url for r in declared] == lists
    assert {r.budget for r in declared} == {("binance-futures", 2400.0)}


def test_routes_choose_and_order_the_endpoints():
    config = LiquidationsConfig(ws_url="ws://127.0.0.1:9", routes=["legacy"])

    assert BinanceLiquidationsSource("test", config).urls() == [
        "ws://127.0.0.1:9/ws/!forceOrder@arr"
    ]


def test_a_route_listed_twice_is_refused():
    with pytest.raises(ValidationError, match="twice"):
        LiquidationsConfig(routes=["market", "market"])


@pytest.mark.parametrize(
    ("config", "silence"),
    [
        ({}, 300.0),
        ({"market": "all"}, 300.0),
        ({"market": "coinm"}, 3600.0),
        ({"symbols": ["BTCUSDT"]}, None),
    ],
)
def test_all_market_streams_are_judged_silent_and_named_symbols_are_not(config, silence):
    assert LiquidationsConfig(**config).silence_limit() == silence


def test_named_symbols_are_judged_when_the_pipeline_says_so():
    config = LiquidationsConfig(symbols=["BTCUSDT"], silence_timeout="1h")

    assert config.silence_limit() == 3600


def test_connections_roll_over_before_binance_cuts_them_at_24_hours():
    assert 23 * 3600 <= BinanceLiquidationsSource.max_age < 24 * 3600


def test_repository_pipeline_section_is_valid():
    pipeline = tomllib.loads((REPO / "lakeflow.toml").read_text(encoding="utf-8"))
    section = dict(pipeline["sources"]["liquidations"])

    assert section.pop("type") == BinanceLiquidationsSource.type
    assert LiquidationsConfig(**section).stream_url() == (
        "wss://fstream.binance.com/market/ws/!forceOrder@arr"
    )
