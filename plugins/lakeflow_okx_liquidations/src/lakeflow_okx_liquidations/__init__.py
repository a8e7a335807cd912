"""lakeflow plugin: OKX SWAP and FUTURES liquidations (``liquidation-orders``) into Delta tables.

Registers the source type ``okx_liquidations`` and the shared record schema
``liquidation`` (table ``liquidations``) of ``lakeflow-market-schemas``.

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
    from lakeflow_okx_liquidations.config import (
        CHANNEL,
        INST_TYPES,
        OkxLiquidationsConfig,
    )
    from lakeflow_okx_liquidations.instruments import (
        NO_INSTRUMENTS,
        fetch_instruments,
        instrument_table,
        sized,
    )
    from lakeflow_okx_liquidations.schema import LIQUIDATION
    from lakeflow_okx_liquidations.source import OkxLiquidationsSource

_EXPORTS = {
    "CHANNEL": "config",
    "INST_TYPES": "config",
    "OkxLiquidationsConfig": "config",
    "NO_INSTRUMENTS": "instruments",
    "fetch_instruments": "instruments",
    "instrument_table": "instruments",
    "sized": "instruments",
    "LIQUIDATION": "schema",
    "OkxLiquidationsSource": "source",
}

__all__ = [
    "CHANNEL",
    "INST_TYPES",
    "LIQUIDATION",
    "NO_INSTRUMENTS",
    "OkxLiquidationsConfig",
    "OkxLiquidationsSource",
    "fetch_instruments",
    "instrument_table",
    "register_schemas",
    "register_sources",
    "sized",
]


@lakeflow.hookimpl
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    """Register the shared ``liquidation`` schema (registering it twice is allowed)."""
    from lakeflow_okx_liquidations.schema import LIQUIDATION

    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register the ``okx_liquidations`` source type."""
    from lakeflow_okx_liquidations.source import OkxLiquidationsSource

    register(OkxLiquidationsSource)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
