"""Rows this plugin's 0.1.0 wrote, before the meaning columns: how they are read.

``liquidation_notional`` of ``lakeflow-market-schemas`` finds the plugin's
``LEGACY_LIQUIDATION`` through its entry point and reads old USD-M rows by the mapping
the source applies to new ones; old COIN-M rows stay unpriced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
from lakeflow_binance_liquidations import LEGACY_LIQUIDATION, LIQUIDATION, USDM_QUOTE
from lakeflow_market_schemas import legacy_readings, liquidation_notional, notional_currencies

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
#: The columns the shared schema gained after 0.1.0.
NEW_COLUMNS = ("position_side", "base_quantity", "notional", "notional_currency")


def old_row(**columns: Any) -> dict[str, Any]:
    """A USD-M row as 0.1.0 wrote it: the new columns null, every other not given null."""
    values: dict[str, Any] = dict.fromkeys(LIQUIDATION.columns)
    values |= {
        "exchange": "binance",
        "market": "usdm",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "trade_time": AT,
        "date": AT.date(),
    }
    return values | columns


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=LIQUIDATION.polars_schema)


def test_the_reading_is_found_through_the_plugins_entry_point():
    assert legacy_readings()["binance"] is LEGACY_LIQUIDATION


def test_old_usdm_rows_are_read_by_the_sources_mapping():
    rows = frame(
        old_row(side="SELL", filled_quantity=Decimal("3"), average_price=Decimal("100")),
        old_row(side="BUY", filled_quantity=Decimal("0.5"), average_price=Decimal("200")),
        old_row(symbol="ETHUSDC", filled_quantity=Decimal("1"), average_price=Decimal("1")),
    )
    result = liquidation_notional(rows, currency="USDT", by_exchange=False)
    assert result.select("long_notional", "short_notional", "other_currency_count").rows() == [
        (Decimal("300"), Decimal("100"), 1)
    ]
    assert notional_currencies(rows) == {"USDT": 2, "USDC": 1}


def test_old_coinm_rows_stay_unpriced():
    # Their notional needs the contract size from exchangeInfo, which the row lacks.
    coinm = old_row(
        market="coinm",
        symbol="BTCUSD_PERP",
        filled_quantity=Decimal("4"),
        average_price=Decimal("97000"),
    )
    result = liquidation_notional(frame(coinm))
    assert result.select("long_count", "unpriced_count").rows() == [(0, 1)]


def test_old_rows_can_be_left_unpriced():
    old = old_row(filled_quantity=Decimal("3"), average_price=Decimal("100"))
    result = liquidation_notional(frame(old), legacy=False)
    assert result.select("long_count", "unpriced_count").rows() == [(0, 1)]


def test_new_rows_are_not_rederived():
    # A row that has its notional keeps it, whatever filled x average price says.
    new = old_row(
        side="BUY",
        position_side="long",
        notional=Decimal("100"),
        notional_currency="USDT",
        filled_quantity=Decimal("3"),
        average_price=Decimal("100"),
    )
    result = liquidation_notional(frame(new))
    assert result.select("long_notional", "short_notional").rows() == [
        (Decimal("100"), Decimal("0"))
    ]


def test_a_table_written_before_the_columns_existed_reads_them_null():
    old = old_row(filled_quantity=Decimal("2"), average_price=Decimal("50"))
    rows = frame(old).select([c for c in LIQUIDATION.columns if c not in NEW_COLUMNS])
    result = liquidation_notional(rows, by_exchange=False)
    assert result.select("currency", "long_notional", "long_count").rows() == [
        ("USDT", Decimal("100"), 1)
    ]


def test_the_quote_of_a_usdm_symbol_is_its_notionals_currency():
    symbols = pl.Series(["BTCUSDT", "ETHUSDC", "BTCUSDT_260327", "SOLFDUSD", "BTCUSD_PERP"])
    assert symbols.str.extract(USDM_QUOTE, 1).to_list() == ["USDT", "USDC", "USDT", "FDUSD", None]
