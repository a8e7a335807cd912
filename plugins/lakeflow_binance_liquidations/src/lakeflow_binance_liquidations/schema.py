"""The ``liquidation`` record schema: one row per forced-liquidation order event."""

from __future__ import annotations

import polars as pl

from lakeflow import DECIMAL, TIMESTAMP, TableSchema

LIQUIDATION = TableSchema(
    name="liquidation",
    table="liquidations",
    columns={
        "exchange": pl.String(),
        "market": pl.String(),
        "symbol": pl.String(),
        "pair": pl.String(),
        "side": pl.String(),
        "order_type": pl.String(),
        "time_in_force": pl.String(),
        "quantity": DECIMAL,
        "price": DECIMAL,
        "average_price": DECIMAL,
        "status": pl.String(),
        "last_filled_quantity": DECIMAL,
        "filled_quantity": DECIMAL,
        "trade_time": TIMESTAMP,
        "event_time": TIMESTAMP,
        "received_at": TIMESTAMP,
        "date": pl.Date(),
    },
    partition_by=("date",),
    description=(
        "Forced liquidation orders of futures positions, one row per event received. "
        "Exchanges may push only a sample (Binance: the latest per symbol per second)."
    ),
)
