"""lakeflow example plugin: Binance USD-M futures mark prices and funding rates.

Registers the record schema ``mark_price`` (table ``mark_prices``) and the streaming
source type ``binance_markprice``. ``docs/plugins.md`` walks through it.

Every ``lakeflow`` command (``--help`` too) imports this module, so the schema and the
source (and polars with them) are imported inside the hooks, or when a name below is
first used, not at its top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lakeflow

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow_binance_markprice.schema import MARK_PRICE as MARK_PRICE
    from lakeflow_binance_markprice.source import BinanceMarkPriceSource as BinanceMarkPriceSource
    from lakeflow_binance_markprice.source import MarkPriceConfig as MarkPriceConfig
    from lakeflow_binance_markprice.source import decode_frames as decode_frames

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "MARK_PRICE": "lakeflow_binance_markprice.schema",
    "BinanceMarkPriceSource": "lakeflow_binance_markprice.source",
    "MarkPriceConfig": "lakeflow_binance_markprice.source",
    "decode_frames": "lakeflow_binance_markprice.source",
}

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(
    __name__, _EXPORTS, "register_schemas", "register_sources"
)


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
