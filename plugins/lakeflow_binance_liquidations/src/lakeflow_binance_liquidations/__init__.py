"""lakeflow plugin: Binance futures liquidations (``forceOrder`` streams) into Delta tables.

Registers the source type ``binance_liquidations`` and the record schema
``liquidation`` (table ``liquidations``). Exports ``LEGACY_LIQUIDATION``, how rows this
plugin wrote before the schema's meaning columns existed are read (see
:mod:`lakeflow_binance_liquidations.legacy`), for
:func:`lakeflow_market_schemas.liquidation_notional` to find.

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
    from lakeflow_binance_liquidations.config import HOSTS as HOSTS
    from lakeflow_binance_liquidations.config import MAX_STREAMS as MAX_STREAMS
    from lakeflow_binance_liquidations.config import ROUTES as ROUTES
    from lakeflow_binance_liquidations.config import LiquidationsConfig as LiquidationsConfig
    from lakeflow_binance_liquidations.legacy import LEGACY_LIQUIDATION as LEGACY_LIQUIDATION
    from lakeflow_binance_liquidations.legacy import USDM_QUOTE as USDM_QUOTE
    from lakeflow_binance_liquidations.schema import LIQUIDATION as LIQUIDATION
    from lakeflow_binance_liquidations.source import (
        BinanceLiquidationsSource as BinanceLiquidationsSource,
    )
    from lakeflow_binance_liquidations.source import event_fields as event_fields

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "HOSTS": "lakeflow_binance_liquidations.config",
    "MAX_STREAMS": "lakeflow_binance_liquidations.config",
    "ROUTES": "lakeflow_binance_liquidations.config",
    "LiquidationsConfig": "lakeflow_binance_liquidations.config",
    "LEGACY_LIQUIDATION": "lakeflow_binance_liquidations.legacy",
    "USDM_QUOTE": "lakeflow_binance_liquidations.legacy",
    "LIQUIDATION": "lakeflow_binance_liquidations.schema",
    "BinanceLiquidationsSource": "lakeflow_binance_liquidations.source",
    "event_fields": "lakeflow_binance_liquidations.source",
}

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(
    __name__, _EXPORTS, "register_schemas", "register_sources"
)


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    """Register the ``liquidation`` schema."""
    from lakeflow_binance_liquidations.schema import LIQUIDATION

    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``binance_liquidations`` source type."""
    from lakeflow_binance_liquidations.source import BinanceLiquidationsSource

    register(BinanceLiquidationsSource)
