"""lakeflow plugin: the record schemas exchange plugins share, owned by no exchange.

Registers ``liquidation`` (table ``liquidations``). An exchange plugin depends on this
distribution, writes its rows in this schema and registers it too (registering the same
schema twice is allowed), so that it runs even when ``LAKEFLOW_PLUGINS`` names it alone.
A reader sums the rows of every exchange alike with :func:`liquidation_notional`; an
exchange plugin whose earlier versions wrote rows without the meaning columns says how
they read with a :class:`LegacyReading`.

This entry-point module stays light: every ``lakeflow`` command imports it, so polars
is imported when a hook is called or a name below is first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lakeflow

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow_market_schemas.liquidation import LIQUIDATION as LIQUIDATION
    from lakeflow_market_schemas.liquidation import LONG as LONG
    from lakeflow_market_schemas.liquidation import SHORT as SHORT
    from lakeflow_market_schemas.liquidation import decimal_product as decimal_product
    from lakeflow_market_schemas.liquidation import decimal_quotient as decimal_quotient
    from lakeflow_market_schemas.liquidation import (
        position_from_order_side as position_from_order_side,
    )
    from lakeflow_market_schemas.liquidation import (
        position_from_position_side as position_from_position_side,
    )
    from lakeflow_market_schemas.reading import LegacyReading as LegacyReading
    from lakeflow_market_schemas.reading import MixedCurrencies as MixedCurrencies
    from lakeflow_market_schemas.reading import ReadingError as ReadingError
    from lakeflow_market_schemas.reading import legacy_readings as legacy_readings
    from lakeflow_market_schemas.reading import liquidation_notional as liquidation_notional
    from lakeflow_market_schemas.reading import notional_currencies as notional_currencies

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "LIQUIDATION": "lakeflow_market_schemas.liquidation",
    "LONG": "lakeflow_market_schemas.liquidation",
    "SHORT": "lakeflow_market_schemas.liquidation",
    "decimal_product": "lakeflow_market_schemas.liquidation",
    "decimal_quotient": "lakeflow_market_schemas.liquidation",
    "position_from_order_side": "lakeflow_market_schemas.liquidation",
    "position_from_position_side": "lakeflow_market_schemas.liquidation",
    "LegacyReading": "lakeflow_market_schemas.reading",
    "MixedCurrencies": "lakeflow_market_schemas.reading",
    "ReadingError": "lakeflow_market_schemas.reading",
    "legacy_readings": "lakeflow_market_schemas.reading",
    "liquidation_notional": "lakeflow_market_schemas.reading",
    "notional_currencies": "lakeflow_market_schemas.reading",
}

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(__name__, _EXPORTS, "register_schemas")


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    """Register the shared schemas: ``liquidation``."""
    from lakeflow_market_schemas.liquidation import LIQUIDATION

    register(LIQUIDATION)
