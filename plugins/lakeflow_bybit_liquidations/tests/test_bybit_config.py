"""The source's config: what it accepts, what it refuses and how, and the URLs it implies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lakeflow_bybit_liquidations import BybitLiquidationsConfig, BybitLiquidationsSource
from pydantic import ValidationError

from lakeflow.testing import write_pipeline

LAKEFLOW = Path(sys.executable).parent / "lakeflow"


def lakeflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAKEFLOW), *args], capture_output=True, text=True, timeout=60, check=False
    )


def source(**config: object) -> BybitLiquidationsSource:
    return BybitLiquidationsSource("test", BybitLiquidationsConfig(**config))  # type: ignore[arg-type]


def test_list_sources_shows_the_type_from_its_distribution_and_what_bybit_pushes():
    done = lakeflow("list-sources", "--json")

    assert done.returncode == 0, done.stderr
    by_type = {row["type"]: row for row in json.loads(done.stdout)["sources"]}
    bybit = by_type["bybit_liquidations"]
    assert bybit["kind"] == "streaming"
    assert "all liquidations, batched every 500 ms" in bybit["description"]
    keys = {key["key"] for key in bybit["config"]}
    assert {"category", "symbols", "ws_url", "rest_url", "refresh_interval"} <= keys


def test_unknown_key_is_refused_by_validate_naming_the_key(tmp_path):
    path = write_pipeline(tmp_path, "bybit_liquidations", {"symbol": ["BTCUSDT"]})

    done = lakeflow("validate", str(path))

    assert done.returncode == 2
    assert "sources.source.symbol: unknown key; did you mean 'symbols'?" in done.stderr


def test_valid_pipeline_passes_validate_and_shows_the_stream(tmp_path):
    path = write_pipeline(tmp_path, "bybit_liquidations", {"category": "inverse"})

    done = lakeflow("validate", str(path))

    assert done.returncode == 0, done.stderr
    assert "bybit_liquidations (streaming) -> table liquidations [liquidation]" in done.stdout
    assert "url: wss://stream.bybit.com/v5/public/inverse" in done.stdout


@pytest.mark.parametrize(
    ("config", "url"),
    [
        ({}, "wss://stream.bybit.com/v5/public/linear"),
        ({"category": "inverse"}, "wss://stream.bybit.com/v5/public/inverse"),
        (
            {"ws_url": "wss://stream-testnet.bybit.com/"},
            "wss://stream-testnet.bybit.com/v5/public/linear",
        ),
        ({"ws_url": "ws://127.0.0.1:9/bybit"}, "ws://127.0.0.1:9/bybit/v5/public/linear"),
    ],
)
def test_the_stream_is_the_categorys_public_v5_path(config, url):
    assert source(**config).url() == url


@pytest.mark.parametrize(
    ("config", "url"),
    [
        ({}, "https://api.bybit.com/v5/market/instruments-info"),
        ({"rest_url": "http://127.0.0.1:9/"}, "http://127.0.0.1:9/v5/market/instruments-info"),
    ],
)
def test_the_instrument_list_is_read_from_rest_url(config, url):
    assert BybitLiquidationsConfig(**config).instruments_url() == url


def test_bad_category_is_refused_with_the_choices():
    with pytest.raises(ValidationError, match="'linear' or 'inverse'"):
        BybitLiquidationsConfig(category="spot")


@pytest.mark.parametrize("symbol", ["btcusdt", "BTC/USDT", "allLiquidation.BTCUSDT", ""])
def test_a_symbol_not_written_as_bybit_does_is_refused_naming_it(symbol):
    with pytest.raises(ValidationError, match=r"symbols\n.*not Bybit symbols: "):
        BybitLiquidationsConfig(symbols=["ETHUSDT", symbol])


def test_futures_symbols_with_a_dash_are_accepted_and_repeats_dropped():
    config = BybitLiquidationsConfig(symbols=["BTC-26DEC25", "ETHUSDT", "BTC-26DEC25"])

    assert config.symbols == ["BTC-26DEC25", "ETHUSDT"]


@pytest.mark.parametrize(
    "url",
    ["https://stream.bybit.com", "stream.bybit.com", "wss://x.test/?a=1", "ws://"],
)
def test_ws_url_must_be_a_websocket_base_url(url):
    with pytest.raises(ValidationError, match="ws_url"):
        BybitLiquidationsConfig(ws_url=url)


@pytest.mark.parametrize(
    "url", ["wss://stream.bybit.com/v5/public/linear", "wss://stream.bybit.com/v5/public"]
)
def test_ws_url_ending_in_the_stream_path_is_refused(url):
    with pytest.raises(ValidationError, match="give the scheme and host only"):
        BybitLiquidationsConfig(ws_url=url)


@pytest.mark.parametrize(
    "url",
    ["wss://api.bybit.com", "api.bybit.com", "https://api.bybit.com/v5/market/instruments-info"],
)
def test_rest_url_must_be_an_http_base_url(url):
    with pytest.raises(ValidationError, match="rest_url"):
        BybitLiquidationsConfig(rest_url=url)


@pytest.mark.parametrize("seconds", [0, -5])
def test_refresh_interval_must_be_positive(seconds):
    with pytest.raises(ValidationError, match="refresh_interval"):
        BybitLiquidationsConfig(refresh_interval=seconds)


def test_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        BybitLiquidationsConfig(url="wss://example.com")


def test_every_key_is_described():
    fields = BybitLiquidationsConfig.model_fields

    assert [name for name, field in fields.items() if not field.description] == []


@pytest.mark.parametrize(
    ("config", "silence"),
    [
        ({}, 300.0),
        ({"category": "inverse"}, 3600.0),
        ({"symbols": ["BTCUSDT"]}, None),
        ({"category": "inverse", "symbols": ["BTCUSD"]}, None),
    ],
)
def test_every_symbol_streams_are_judged_silent_and_named_symbols_are_not(config, silence):
    assert BybitLiquidationsConfig(**config).silence_limit() == silence


def test_the_keepalive_is_bybits_ping_every_20_seconds():
    assert BybitLiquidationsSource.keepalive_interval == 20.0
    assert json.loads(source().keepalive()) == {"op": "ping"}


def test_no_roll_over_is_scheduled():
    # Bybit documents no scheduled cut of public connections.
    assert BybitLiquidationsSource.max_age is None


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"shards": 2, "shard": 2}, "shard must be below shards"),
        ({"shards": 2, "symbols": ["BTCUSDT"]}, "shards splits every-symbol mode"),
    ],
)
def test_a_shard_outside_its_shards_or_beside_named_symbols_is_refused(keys, says):
    with pytest.raises(ValidationError, match=says):
        BybitLiquidationsConfig(**keys)
