"""``liquidation_notional`` on polars frames of ``liquidation`` rows: no tables, no network."""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import lakeflow_market_schemas
import lakeflow_market_schemas.reading as reading
import polars as pl
import pytest
from lakeflow_market_schemas import (
    LIQUIDATION,
    LegacyReading,
    MixedCurrencies,
    ReadingError,
    decimal_product,
    liquidation_notional,
    notional_currencies,
)

import lakeflow

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def row(
    exchange: str = "binance",
    position_side: str | None = "long",
    notional: str | None = "100",
    currency: str | None = "USDT",
    minutes: float = 0,
    **columns: Any,
) -> dict[str, Any]:
    """One ``liquidation`` row, ``minutes`` after noon; every column not given is null."""
    at = T0 + timedelta(minutes=minutes)
    values: dict[str, Any] = dict.fromkeys(LIQUIDATION.columns)
    values |= {
        "exchange": exchange,
        "market": {"binance": "usdm", "bybit": "linear", "okx": "swap"}.get(exchange),
        "symbol": "BTCUSDT",
        "position_side": position_side,
        "notional": None if notional is None else Decimal(notional),
        "notional_currency": currency,
        "trade_time": at,
        "date": at.date(),
    }
    return values | columns


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=LIQUIDATION.polars_schema)


def plain(result: pl.DataFrame) -> list[dict[str, Any]]:
    """The result's rows, notionals as floats and buckets as minutes after noon."""
    return result.with_columns(
        ((pl.col("bucket") - T0).dt.total_minutes()).alias("bucket"),
        pl.col("long_notional", "short_notional").cast(pl.Float64),
    ).to_dicts()


@pytest.fixture
def two_exchanges() -> pl.DataFrame:
    """Binance and Bybit rows in USDT over two hours; one Bybit row without a notional."""
    return frame(
        row("binance", "long", "300", minutes=5),
        row("binance", "short", "100", minutes=10),
        row("bybit", "long", "40", minutes=20, average_price=None),
        row("bybit", "short", "7.5", minutes=70, average_price=None),
        row("bybit", "short", None, None, minutes=75),
    )


def test_by_exchange_sums_each_exchange_per_bucket(two_exchanges):
    assert plain(liquidation_notional(two_exchanges)) == [
        {
            "bucket": 0,
            "exchange": "binance",
            "currency": "USDT",
            "long_notional": 300.0,
            "short_notional": 100.0,
            "long_count": 1,
            "short_count": 1,
            "unpriced_count": 0,
            "other_currency_count": 0,
        },
        {
            "bucket": 0,
            "exchange": "bybit",
            "currency": "USDT",
            "long_notional": 40.0,
            "short_notional": 0.0,
            "long_count": 1,
            "short_count": 0,
            "unpriced_count": 0,
            "other_currency_count": 0,
        },
        {
            "bucket": 60,
            "exchange": "bybit",
            "currency": "USDT",
            "long_notional": 0.0,
            "short_notional": 7.5,
            "long_count": 0,
            "short_count": 1,
            "unpriced_count": 1,
            "other_currency_count": 0,
        },
    ]


def test_summed_over_exchanges(two_exchanges):
    result = liquidation_notional(two_exchanges, by_exchange=False)
    assert "exchange" not in result.columns
    assert plain(result.select("bucket", "long_notional", "short_notional", "long_count")) == [
        {"bucket": 0, "long_notional": 340.0, "short_notional": 100.0, "long_count": 2},
        {"bucket": 60, "long_notional": 0.0, "short_notional": 7.5, "long_count": 0},
    ]


def test_notionals_stay_exact_decimals(two_exchanges):
    result = liquidation_notional(two_exchanges, every="1d", by_exchange=False)
    assert result.schema["long_notional"] == lakeflow.DECIMAL
    assert result["long_notional"].to_list() == [Decimal("340")]


def test_every_sets_the_bucket(two_exchanges):
    result = liquidation_notional(two_exchanges, every="15m", by_exchange=False)
    # 75: a bucket whose only row has no notional is there, with its count.
    assert [r["bucket"] for r in plain(result)] == [0, 15, 60, 75]


def test_a_lazy_frame_reads_the_same(two_exchanges):
    assert liquidation_notional(two_exchanges.lazy()).equals(liquidation_notional(two_exchanges))


def test_mixed_currencies_are_refused_naming_them():
    rows = frame(row("binance", currency="USDT"), row("binance"), row("okx", currency="USD"))
    with pytest.raises(MixedCurrencies) as raised:
        liquidation_notional(rows)
    assert raised.value.currencies == {"USDT": 2, "USD": 1}
    assert str(raised.value) == (
        "the rows' notionals are in 2 currencies: USDT (2 rows), USD (1 row); they are "
        "different money and are not converted into one another: choose one with "
        'currency="USDT", or filter the rows to one currency'
    )
    assert isinstance(raised.value, lakeflow.LakeflowError)
    assert isinstance(raised.value, ReadingError)


def test_usdt_and_usdc_are_different_currencies():
    with pytest.raises(MixedCurrencies, match="USDC"):
        liquidation_notional(frame(row(currency="USDT"), row(currency="USDC")), by_exchange=False)


def test_a_chosen_currency_counts_its_rows_and_counts_the_others_out():
    rows = frame(
        row("binance", "long", "100", "USDT"),
        row("okx", "long", "5", "USD"),
        row("okx", "short", "6", "USD"),
    )
    usd = liquidation_notional(rows, currency="usd", by_exchange=False)  # any case
    assert plain(usd) == [
        {
            "bucket": 0,
            "currency": "USD",
            "long_notional": 5.0,
            "short_notional": 6.0,
            "long_count": 1,
            "short_count": 1,
            "unpriced_count": 0,
            "other_currency_count": 1,
        }
    ]
    usdt = liquidation_notional(rows, currency="USDT")
    assert usdt.select("exchange", "long_notional", "other_currency_count").rows() == [
        ("binance", Decimal("100"), 0),
        ("okx", Decimal("0"), 2),
    ]


def test_a_currency_none_of_the_rows_is_in_counts_nothing():
    result = liquidation_notional(frame(row()), currency="USDC", by_exchange=False)
    assert result.select("currency", "long_count", "other_currency_count").rows() == [
        ("USDC", 0, 1)
    ]


def test_rows_without_a_notional_are_left_out_and_counted():
    rows = frame(
        row("okx", "long", "10"),
        row("okx", "long", None, None),  # an instrument missing from OKX's list
        row("okx", "short", "5", None),  # a notional but no currency
        row("okx", None, "5"),  # no position side
    )
    result = liquidation_notional(rows)
    assert result.select("long_notional", "long_count", "short_count", "unpriced_count").rows() == [
        (Decimal("10"), 1, 0, 3)
    ]


def test_rows_without_any_notional_give_no_currency():
    result = liquidation_notional(frame(row("bybit", notional=None, currency=None)))
    assert result.select("currency", "long_count", "unpriced_count").rows() == [(None, 0, 1)]


# -- rows older than the meaning columns: each exchange plugin's LegacyReading ----------

ACME_PLUGIN = """
import polars as pl
from lakeflow_market_schemas import LegacyReading, decimal_product, position_from_order_side

LEGACY_LIQUIDATION = LegacyReading(
    "acme",
    {
        "position_side": position_from_order_side(pl.col("side")),
        "notional": decimal_product(pl.col("quantity"), pl.col("price")),
        "notional_currency": pl.lit("USD"),
    },
)
"""
#: A row of acme's written before the meaning columns existed: all three null.
OLD = {"position_side": None, "notional": None, "currency": None}


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install a lakeflow plugin (entry point and module) whose module source is given,
    as a distribution on ``sys.path`` for the test's length; returns the module's name."""
    installed_modules = []

    def install(
        source: str, name: str = "acme_liquidations", requires: str = "Lakeflow_Market.Schemas>=0.1"
    ) -> str:
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        info = tmp_path / f"{name}-0.1.0.dist-info"
        info.mkdir()
        distribution = name.replace("_", "-")
        metadata = (
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n"
            f"Requires-Dist: {requires}\n"
        )
        (info / "METADATA").write_text(metadata, encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[lakeflow]\n{name} = {name}\n", encoding="utf-8")
        installed_modules.append(name)
        reading.legacy_readings.cache_clear()
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    reading.legacy_readings.cache_clear()
    for name in installed_modules:
        sys.modules.pop(name, None)


def acme(**columns: Any) -> dict[str, Any]:
    """An old acme row: a ``side`` order, 2 contracts of 1 at ``price``."""
    return row("acme", **OLD, market="swap", side="SELL", quantity=Decimal("2")) | columns


def test_an_installed_plugins_legacy_reading_fills_in_its_old_rows(installed):
    installed(ACME_PLUGIN)
    rows = frame(acme(price=Decimal("50")), acme(side="BUY", price=Decimal("10")))
    result = liquidation_notional(rows, by_exchange=False)
    assert result.select("currency", "long_notional", "short_notional").rows() == [
        ("USD", Decimal("100"), Decimal("20"))
    ]
    assert notional_currencies(rows) == {"USD": 2}
    assert reading.legacy_readings()["acme"].exchange == "acme"


def test_old_rows_can_be_left_unpriced(installed):
    installed(ACME_PLUGIN)
    result = liquidation_notional(frame(acme(price=Decimal("50"))), legacy=False)
    assert result.select("long_count", "unpriced_count").rows() == [(0, 1)]


def test_a_reading_fills_in_only_its_own_exchanges_rows(installed):
    installed(ACME_PLUGIN)
    other = acme(price=Decimal("50")) | {"exchange": "other"}
    result = liquidation_notional(frame(other))
    assert result.select("long_count", "unpriced_count").rows() == [(0, 1)]


def test_rows_no_plugin_reads_stay_unpriced():
    result = liquidation_notional(frame(acme(price=Decimal("50")) | {"exchange": "nobody"}))
    assert result.select("long_count", "unpriced_count").rows() == [(0, 1)]


def test_new_rows_are_not_rederived(installed):
    # A row that has its notional keeps it, whatever quantity x price says.
    installed(ACME_PLUGIN)
    new = row("acme", "short", "7", "USD", side="SELL", quantity=Decimal("2"), price=Decimal("50"))
    result = liquidation_notional(frame(new))
    assert result.select("long_notional", "short_notional").rows() == [(Decimal("0"), Decimal("7"))]


def test_a_table_written_before_the_columns_existed_reads_them_null(installed):
    installed(ACME_PLUGIN)
    old_columns = [c for c in LIQUIDATION.columns if c not in LIQUIDATION_NEW]
    rows = frame(acme(price=Decimal("50"))).select(old_columns)
    result = liquidation_notional(rows, by_exchange=False)
    assert result.select("currency", "long_notional", "long_count").rows() == [
        ("USD", Decimal("100"), 1)
    ]


LIQUIDATION_NEW = ("position_side", "base_quantity", "notional", "notional_currency")


def test_a_legacy_reading_fills_in_only_the_meaning_columns():
    with pytest.raises(ValueError, match="fills base_quantity: it can fill only position_side"):
        LegacyReading("acme", {"base_quantity": pl.lit(1)})


def test_a_legacy_reading_says_which_columns_it_reads():
    columns = {"notional": decimal_product(pl.col("quantity"), pl.col("price"))}
    assert LegacyReading("acme", columns).reads == {"exchange", "quantity", "price"}


def test_a_plugin_exporting_something_else_is_skipped_with_a_warning(installed):
    installed("LEGACY_LIQUIDATION = 'not a reading'\n", name="odd_liquidations")
    with pytest.warns(UserWarning, match="'odd_liquidations' exports LEGACY_LIQUIDATION as a str"):
        reading.legacy_readings()


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning(installed):
    installed("raise RuntimeError('broken on import')\n", name="broken_liquidations")
    with pytest.warns(
        UserWarning, match="'broken_liquidations' could not be loaded .*broken on import"
    ):
        reading.legacy_readings()


def test_a_plugin_that_does_not_depend_on_this_distribution_is_not_imported(installed):
    installed("raise RuntimeError('imported')\n", name="prices_only", requires="polars")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reading.legacy_readings()
    assert "prices_only" not in sys.modules


def test_lakeflow_plugins_limits_where_readings_are_looked_for(installed, monkeypatch):
    installed(ACME_PLUGIN)
    monkeypatch.setenv("LAKEFLOW_PLUGINS", "market_schemas")
    assert "acme" not in reading.legacy_readings()


def test_by_adds_grouping_columns():
    rows = frame(row(symbol="BTCUSDT"), row(symbol="ETHUSDT", notional="7"), row("bybit"))
    result = liquidation_notional(rows, every="1d", by_exchange=False, by=["symbol"])
    assert result.select("symbol", "long_notional", "long_count").rows() == [
        ("BTCUSDT", Decimal("200"), 2),
        ("ETHUSDT", Decimal("7"), 1),
    ]


def test_no_rows_give_an_empty_frame_of_the_same_columns(two_exchanges):
    empty = liquidation_notional(two_exchanges.clear())
    assert empty.is_empty()
    assert empty.schema == liquidation_notional(two_exchanges).schema


@pytest.mark.parametrize("every", ["an hour", "1x", ""])
def test_a_bad_every_is_refused_before_reading(every):
    with pytest.raises(ReadingError, match="is not a polars duration"):
        liquidation_notional(frame(row()), every=every)


def test_rows_without_trade_time_are_refused():
    with pytest.raises(ReadingError, match="lack trade_time"):
        liquidation_notional(frame(row()).drop("trade_time"))


def test_by_a_result_column_is_refused():
    with pytest.raises(ReadingError, match="'currency' is a column of the result"):
        liquidation_notional(frame(row()), by=["currency"])


def test_the_reading_names_are_exported_lazily():
    module = importlib.import_module("lakeflow_market_schemas.reading")
    assert lakeflow_market_schemas.liquidation_notional is module.liquidation_notional
    assert {"liquidation_notional", "MixedCurrencies"} <= set(lakeflow_market_schemas.__all__)


def test_the_readme_gives_the_functions_signature():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("liquidation_notional(\n") :]
    block = block[: block.index(") -> pl.DataFrame")]
    shown = [line.split("#")[0].strip().rstrip(",") for line in block.splitlines()[1:]]
    expected = [
        "rows: pl.LazyFrame | pl.DataFrame",
        "*",
        *(
            f"{p.name}: {p.annotation} = {p.default!r}".replace("'", '"')
            for p in inspect.signature(liquidation_notional).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ),
    ]
    assert shown == expected
