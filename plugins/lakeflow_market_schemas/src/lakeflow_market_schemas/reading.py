"""Reading ``liquidation`` rows: long and short notional per time bucket, in one currency.

:func:`liquidation_notional` is what a chart or a notebook sums, the same way for every
exchange: the liquidated position (``position_side``) and its size in money
(``notional``, in ``notional_currency``). It never converts one currency into another
(``USDT``, ``USDC`` and ``USD`` are different money) and never guesses a notional: rows
without one are left out and counted.

Rows written before ``position_side``, ``base_quantity``, ``notional`` and
``notional_currency`` existed read null there (schema evolution). Where what such a row
always held tells what they are, the plugin of its exchange says how, with a
:class:`LegacyReading` its entry-point module exports as ``LEGACY_LIQUIDATION``;
:func:`liquidation_notional` finds the installed ones (:func:`legacy_readings`) and reads
old rows by them (``legacy``, on by default). Rows no reading fills in stay unpriced:
never guessed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

import lakeflow
from lakeflow import DECIMAL
from lakeflow_market_schemas.liquidation import LIQUIDATION, LONG, SHORT

#: The columns a row lacks read null, as in a table written before the column existed:
#: every column of the ``liquidation`` schema but ``trade_time``, which a row must have.
READ_COLUMNS: dict[str, pl.DataType] = {
    column: dtype for column, dtype in LIQUIDATION.columns.items() if column != "trade_time"
}
#: The columns a :class:`LegacyReading` fills in: what a row means, as
#: :func:`liquidation_notional` reads it. A row in which all three are null was written
#: before they existed.
LEGACY_COLUMNS = ("position_side", "notional", "notional_currency")
#: The name under which a plugin's entry-point module exports its :class:`LegacyReading`.
LEGACY_EXPORT = "LEGACY_LIQUIDATION"
#: This distribution: a plugin that exports a :class:`LegacyReading` depends on it.
DISTRIBUTION = "lakeflow-market-schemas"

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


@dataclass(frozen=True, eq=False)
class LegacyReading:
    """How one exchange's rows written before :data:`LEGACY_COLUMNS` existed are read.

    An exchange plugin whose earlier versions wrote ``liquidation`` rows without them
    exports one from its entry-point module (the module its ``lakeflow`` entry point
    names) as ``LEGACY_LIQUIDATION``; :func:`liquidation_notional` finds it there.
    ``exchange`` is the rows' ``exchange``; ``columns`` maps some of
    :data:`LEGACY_COLUMNS` to polars expressions over the row's other columns (null where
    the row does not tell: never a guess). They apply only to that exchange's rows in
    which all three are null: a row that has any of them is read as it is.
    """

    exchange: str
    columns: Mapping[str, pl.Expr]

    def __post_init__(self) -> None:
        others = sorted(set(self.columns) - set(LEGACY_COLUMNS))
        if others:
            raise ValueError(
                f"the legacy reading of {self.exchange!r} rows fills {', '.join(others)}: "
                f"it can fill only {', '.join(LEGACY_COLUMNS)}"
            )

    @property
    def reads(self) -> frozenset[str]:
        """The columns it reads, ``exchange`` included: what a reader selects for it."""
        roots = (expression.meta.root_names() for expression in self.columns.values())
        return frozenset({"exchange"}.union(*roots))


@functools.cache
def legacy_readings() -> dict[str, LegacyReading]:
    """The :class:`LegacyReading` of each exchange, by ``exchange``, from installed plugins.

    Read once per process from the entry-point modules of the ``lakeflow`` group (those
    ``LAKEFLOW_PLUGINS`` lets lakeflow load) whose distribution depends on this one: the
    others cannot hold a reading and are not imported. A plugin that fails to import, or
    exports something else under ``LEGACY_LIQUIDATION``, is skipped with a warning naming
    it: its old rows then count as unpriced.
    """
    wanted = os.environ.get("LAKEFLOW_PLUGINS")
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    found: dict[str, LegacyReading] = {}
    for entry_point in importlib.metadata.entry_points(group="lakeflow"):
        if allowed is not None and entry_point.name not in allowed:
            continue
        if not _depends_on_this(entry_point.dist):
            continue
        try:
            reading = getattr(entry_point.load(), LEGACY_EXPORT, None)
        except Exception as exc:
            warnings.warn(
                f"plugin {entry_point.name!r} could not be loaded ({type(exc).__name__}: "
                f"{exc}): if it reads old liquidation rows, they count as unpriced",
                stacklevel=2,
            )
            continue
        if reading is None:
            continue
        if not isinstance(reading, LegacyReading):
            warnings.warn(
                f"plugin {entry_point.name!r} exports {LEGACY_EXPORT} as a "
                f"{type(reading).__name__}, not a LegacyReading; its old liquidation rows "
                "count as unpriced",
                stacklevel=2,
            )
            continue
        found.setdefault(reading.exchange, reading)
    return found


def _depends_on_this(distribution: importlib.metadata.Distribution | None) -> bool:
    """Whether ``distribution`` requires this one (names compared as PEP 503 normalizes them)."""
    if distribution is None:
        return False
    for requirement in distribution.requires or []:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        if name and re.sub(r"[-_.]+", "-", name.group()).lower() == DISTRIBUTION:
            return True
    return False


def liquidation_notional(
    rows: pl.LazyFrame | pl.DataFrame,
    *,
    every: str = "1h",
    by_exchange: bool = True,
    currency: str | None = None,
    by: Sequence[str] = (),
    legacy: bool = True,
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
    ``other_currency_count``. ``legacy`` reads rows written before the meaning columns
    existed by their exchange plugin's :class:`LegacyReading` (see the module's
    docstring); false leaves them unpriced.

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
        _priced(rows, legacy, by)
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
    rows: pl.LazyFrame | pl.DataFrame, *, legacy: bool = True
) -> dict[str, int]:
    """The currencies of the rows' notionals, each with its number of rows, most first.

    Only rows :func:`liquidation_notional` would count: those with a notional, its
    currency and a position side (``legacy`` as there).
    """
    counts = (
        _priced(rows, legacy, [])
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


def _priced(rows: pl.LazyFrame | pl.DataFrame, legacy: bool, by: list[str]) -> pl.LazyFrame:
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
    meaning = {column: pl.col(column) for column in LEGACY_COLUMNS}
    if legacy:
        # Written before the columns existed: all of them read null.
        unfilled = pl.all_horizontal([pl.col(column).is_null() for column in LEGACY_COLUMNS])
        for reading in legacy_readings().values():
            old = unfilled & (pl.col("exchange") == reading.exchange)
            for column, expression in reading.columns.items():
                meaning[column] = pl.when(old).then(expression).otherwise(meaning[column])
    position = meaning["position_side"]
    notional = meaning["notional"]
    currency = meaning["notional_currency"]
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
