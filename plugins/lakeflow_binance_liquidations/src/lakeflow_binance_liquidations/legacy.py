"""Binance's side of the shared ``liquidation`` schema: the quote asset of a USD-M symbol,
and how rows written before the schema's meaning columns existed are read.

This plugin's 0.1.0 wrote rows without ``position_side``, ``base_quantity``, ``notional``
and ``notional_currency``; a table that holds such rows reads them null there (schema
evolution, no migration). For USD-M they follow exactly from what the row always held,
by the mapping :func:`~lakeflow_binance_liquidations.source.sized` applies to a new row:
the position from the order's ``side`` (``SELL`` closes a long), the notional
``filled_quantity x average_price`` (what was executed), in the quote asset the symbol
ends in. :data:`LEGACY_LIQUIDATION` says so to
:func:`lakeflow_market_schemas.liquidation_notional`, which finds it in this plugin's
entry-point module. Old COIN-M rows cannot be filled in: their notional needs the
contract size of the exchange's instrument list, which the row does not hold; they stay
unpriced.
"""

from __future__ import annotations

import polars as pl
from lakeflow_market_schemas import LegacyReading, decimal_product, position_from_order_side

#: The quote asset a USD-M symbol ends in (a delivery contract adds ``_YYMMDD``): the
#: currency of a USD-M row's notional, for the rows the source writes and for old ones.
USDM_QUOTE = r"(USDT|USDC|FDUSD|BUSD)(?:_\d+)?$"

_USDM = pl.col("market") == "usdm"

#: How Binance rows written before the meaning columns existed are read.
LEGACY_LIQUIDATION = LegacyReading(
    "binance",
    {
        "position_side": position_from_order_side(pl.col("side")),
        "notional": pl.when(_USDM).then(
            decimal_product(pl.col("filled_quantity"), pl.col("average_price"))
        ),
        "notional_currency": pl.when(_USDM).then(pl.col("symbol").str.extract(USDM_QUOTE, 1)),
    },
)
