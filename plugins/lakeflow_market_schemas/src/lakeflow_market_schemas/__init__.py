"""lakeflow plugin: the record schemas exchange plugins share, owned by no exchange.

Registers ``liquidation`` (table ``liquidations``). An exchange plugin depends on this
distribution, writes its rows in this schema and registers it too (registering the same
schema twice is allowed), so that it runs even when ``LAKEFLOW_PLUGINS`` names it alone.
A reader sums the rows of every exchange alike with :func:`liquidation_notional`.

This entry-point module stays light: every ``lakeflow`` command imports it, so polars
is imported when a hook is called or a name below is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lakeflow

if TYPE_CHECKING:
    from lakeflow import TableSchema
    from lakeflow_market_schemas.liquidation import (
        BINANCE_USDM_QUOTE,
        LIQUIDATION,
        LONG,
        SHORT,
        decimal_product,
        decimal_quotient,
        position_from_order_side,
        position_from_position_side,
    )
    from lakeflow_market_schemas.reading import (
        MixedCurrencies,
        ReadingError,
        liquidation_notional,
        notional_currencies,
    )

_EXPORTS = {
    "BINANCE_USDM_QUOTE": "liquidation",
    "LIQUIDATION": "liquidation",
    "LONG": "liquidation",
    "SHORT": "liquidation",
    "decimal_product": "liquidation",
    "decimal_quotient": "liquidation",
    "position_from_order_side": "liquidation",
    "position_from_position_side": "liquidation",
    "MixedCurrencies": "reading",
    "ReadingError": "reading",
    "liquidation_notional": "reading",
    "notional_currencies": "reading",
}

__all__ = [
    "BINANCE_USDM_QUOTE",
    "LIQUIDATION",
    "LONG",
    "SHORT",
    "MixedCurrencies",
    "ReadingError",
    "decimal_product",
    "decimal_quotient",
    "liquidation_notional",
    "notional_currencies",
    "position_from_order_side",
    "position_from_position_side",
    "register_schemas",
]


@lakeflow.hookimpl
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    """Register the shared schemas: ``liquidation``."""
    from lakeflow_market_schemas.liquidation import LIQUIDATION

    register(LIQUIDATION)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
