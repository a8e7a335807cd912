"""lakeflow plugin: Bybit v5 futures liquidations (``allLiquidation`` topics) into Delta tables.

Registers the source type ``bybit_liquidations`` and the shared record schema
``liquidation`` of ``lakeflow-market-schemas`` (table ``liquidations``), so that it runs
even when ``LAKEFLOW_PLUGINS`` names it alone.

This entry-point module stays light: every ``lakeflow`` command, ``--help`` included,
imports it, so polars, pydantic and the source are imported when a hook is called or a
name below is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lakeflow

if TYPE_CHECKING:
    from lakeflow_market_schemas.liquidation import LIQUIDATION

    from lakeflow import Source, TableSchema
    from lakeflow_bybit_liquidations.config import (
        REST_HOST,
        SUBSCRIBE_BATCH,
        WS_HOST,
        BybitLiquidationsConfig,
    )
    from lakeflow_bybit_liquidations.instruments import fetch_instruments, instrument_frame
    from lakeflow_bybit_liquidations.source import BybitLiquidationsSource

#: Where each public name lives.
_EXPORTS = {
    "REST_HOST": "lakeflow_bybit_liquidations.config",
    "SUBSCRIBE_BATCH": "lakeflow_bybit_liquidations.config",
    "WS_HOST": "lakeflow_bybit_liquidations.config",
    "BybitLiquidationsConfig": "lakeflow_bybit_liquidations.config",
    "fetch_instruments": "lakeflow_bybit_liquidations.instruments",
    "instrument_frame": "lakeflow_bybit_liquidations.instruments",
    "BybitLiquidationsSource": "lakeflow_bybit_liquidations.source",
    "LIQUIDATION": "lakeflow_market_schemas.liquidation",
}

__all__ = [
    "LIQUIDATION",
    "REST_HOST",
    "SUBSCRIBE_BATCH",
    "WS_HOST",
    "BybitLiquidationsConfig",
    "BybitLiquidationsSource",
    "fetch_instruments",
    "instrument_frame",
    "register_schemas",
    "register_sources",
]


@lakeflow.hookimpl
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    """Register the shared ``liquidation`` schema (registering it twice is allowed)."""
    from lakeflow_market_schemas.liquidation import LIQUIDATION

    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register the ``bybit_liquidations`` source type."""
    from lakeflow_bybit_liquidations.source import BybitLiquidationsSource

    register(BybitLiquidationsSource)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
