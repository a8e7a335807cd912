"""The ``mark_price`` record schema: one row per symbol per mark-price update."""

from __future__ import annotations

import polars as pl

from lakeflow import DECIMAL, TIMESTAMP, TableSchema

MARK_PRICE = TableSchema(
    name="mark_price",
    table="mark_prices",
    columns={
        "exchange": pl.String(),
        "market": pl.String(),
        "symbol": pl.String(),
        "mark_price": DECIMAL,
        "index_price": DECIMAL,
        "estimated_settle_price": DECIMAL,
        "funding_rate": DECIMAL,
        "next_funding_time": TIMESTAMP,
        "event_time": TIMESTAMP,
        "received_at": TIMESTAMP,
        "date": pl.Date(),
    },
    partition_by=("date",),
    description=(
        "Futures mark, index and estimated settle prices with the funding rate, one row per "
        "symbol per update (Binance: every 1 s or 3 s). Delivery contracts have no funding."
    ),
)
