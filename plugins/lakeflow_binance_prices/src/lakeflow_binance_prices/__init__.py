"""lakeflow plugin: Binance 24 h ticker statistics (spot, USD-M and COIN-M futures) over REST.

Registers the ``ticker_24h`` record schema (default table ``prices``) and the polling
source type ``binance_prices``. See this distribution's README for the config keys.

This entry-point module stays light: every ``lakeflow`` command, ``--help`` included,
imports it, so polars and the source are imported when a hook is called or a name below
is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lakeflow

if TYPE_CHECKING:
    from lakeflow_binance_prices.config import MARKETS, BinancePricesConfig, Market
    from lakeflow_binance_prices.decode import MARKET_FIELDS, TICKER_24H, decode_tickers
    from lakeflow_binance_prices.source import BinancePricesSource, BinanceRequestError

_EXPORTS = {
    "MARKETS": "config",
    "BinancePricesConfig": "config",
    "Market": "config",
    "MARKET_FIELDS": "decode",
    "TICKER_24H": "decode",
    "decode_tickers": "decode",
    "BinancePricesSource": "source",
    "BinanceRequestError": "source",
}

__all__ = [
    "MARKETS",
    "MARKET_FIELDS",
    "TICKER_24H",
    "BinancePricesConfig",
    "BinancePricesSource",
    "BinanceRequestError",
    "Market",
    "decode_tickers",
    "register_schemas",
    "register_sources",
]


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    """Register ``ticker_24h``: one row per symbol per poll."""
    from lakeflow_binance_prices.decode import TICKER_24H

    register(TICKER_24H)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``binance_prices`` polling source."""
    from lakeflow_binance_prices.source import BinancePricesSource

    register(BinancePricesSource)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
