"""lakeflow plugin: Binance futures liquidations (``forceOrder`` streams) into Delta tables.

Registers the source type ``binance_liquidations`` and the record schema
``liquidation`` (table ``liquidations``).

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
    from lakeflow import Source, TableSchema
    from lakeflow_binance_liquidations.config import (
        HOSTS,
        MAX_STREAMS,
        ROUTES,
        LiquidationsConfig,
    )
    from lakeflow_binance_liquidations.schema import LIQUIDATION
    from lakeflow_binance_liquidations.source import BinanceLiquidationsSource, event_fields

_EXPORTS = {
    "HOSTS": "config",
    "MAX_STREAMS": "config",
    "ROUTES": "config",
    "LiquidationsConfig": "config",
    "LIQUIDATION": "schema",
    "BinanceLiquidationsSource": "source",
    "event_fields": "source",
}

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
    from lakeflow_binance_liquidations.schema import LIQUIDATION

    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register the ``binance_liquidations`` source type."""
    from lakeflow_binance_liquidations.source import BinanceLiquidationsSource

    register(BinanceLiquidationsSource)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
