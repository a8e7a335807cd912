"""The ``liquidation`` record schema: one row per forced liquidation, on any exchange.

Every exchange plugin that collects liquidations writes these rows into the same
``liquidations`` table, told apart by ``exchange``. The columns split in two:

- what the exchange sent, kept as sent (``side``, ``quantity``, ``price`` ...), so that
  nothing is lost to normalization and a mapping can be re-derived;
- what a row means, the same on every exchange: ``position_side`` (the liquidated
  position, ``long`` or ``short``), ``base_quantity`` (its size in the base asset),
  ``notional`` (its size in money) and ``notional_currency`` (that money: ``USDT``,
  ``USDC``, ``USD``). Null where the exchange's instrument list was not at hand (never
  a guess).

The README of this distribution has the table of each exchange's mapping, with the
facts it rests on.
"""

from __future__ import annotations

import polars as pl

from lakeflow import DECIMAL, TIMESTAMP, TableSchema

#: ``position_side`` values.
LONG, SHORT = "long", "short"
_ORDER_SIDES = {s: LONG for s in ("SELL", "Sell", "sell")} | {
    s: SHORT for s in ("BUY", "Buy", "buy")
}
_POSITION_SIDES = {s: LONG for s in ("BUY", "Buy", "buy")} | {
    s: SHORT for s in ("SELL", "Sell", "sell")
}

LIQUIDATION = TableSchema(
    name="liquidation",
    table="liquidations",
    columns={
        "exchange": pl.String(),
        "market": pl.String(),
        "symbol": pl.String(),
        "pair": pl.String(),
        "side": pl.String(),
        "position_side": pl.String(),
        "order_type": pl.String(),
        "time_in_force": pl.String(),
        "quantity": DECIMAL,
        "base_quantity": DECIMAL,
        "price": DECIMAL,
        "average_price": DECIMAL,
        "notional": DECIMAL,
        "notional_currency": pl.String(),
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
        "Forced liquidations of futures positions, one row per event received, from "
        "every exchange into one table (column exchange). position_side is the "
        "liquidated position (long/short), notional its size in notional_currency. "
        "Exchanges push a sample, not every liquidation: Binance and OKX at most one "
        "per symbol per second; Bybit batches every 500 ms."
    ),
)


#: How large a product or quotient may be estimated before it no longer fits ``DECIMAL``
#: (38 digits, 18 after the point: 20 before it). polars raises on a decimal overflow,
#: and a raising decoder sends the whole batch, good frames too, to the dead letters.
_FITS = 1e19


def decimal_product(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """``a * b`` as an exact ``DECIMAL``, or null where it would not fit one (never raises)."""
    estimate = a.cast(pl.Float64) * b.cast(pl.Float64)
    return (pl.when(estimate.abs() < _FITS).then(a) * b).cast(DECIMAL)


def decimal_quotient(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """``a / b`` rounded to 18 decimals; null where ``b`` is not positive or it would not fit."""
    estimate = a.cast(pl.Float64) / b.cast(pl.Float64)
    fits = (b > 0) & (estimate.abs() < _FITS)
    return (pl.when(fits).then(a) / pl.when(fits).then(b)).cast(DECIMAL)


def position_from_order_side(order_side: pl.Expr) -> pl.Expr:
    """``position_side`` from the side of the liquidation *order* (Binance's ``S``, OKX's ``side``).

    A liquidation sells to close a long and buys to close a short. ``SELL``, ``Sell`` or
    ``sell``; anything else is null. One hash lookup per row, not a string conversion.
    """
    return order_side.replace_strict(_ORDER_SIDES, default=None, return_dtype=pl.String())


def position_from_position_side(position_side: pl.Expr) -> pl.Expr:
    """``position_side`` from the side of the liquidated *position* (Bybit's ``S``).

    ``Buy`` is a long position, ``Sell`` a short one: the opposite of an order side.
    """
    return position_side.replace_strict(_POSITION_SIDES, default=None, return_dtype=pl.String())
