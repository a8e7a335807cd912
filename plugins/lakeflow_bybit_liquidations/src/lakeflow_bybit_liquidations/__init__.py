"""lakeflow plugin: Bybit v5 futures liquidations (``allLiquidation`` topics) into Delta tables.

Registers the source type ``bybit_liquidations`` and the shared record schema
``liquidation`` of ``lakeflow-market-schemas`` (table ``liquidations``), so that it runs
even when ``LAKEFLOW_PLUGINS`` names it alone.

This entry-point module stays light: every ``lakeflow`` command, ``--help`` included,
imports it, so polars, pydantic and the source are imported when a hook is called or a
name below is first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lakeflow

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow_market_schemas.liquidation import LIQUIDATION as LIQUIDATION

    from lakeflow_bybit_liquidations.config import REST_HOST as REST_HOST
    from lakeflow_bybit_liquidations.config import SUBSCRIBE_BATCH as SUBSCRIBE_BATCH
    from lakeflow_bybit_liquidations.config import WS_HOST as WS_HOST
    from lakeflow_bybit_liquidations.config import (
        BybitLiquidationsConfig as BybitLiquidationsConfig,
    )
    from lakeflow_bybit_liquidations.instruments import fetch_instruments as fetch_instruments
    from lakeflow_bybit_liquidations.instruments import instrument_frame as instrument_frame
    from lakeflow_bybit_liquidations.source import (
        BybitLiquidationsSource as BybitLiquidationsSource,
    )

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
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

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(
    __name__, _EXPORTS, "register_schemas", "register_sources"
)


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    """Register the shared ``liquidation`` schema (registering it twice is allowed)."""
    from lakeflow_market_schemas.liquidation import LIQUIDATION

    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``bybit_liquidations`` source type."""
    from lakeflow_bybit_liquidations.source import BybitLiquidationsSource

    register(BybitLiquidationsSource)
