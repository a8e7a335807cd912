"""The decoder on the fixture files directly: no network, no runtime."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest
from lakeflow_binance_prices import TICKER_24H, decode_tickers
from prices_standin import fixture, tickers

from lakeflow import TIMESTAMP, Batch

POLLED = datetime(2024, 11, 25, 23, 59, 59, 123456, tzinfo=UTC)


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
        "exchange", "market", "symbol", "price_change", "price_change_percent",
        "weighted_avg_price", "prev_close_price", "last_price", "last_quantity", "bid_price",
        "bid_quantity", "ask_price", "ask_quantity", "open_price", "high_price", "low_price",
        "volume", "quote_volume", "open_time", "close_time", "first_trade_id", "last_trade_id",
        "trade_count", "polled_at", "date",
    ]  # fmt: skip
    assert TICKER_24H.table == "prices"
    assert TICKER_24H.partition_by == ("date",)
