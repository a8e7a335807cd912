"""lakeflow example plugin: Binance USD-M futures mark prices and funding rates.

Registers the record schema ``mark_price`` (table ``mark_prices``) and the streaming
source type ``binance_markprice``. ``docs/plugins.md`` walks through it.

Every ``lakeflow`` command (``--help`` too) imports this module, so the schema and the
source (and polars with them) are imported inside the hooks, or when a name below is
first used, not at its top.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lakeflow

if TYPE_CHECKING:
    from lakeflow_binance_markprice.schema import MARK_PRICE
    from lakeflow_binance_markprice.source import (
        BinanceMarkPriceSource,
        MarkPriceConfig,
        decode_frames,
    )

_EXPORTS = {
    "MARK_PRICE": "schema",
    "BinanceMarkPriceSource": "source",
    "MarkPriceConfig": "source",
    "decode_frames": "source",
}

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
    from lakeflow_binance_markprice.schema import MARK_PRICE

    register(MARK_PRICE)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``binance_markprice`` source type."""
    from lakeflow_binance_markprice.source import BinanceMarkPriceSource

    register(BinanceMarkPriceSource)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
