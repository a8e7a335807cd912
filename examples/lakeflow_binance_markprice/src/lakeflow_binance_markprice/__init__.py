"""lakeflow example plugin: Binance USD-M futures mark prices and funding rates.

Registers the record schema ``mark_price`` (table ``mark_prices``) and the streaming
source type ``binance_markprice``. ``docs/plugins.md`` walks through it.
"""

from __future__ import annotations

from collections.abc import Callable

import lakeflow
from lakeflow_binance_markprice.schema import MARK_PRICE
from lakeflow_binance_markprice.source import (
    BinanceMarkPriceSource,
    MarkPriceConfig,
    decode_frames,
)

__all__ = [
    "MARK_PRICE",
    "BinanceMarkPriceSource",
    "MarkPriceConfig",
    "decode_frames",
    "register_schemas",
    "register_sources",
]


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    """Register the ``mark_price`` schema."""
    register(MARK_PRICE)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``binance_markprice`` source type."""
    register(BinanceMarkPriceSource)
