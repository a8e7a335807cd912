"""The decoder on the fixture files directly: no network, no runtime."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from lakeflow_binance_prices import MARKET_FIELDS, TICKER_24H, decode_tickers
from prices_standin import fixture, tickers

from lakeflow import TIMESTAMP, Batch

POLLED = datetime(2024, 11, 25, 23, 59, 59, 123456, tzinfo=UTC)
#: When the 2026 fixtures (halted, sorted, coinm) were polled: just after their closeTime.
POLLED_2026 = datetime(2026, 4, 25, 12, 0, 12, 500000, tzinfo=UTC)
README = Path(__file__).parents[1] / "README.md"
PRICES = (
    "price_change", "weighted_avg_price", "prev_close_price", "last_price", "last_quantity",
    "bid_price", "bid_quantity", "ask_price", "ask_quantity", "open_price", "high_price",
    "low_price", "volume", "quote_volume",
)  # fmt: skip


def batch(*payloads: bytes, at: datetime = POLLED) -> Batch:
    return Batch(list(payloads), pl.Series("received_at", [at] * len(payloads), dtype=TIMESTAMP))


def test_decode_spot_fixture_gives_one_row_per_ticker_with_exact_values() -> None:
    decoded = decode_tickers(batch(fixture("spot")), "spot")

    assert decoded.rejects == []
    rows = TICKER_24H.conform(decoded.rows)  # raises if a column is missing or mistyped
    assert rows["symbol"].to_list() == [t["symbol"] for t in tickers("spot")]
    btc = rows.row(0, named=True)
    assert btc["exchange"] == "binance"
    assert btc["market"] == "spot"
    assert btc["last_price"] == Decimal("98012.40000000")
    assert btc["price_change_percent"] == Decimal("-95.960")
    assert btc["bid_quantity"] == Decimal("100")
    assert btc["open_time"] == datetime(2024, 11, 24, tzinfo=UTC)
    assert btc["close_time"] == datetime(2024, 11, 24, 23, 59, 59, 999000, tzinfo=UTC)
    assert (btc["first_trade_id"], btc["last_trade_id"], btc["trade_count"]) == (
        28385,
        28460,
        4129877,
    )
    assert btc["polled_at"] == POLLED
    assert btc["date"] == date(2024, 11, 25)


def test_decode_usdm_fixture_leaves_what_usdm_does_not_send_null() -> None:
    rows = decode_tickers(batch(fixture("usdm")), "usdm").rows

    assert rows.height == len(tickers("usdm"))
    assert set(rows["market"]) == {"usdm"}
    for column in ("prev_close_price", "bid_price", "bid_quantity", "ask_price", "ask_quantity"):
        assert rows[column].null_count() == rows.height
    assert rows["last_price"].to_list()[:3] == [
        Decimal("98010.10"),
        Decimal("3389.12"),
        Decimal("0.0201850"),
    ]


@pytest.mark.parametrize(("market", "symbol"), [("spot", "OLDCOINBTC"), ("usdm", "DEADUSDT")])
def test_decode_keeps_minus_one_trade_ids_of_a_symbol_without_trades(
    market: str, symbol: str
) -> None:
    rows = decode_tickers(batch(fixture(market)), market).rows

    row = rows.filter(pl.col("symbol") == symbol).row(0, named=True)
    assert (row["first_trade_id"], row["last_trade_id"]) == (-1, -1)


def test_decode_takes_polled_at_from_each_payloads_receipt_time() -> None:
    later = datetime(2024, 11, 26, 0, 0, 1, tzinfo=UTC)
    payloads = [fixture("spot"), fixture("spot")]
    received = pl.Series("received_at", [POLLED, later], dtype=TIMESTAMP)
    rows = decode_tickers(Batch(payloads, received), "spot").rows

    assert rows["polled_at"].value_counts().sort("polled_at")["count"].to_list() == [4, 4]
    assert sorted(set(rows["date"])) == [date(2024, 11, 25), date(2024, 11, 26)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "body is not JSON"),
        (fixture("spot")[:300], "body is not JSON"),
        (b"", "empty body"),
        (b'{"code": -1003, "msg": "Too many requests."}', "a JSON object, not an array"),
        (b"null", "a JSON null, not an array"),
        (b'"maintenance"', "a JSON string, not an array"),
        (b'[{"symbol": "BTCUSDT", "lastPrice": "1"}, 7]', "tickers of an unexpected shape"),
    ],
    ids=["html", "truncated", "empty", "object", "null", "string", "not-objects"],
)
def test_decode_rejects_a_body_that_is_not_an_array_of_tickers(body: bytes, reason: str) -> None:
    decoded = decode_tickers(batch(fixture("spot"), body, fixture("usdm")), "spot")

    assert [index for index, _ in decoded.rejects] == [1]
    assert reason in decoded.rejects[0][1]
    assert decoded.rows.height == len(tickers("spot")) + len(tickers("usdm"))


def test_decode_keeps_good_tickers_and_dead_letters_the_body_naming_the_bad_ones() -> None:
    served = tickers("spot")
    served[1]["lastPrice"] = "n/a"
    served[2]["closeTime"] = "yesterday"
    del served[3]["symbol"]
    body = json.dumps(served).encode()
    decoded = decode_tickers(batch(body), "spot")

    assert decoded.rows["symbol"].to_list() == ["BTCUSDT"]
    ((index, reason),) = decoded.rejects
    assert index == 0
    assert reason.startswith("3 ticker(s) rejected")
    assert "ETHBTC: 'lastPrice' is not a valid decimal" in reason
    assert "PEPEUSDT: 'closeTime' is not a valid epoch time in ms" in reason
    assert "?: 'symbol' missing" in reason


def test_decode_refuses_a_price_finer_than_the_column_rather_than_rounding_it() -> None:
    served = tickers("spot")[:2]
    served[0]["lastPrice"] = "0." + "0" * 17 + "15"  # 19 decimals; the column keeps 18
    served[1]["lastPrice"] = "0.034580000000000000000"  # trailing zeros are exact
    decoded = decode_tickers(batch(json.dumps(served).encode()), "spot")

    assert decoded.rows["symbol"].to_list() == ["ETHBTC"]
    assert decoded.rows["last_price"].to_list() == [Decimal("0.03458")]
    assert "BTCUSDT: 'lastPrice' has more than 18 decimals" in decoded.rejects[0][1]


def test_decode_an_empty_array_gives_no_rows_and_no_reject() -> None:
    decoded = decode_tickers(batch(b"[]"), "spot")

    assert decoded.rows.height == 0
    assert decoded.rejects == []
    assert TICKER_24H.conform(decoded.rows).is_empty()


def test_decode_keeps_only_the_given_symbols() -> None:
    rows = decode_tickers(batch(fixture("usdm")), "usdm", ["ETHUSDT", "BTCUSDT"]).rows

    assert sorted(rows["symbol"]) == ["BTCUSDT", "ETHUSDT"]


def test_schema_columns_are_in_the_documented_order() -> None:
    assert list(TICKER_24H.columns) == [
        "exchange", "market", "symbol", "pair", "price_change", "price_change_percent",
        "weighted_avg_price", "prev_close_price", "last_price", "last_quantity", "bid_price",
        "bid_quantity", "ask_price", "ask_quantity", "open_price", "high_price", "low_price",
        "volume", "quote_volume", "contract_volume", "open_time", "close_time",
        "first_trade_id", "last_trade_id", "trade_count", "polled_at", "date",
    ]  # fmt: skip
    assert TICKER_24H.table == "prices"
    assert TICKER_24H.partition_by == ("date",)


# -- facts seen in live traffic -------------------------------------------------------


def halted_rows() -> pl.DataFrame:
    decoded = decode_tickers(batch(fixture("spot", "halted"), at=POLLED_2026), "spot")
    assert decoded.rejects == []
    return decoded.rows.filter(pl.col("symbol") != "BTCUSDT")


def test_decode_stores_halted_spot_symbols_as_rows_not_dead_letters() -> None:
    decoded = decode_tickers(batch(fixture("spot", "halted"), at=POLLED_2026), "spot")

    assert decoded.rejects == []
    assert decoded.rows["symbol"].to_list() == [t["symbol"] for t in tickers("spot", "halted")]


def test_decode_keeps_halted_symbols_zero_prices_as_exact_zeros() -> None:
    rows = halted_rows()

    assert rows.height == 3
    # "0.00000000" and the bare "0" of priceChangePercent/weightedAvgPrice alike.
    for column in (*PRICES, "price_change_percent"):
        assert rows[column].to_list() == [Decimal(0)] * rows.height, column


def test_decode_keeps_halted_symbols_minus_one_ids_and_zero_count() -> None:
    rows = halted_rows()

    assert set(rows.select("first_trade_id", "last_trade_id", "trade_count").rows()) == {
        (-1, -1, 0)
    }


def test_decode_dates_a_halted_symbol_by_the_poll_not_its_weeks_old_close_time() -> None:
    rows = halted_rows()

    # closeTime is when the symbol last traded, weeks before the poll.
    assert rows["close_time"].max() < POLLED_2026 - timedelta(weeks=3)
    assert set(rows["polled_at"]) == {POLLED_2026}
    assert set(rows["date"]) == {date(2026, 4, 25)}


def test_decode_reads_alphabetically_sorted_keys_like_the_documented_order() -> None:
    order = list(tickers("usdm")[0])  # the documented USD-M key order
    documented = [{key: t[key] for key in order} for t in tickers("usdm", "sorted")]
    assert list(tickers("usdm", "sorted")[0]) == sorted(order)  # the fixture is sorted

    sorted_rows = decode_tickers(batch(fixture("usdm", "sorted")), "usdm").rows
    usual_rows = decode_tickers(batch(json.dumps(documented).encode()), "usdm").rows
    assert sorted_rows.equals(usual_rows)
    assert sorted_rows["last_price"].null_count() == 0


def test_decode_keeps_trade_ids_past_two_to_the_32_exact() -> None:
    rows = decode_tickers(batch(fixture("usdm", "sorted")), "usdm").rows

    btc = rows.filter(pl.col("symbol") == "BTCUSDT").row(0, named=True)
    assert btc["last_trade_id"] == 8_123_456_789 > 2**32
    assert btc["first_trade_id"] == 8_118_905_118
    assert btc["last_trade_id"] - btc["first_trade_id"] + 1 == btc["trade_count"]
    assert rows.schema["last_trade_id"] == pl.Int64


@pytest.mark.parametrize("market", ["usdm", "coinm"])
def test_decode_keeps_a_futures_open_time_on_the_minute_as_sent(market: str) -> None:
    body = fixture("usdm", "sorted") if market == "usdm" else fixture("coinm")
    rows = decode_tickers(batch(body), market).rows

    assert set(rows["open_time"]) == {datetime(2026, 4, 24, 12, 1, tzinfo=UTC)}
    # The window starts on the minute, so it is not exactly 24 h long.
    windows = (rows["close_time"] - rows["open_time"]).to_list()
    assert timedelta(hours=24) not in windows


def coinm_rows() -> pl.DataFrame:
    decoded = decode_tickers(batch(fixture("coinm"), at=POLLED_2026), "coinm")
    assert decoded.rejects == []
    return TICKER_24H.conform(decoded.rows)


def test_decode_coinm_gives_one_row_per_contract_with_its_pair() -> None:
    rows = coinm_rows()

    assert rows.select("symbol", "pair").rows() == [
        ("BTCUSD_PERP", "BTCUSD"),
        ("BTCUSD_260626", "BTCUSD"),
        ("ETHUSD_PERP", "ETHUSD"),
        ("ETHUSD_260626", "ETHUSD"),
    ]
    assert set(rows["market"]) == {"coinm"}


def test_decode_coinm_puts_base_volume_in_volume_and_contracts_in_contract_volume() -> None:
    rows = coinm_rows()

    sent = tickers("coinm")
    assert rows["volume"].to_list() == [Decimal(t["baseVolume"]) for t in sent]
    assert rows["contract_volume"].to_list() == [Decimal(t["volume"]) for t in sent]
    assert rows["contract_volume"][0] == Decimal(1850321)  # an integer count, no dot


def test_decode_coinm_leaves_quote_volume_and_what_coinm_does_not_send_null() -> None:
    rows = coinm_rows()

    unsent = ("prev_close_price", "bid_price", "bid_quantity", "ask_price", "ask_quantity")
    for column in ("quote_volume", *unsent):
        assert rows[column].null_count() == rows.height, column
    assert rows["last_price"].to_list()[0] == Decimal("96998.1")


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_decode_leaves_contract_volume_and_an_unsent_pair_null(market: str) -> None:
    rows = decode_tickers(batch(fixture(market)), market).rows

    assert rows["pair"].null_count() == rows.height
    assert rows["contract_volume"].null_count() == rows.height
    assert rows["volume"].null_count() == 0


def test_decode_keeps_a_usdm_pair_when_binance_sends_one() -> None:
    served = tickers("usdm")[:1]
    served[0]["pair"] = "BTCUSDT"
    rows = decode_tickers(batch(json.dumps(served).encode()), "usdm").rows

    assert rows["pair"].to_list() == ["BTCUSDT"]


def readme_mapping(market: str) -> dict[str, str]:
    """Column -> Binance key, from the ``market`` column of the README's schema table."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Schema `ticker_24h` (table `prices`, partitioned by `date`)")
    table = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
        elif table:
            break
    header, _, *rows = table
    at = header.index(f"`{market}`")
    keys = {row[0].strip("`"): row[at] for row in rows}
    return {column: key.strip("`") for column, key in keys.items() if key.startswith("`")}


@pytest.mark.parametrize("market", ["spot", "usdm", "coinm"])
def test_readme_mapping_table_is_the_decoders(market: str) -> None:
    assert readme_mapping(market) == {
        column: spec.path for column, spec in MARKET_FIELDS[market].items()
    }
