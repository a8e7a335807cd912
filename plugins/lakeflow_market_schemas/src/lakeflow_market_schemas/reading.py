"""Reading ``liquidation`` rows: long and short notional per time bucket, in one currency.

:func:`liquidation_notional` is what a chart or a notebook sums, the same way for every
exchange: the liquidated position (``position_side``) and its size in money
(``notional``, in ``notional_currency``). It never converts one currency into another
(``USDT``, ``USDC`` and ``USD`` are different money) and never guesses a notional: rows
without one are left out and counted.

Rows written before ``position_side``, ``base_quantity``, ``notional`` and
``notional_currency`` existed read null there (schema evolution). For Binance USD-M those
columns follow from what such a row always held, by the mapping the Binance plugin now
applies when it writes a row (this distribution's README): the position from the order's
``side`` (``SELL`` closes a long), the notional ``filled_quantity x average_price`` (what
was executed), in the quote
asset the symbol ends in. :func:`liquidation_notional` fills them in so (``legacy_binance``,
on by default). Old Binance COIN-M rows cannot be: their notional needs the contract size
of the exchange's instrument list, which the row does not hold; they stay unpriced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import polars as pl

import lakeflow
from lakeflow import DECIMAL
from lakeflow_market_schemas.liquidation import (
    BINANCE_USDM_QUOTE,
    LONG,
    SHORT,
    decimal_product,
    position_from_order_side,
)

#: The columns :func:`liquidation_notional` reads besides ``trade_time``. A column the
#: rows lack reads null, as it does in a table written before the column existed.
READ_COLUMNS: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "market": pl.String(),
    "symbol": pl.String(),
    "side": pl.String(),
    "position_side": pl.String(),
    "filled_quantity": DECIMAL,
    "average_price": DECIMAL,
    "notional": DECIMAL,
    "notional_currency": pl.String(),
}

#: The columns of the frame :func:`liquidation_notional` returns, after the keys.
VALUE_COLUMNS = (
    "currency",
    "long_notional",
    "short_notional",
    "long_count",
    "short_count",
    "unpriced_count",
    "other_currency_count",
)

_COUNTS = ("long_count", "short_count", "unpriced_count", "other_currency_count")


class ReadingError(lakeflow.LakeflowError, ValueError):
    """Rows or arguments that :func:`liquidation_notional` cannot sum as asked."""


class MixedCurrencies(ReadingError):
    """The rows' notionals are in several currencies and none was chosen.

    ``currencies`` maps each currency to its number of rows, the most frequent first.
    """

    def __init__(self, currencies: dict[str, int]) -> None:
        self.currencies = currencies
        found = ", ".join(f"{c} ({n:,} row{'' if n == 1 else 's'})" for c, n in currencies.items())
        first = next(iter(currencies))
        super().__init__(
            f"the rows' notionals are in {len(currencies)} currencies: {found}; they are "
            f"different money and are not converted into one another: choose one with "
            f'currency="{first}", or filter the rows to one currency'
        )


def liquidation_notional(
    rows: pl.LazyFrame | pl.DataFrame,
    *,
    every: str = "1h",
    by_exchange: bool = True,
    currency: str | None = None,
    by: Sequence[str] = (),
    legacy_binance: bool = True,
) -> pl.DataFrame:
    """Long and short notional per time bucket (and per exchange), in one currency.

    ``rows`` are ``liquidation`` rows (a table scan, filtered or not: a LazyFrame is read
    once). They are grouped by ``bucket``, their ``trade_time`` truncated to ``every``
    (a polars duration: ``5m``, ``1h``, ``1d``), by ``exchange`` unless ``by_exchange`` is
    false (then summed over exchanges), and by the columns ``by`` names (``["symbol"]``).

    The notional is counted in one currency: the rows' own if they all share one;
    ``currency`` (``"USDT"``, any case) otherwise. Rows in several currencies with no
    ``currency`` raise :class:`MixedCurrencies`, naming them: ``USDT``, ``USDC`` and
    ``USD`` are not converted into one another. Rows are never guessed at: one without
    a ``notional``, ``notional_currency`` or ``position_side`` (an instrument missing
    from the exchange's list, an old COIN-M row) is left out and counted in
    ``unpriced_count``; one in another currency than ``currency`` in
    ``other_currency_count``. ``legacy_binance`` fills in old Binance USD-M rows (see the
    module's docstring); false leaves them unpriced.

    Returns one row per group that has rows (an empty bucket has none), sorted by the
    keys: ``bucket``, ``exchange`` (if ``by_exchange``), the ``by`` columns, then
    ``currency`` (the one counted; null if no row has a notional), ``long_notional`` and
    ``short_notional`` (exact decimals, 0 where none), ``long_count``, ``short_count``
    (the rows they sum), ``unpriced_count`` and ``other_currency_count`` (the rows left
    out).
    """
    by = [by] if isinstance(by, str) else list(by)
    keys = _keys(by_exchange, by)
    per = (
        _priced(rows, legacy_binance, by)
        .with_columns(bucket=pl.col("trade_time").dt.truncate(_duration(every)))
        .group_by(*keys, "_currency")
        .agg(
            long_notional=pl.col("_notional").filter(pl.col("_position") == LONG).sum(),
            short_notional=pl.col("_notional").filter(pl.col("_position") == SHORT).sum(),
            long_count=(pl.col("_position") == LONG).fill_null(False).sum(),
            short_count=(pl.col("_position") == SHORT).fill_null(False).sum(),
            unpriced_count=pl.col("_currency").is_null().sum(),
        )
        .collect()
    )
    # The rest is on the aggregate: a few rows per bucket, whatever the table's size.
    chosen = _choose(per, currency)
    counted = pl.lit(False) if chosen is None else (pl.col("_currency") == chosen).fill_null(False)
    other = pl.col("_currency").is_not_null() & ~counted
    return (
        per.group_by(keys)
        .agg(
            pl.col("long_notional", "short_notional").filter(counted).sum().cast(DECIMAL),
            pl.col("long_count", "short_count").filter(counted).sum(),
            pl.col("unpriced_count").sum(),
            other_currency_count=(pl.col("long_count") + pl.col("short_count")).filter(other).sum(),
        )
        .with_columns(pl.col(_COUNTS).cast(pl.UInt32), currency=pl.lit(chosen, pl.String()))
        .select(*keys, *VALUE_COLUMNS)
        .sort(keys, nulls_last=True)
    )


def notional_currencies(
    rows: pl.LazyFrame | pl.DataFrame, *, legacy_binance: bool = True
) -> dict[str, int]:
    """The currencies of the rows' notionals, each with its number of rows, most first.

    Only rows :func:`liquidation_notional` would count: those with a notional, its
    currency and a position side (``legacy_binance`` as there).
    """
    counts = (
        _priced(rows, legacy_binance, [])
        .filter(pl.col("_currency").is_not_null())
        .group_by("_currency")
        .len()
        .sort(["len", "_currency"], descending=[True, False])
        .collect()
    )
    return dict(zip(counts["_currency"], counts["len"], strict=True))


def _keys(by_exchange: bool, by: list[str]) -> list[str]:
    keys = ["bucket", *(["exchange"] if by_exchange else [])]
    for column in by:
        if column in VALUE_COLUMNS or column in ("bucket", "trade_time"):
            raise ReadingError(f"by={list(by)!r}: {column!r} is a column of the result")
        if column not in keys:
            keys.append(column)
    return keys


def _duration(every: str) -> str:
    """``every``, checked to be a polars duration before any row is read."""
    try:
        if not every.strip():
            raise ValueError(every)
        pl.select(pl.lit(datetime(2000, 1, 1, tzinfo=UTC)).dt.truncate(every))
    except (pl.exceptions.PolarsError, ValueError):
        raise ReadingError(
            f"every={every!r} is not a polars duration (such as 5m, 1h, 1d)"
        ) from None
    return every


def _priced(rows: pl.LazyFrame | pl.DataFrame, legacy_binance: bool, by: list[str]) -> pl.LazyFrame:
    """The rows with ``_position``, and ``_notional`` and ``_currency`` where they count.

    ``_currency`` is null for a row that cannot be counted in money (no notional, no
    currency or no position side), and ``_notional`` then too.
    """
    lazy = rows.lazy()
    present = lazy.collect_schema()
    wanted = ["trade_time", *by]
    missing = [column for column in wanted if column not in present]
    if missing:
        raise ReadingError(
            f"the rows lack {', '.join(missing)}: they are not liquidation rows "
            "(or a select left it out)"
        )
    lazy = lazy.with_columns(
        pl.lit(None, dtype).alias(column)
        for column, dtype in READ_COLUMNS.items()
        if column not in present
    )
    position = pl.col("position_side")
    notional = pl.col("notional")
    currency = pl.col("notional_currency")
    if legacy_binance:
        binance = pl.col("exchange") == "binance"
        # Written before the four columns existed: all of them read null.
        old = binance & position.is_null() & notional.is_null() & currency.is_null()
        old_usdm = old & (pl.col("market") == "usdm")
        position = pl.when(old).then(position_from_order_side(pl.col("side"))).otherwise(position)
        notional = (
            pl.when(old_usdm)
            .then(decimal_product(pl.col("filled_quantity"), pl.col("average_price")))
            .otherwise(notional)
        )
        currency = (
            pl.when(old_usdm)
            .then(pl.col("symbol").str.extract(BINANCE_USDM_QUOTE, 1))
            .otherwise(currency)
        )
    priced = (
        notional.is_not_null() & currency.is_not_null() & position.is_in([LONG, SHORT])
    ).fill_null(False)
    return lazy.with_columns(
        _position=pl.when(priced).then(position),
        _notional=pl.when(priced).then(notional.cast(DECIMAL)),
        _currency=pl.when(priced).then(currency.str.to_uppercase()),
    )


def _choose(per: pl.DataFrame, currency: str | None) -> str | None:
    """The currency to count: ``currency`` if given, else the rows' only one."""
    if currency is not None:
        if not currency.strip():
            raise ReadingError("currency='': name a currency, such as currency=\"USDT\"")
        return currency.strip().upper()
    counts = (
        per.filter(pl.col("_currency").is_not_null())
        .group_by("_currency")
        .agg(n=(pl.col("long_count") + pl.col("short_count")).sum())
        .sort(["n", "_currency"], descending=[True, False])
    )
    if counts.height > 1:
        raise MixedCurrencies(dict(zip(counts["_currency"], counts["n"], strict=True)))
    return counts["_currency"][0] if counts.height else None
