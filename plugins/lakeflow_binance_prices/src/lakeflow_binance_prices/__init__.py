"""lakeflow plugin: Binance 24 h ticker statistics (spot, USD-M and COIN-M futures) over REST.

Registers the ``ticker_24h`` record schema (default table ``prices``) and the polling
source type ``binance_prices``. See this distribution's README for the config keys.

This entry-point module stays light: every ``lakeflow`` command, ``--help`` included,
imports it, so polars and the source are imported when a hook is called or a name below
is first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lakeflow

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow_binance_prices.config import MARKETS as MARKETS
    from lakeflow_binance_prices.config import BinancePricesConfig as BinancePricesConfig
    from lakeflow_binance_prices.config import Market as Market
    from lakeflow_binance_prices.decode import MARKET_FIELDS as MARKET_FIELDS
    from lakeflow_binance_prices.decode import TICKER_24H as TICKER_24H
    from lakeflow_binance_prices.decode import decode_tickers as decode_tickers
    from lakeflow_binance_prices.source import BinancePricesSource as BinancePricesSource
    from lakeflow_binance_prices.source import BinanceRequestError as BinanceRequestError

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "MARKETS": "lakeflow_binance_prices.config",
    "BinancePricesConfig": "lakeflow_binance_prices.config",
    "Market": "lakeflow_binance_prices.config",
    "MARKET_FIELDS": "lakeflow_binance_prices.decode",
    "TICKER_24H": "lakeflow_binance_prices.decode",
    "decode_tickers": "lakeflow_binance_prices.decode",
    "BinancePricesSource": "lakeflow_binance_prices.source",
    "BinanceRequestError": "lakeflow_binance_prices.source",
}

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(
    __name__, _EXPORTS, "register_schemas", "register_sources"
)


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
