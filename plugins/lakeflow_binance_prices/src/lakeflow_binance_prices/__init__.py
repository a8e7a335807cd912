"""lakeflow plugin: Binance 24 h ticker statistics (spot, USD-M and COIN-M futures) over REST.

Registers the ``ticker_24h`` record schema (default table ``prices``) and the polling
source type ``binance_prices``. See this distribution's README for the config keys.
"""

from __future__ import annotations

from collections.abc import Callable

import lakeflow
from lakeflow_binance_prices.config import MARKETS, BinancePricesConfig, Market
from lakeflow_binance_prices.decode import MARKET_FIELDS, TICKER_24H, decode_tickers
from lakeflow_binance_prices.source import BinancePricesSource, BinanceRequestError

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
    register(TICKER_24H)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``binance_prices`` polling source."""
    register(BinancePricesSource)
