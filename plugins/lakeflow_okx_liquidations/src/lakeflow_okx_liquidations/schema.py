"""The ``liquidation`` record schema, shared by every exchange: see ``lakeflow-market-schemas``."""

from __future__ import annotations

from lakeflow_market_schemas.liquidation import LIQUIDATION

__all__ = ["LIQUIDATION"]
