"""lakeflow plugin: Binance futures liquidations (``forceOrder`` streams) into Delta tables.

Registers the source type ``binance_liquidations`` and the record schema
``liquidation`` (table ``liquidations``).
"""

from __future__ import annotations

from collections.abc import Callable

import lakeflow
from lakeflow import Source, TableSchema
from lakeflow_binance_liquidations.config import HOSTS, MAX_STREAMS, ROUTES, LiquidationsConfig
from lakeflow_binance_liquidations.schema import LIQUIDATION
from lakeflow_binance_liquidations.source import BinanceLiquidationsSource, event_fields

__all__ = [
    "HOSTS",
    "LIQUIDATION",
    "MAX_STREAMS",
    "ROUTES",
    "BinanceLiquidationsSource",
    "LiquidationsConfig",
    "event_fields",
    "register_schemas",
    "register_sources",
]


@lakeflow.hookimpl
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    """Register the ``liquidation`` schema."""
    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register the ``binance_liquidations`` source type."""
    register(BinanceLiquidationsSource)
