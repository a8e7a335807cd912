"""lakeflow plugin: OKX SWAP and FUTURES liquidations (``liquidation-orders``) into Delta tables.

Registers the source type ``okx_liquidations`` and the shared record schema
``liquidation`` (table ``liquidations``) of ``lakeflow-market-schemas``.

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
    from lakeflow_okx_liquidations.config import CHANNEL as CHANNEL
    from lakeflow_okx_liquidations.config import INST_TYPES as INST_TYPES
    from lakeflow_okx_liquidations.config import OkxLiquidationsConfig as OkxLiquidationsConfig
    from lakeflow_okx_liquidations.instruments import NO_INSTRUMENTS as NO_INSTRUMENTS
    from lakeflow_okx_liquidations.instruments import fetch_instruments as fetch_instruments
    from lakeflow_okx_liquidations.instruments import instrument_table as instrument_table
    from lakeflow_okx_liquidations.instruments import sized as sized
    from lakeflow_okx_liquidations.schema import LIQUIDATION as LIQUIDATION
    from lakeflow_okx_liquidations.source import OkxLiquidationsSource as OkxLiquidationsSource

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "CHANNEL": "lakeflow_okx_liquidations.config",
    "INST_TYPES": "lakeflow_okx_liquidations.config",
    "OkxLiquidationsConfig": "lakeflow_okx_liquidations.config",
    "NO_INSTRUMENTS": "lakeflow_okx_liquidations.instruments",
    "fetch_instruments": "lakeflow_okx_liquidations.instruments",
    "instrument_table": "lakeflow_okx_liquidations.instruments",
    "sized": "lakeflow_okx_liquidations.instruments",
    "LIQUIDATION": "lakeflow_okx_liquidations.schema",
    "OkxLiquidationsSource": "lakeflow_okx_liquidations.source",
}

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(
    __name__, _EXPORTS, "register_schemas", "register_sources"
)


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    """Register the shared ``liquidation`` schema (registering it twice is allowed)."""
    from lakeflow_okx_liquidations.schema import LIQUIDATION

    register(LIQUIDATION)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    """Register the ``okx_liquidations`` source type."""
    from lakeflow_okx_liquidations.source import OkxLiquidationsSource

    register(OkxLiquidationsSource)
