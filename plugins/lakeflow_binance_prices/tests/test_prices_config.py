"""The ``binance_prices`` config keys: defaults, validation, documentation."""

from __future__ import annotations

import pytest
from lakeflow_binance_prices import BinancePricesConfig, BinancePricesSource
from pydantic import ValidationError


def test_config_defaults_poll_every_spot_symbol_each_minute() -> None:
    config = BinancePricesConfig()

    assert (config.market, config.symbols, config.interval) == ("spot", [], 60.0)
    assert config.root == "https://api.binance.com"
    assert BinancePricesConfig(market="usdm").root == "https://fapi.binance.com"


@pytest.mark.parametrize("symbol", ["btcusdt", "BTC USDT", "BTC/USDT", "", "A" * 21, 'A"]'])
def test_config_rejects_a_malformed_symbol(symbol: str) -> None:
    with pytest.raises(ValidationError, match="is not a Binance symbol"):
        BinancePricesConfig(symbols=[symbol])


def test_config_says_symbols_are_upper_case() -> None:
    with pytest.raises(ValidationError, match="upper case"):
        BinancePricesConfig(symbols=["btcusdt"])


def test_config_accepts_the_characters_binance_allows() -> None:
    symbols = ["BTCUSDT", "1000PEPEUSDT", "BTCUSD_PERP", "A-B.C"]

    assert BinancePricesConfig(symbols=symbols).symbols == symbols


def test_config_rejects_a_repeated_symbol() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        BinancePricesConfig(symbols=["BTCUSDT", "BTCUSDT"])


@pytest.mark.parametrize(("key", "value"), [("market", "coin-m"), ("base_url", "api.binance.com")])
def test_config_rejects_a_bad_value(key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        BinancePricesConfig(**{key: value})


def test_config_rejects_an_unknown_key() -> None:
    with pytest.raises(ValidationError, match="extra"):
        BinancePricesConfig(symbol="BTCUSDT")  # type: ignore[call-arg]


def test_requests_go_to_the_markets_own_paths() -> None:
    spot = BinancePricesSource("prices", BinancePricesConfig())
    usdm = BinancePricesSource("prices", BinancePricesConfig(market="usdm"))
    coinm = BinancePricesSource("prices", BinancePricesConfig(market="coinm"))

    assert spot.url == "https://api.binance.com/api/v3/ticker/24hr"
    assert usdm.url == "https://fapi.binance.com/fapi/v1/ticker/24hr"
    assert coinm.url == "https://dapi.binance.com/dapi/v1/ticker/24hr"


def test_coinm_has_the_futures_weight_limit_and_takes_no_symbol_list() -> None:
    market = BinancePricesConfig(market="coinm").spec

    assert (market.weight_limit, market.takes_symbol_list) == (2400, False)


def test_base_url_drops_a_trailing_slash() -> None:
    source = BinancePricesSource("prices", BinancePricesConfig(base_url="http://127.0.0.1:8/"))

    assert source.url == "http://127.0.0.1:8/api/v3/ticker/24hr"


def test_every_config_key_is_described() -> None:
    for name, field in BinancePricesConfig.model_fields.items():
        assert field.description, name
