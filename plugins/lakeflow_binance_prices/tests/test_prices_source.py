"""The ``binance_prices`` source against a loopback stand-in, through the real runtime and sink."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lakeflow_binance_prices import BinancePricesSource
from prices_standin import Reply, StandIn, market_of, symbols_of, tickers

from lakeflow.testing import Collected, collect_async

TYPE = "binance_prices"
NAME = "source"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Column <- fixture key, for the decimal columns.
DECIMALS = {
    "price_change": "priceChange",
    "price_change_percent": "priceChangePercent",
    "weighted_avg_price": "weightedAvgPrice",
    "prev_close_price": "prevClosePrice",
    "last_price": "lastPrice",
    "last_quantity": "lastQty",
    "bid_price": "bidPrice",
    "bid_quantity": "bidQty",
    "ask_price": "askPrice",
    "ask_quantity": "askQty",
    "open_price": "openPrice",
    "high_price": "highPrice",
    "low_price": "lowPrice",
    "volume": "volume",
    "quote_volume": "quoteVolume",
}


def run(
    tmp_path: Path, config: dict[str, Any], *replies: Reply, polls: int = 1, timeout: float = 20
) -> tuple[StandIn, Collected]:
    """Serve ``replies`` (then normal answers) and run the source until ``polls`` polls."""

    async def main() -> tuple[StandIn, Collected]:
        async with StandIn() as server:
            server.queue(*replies)
            collected = await collect_async(
                TYPE,
                {"base_url": server.url, **config},
                tmp_path,
                polls=polls,
                timeout=timeout,
                name=NAME,
            )
        return server, collected

    return asyncio.run(main())


def stats(collected: Collected) -> Any:
    return collected.result.stats[NAME]


def error(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg}).encode()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry after a millisecond instead of half a second (the same logic, faster)."""
    monkeypatch.setattr(BinancePricesSource, "retry_base", 0.001)


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_each_poll_stores_one_row_per_symbol_with_the_served_values(
    tmp_path: Path, market: str
) -> None:
    server, collected = run(tmp_path, {"market": market, "interval": 0.2}, polls=3)

    polls = stats(collected).polls
    served = tickers(market)
    rows = collected.rows
    assert polls >= 3
    assert rows.height == polls * len(served)
    assert rows["polled_at"].n_unique() == polls
    assert len(server.requests) >= polls  # a poll cut short by the stop may have begun
    assert {market_of(r) for r in server.requests} == {market}
    assert collected.dead_letters.is_empty()
    by_symbol = {t["symbol"]: t for t in served}
    for row in rows.iter_rows(named=True):
        sent = by_symbol[row["symbol"]]
        assert row["exchange"] == "binance"
        assert row["market"] == market
        for column, key in DECIMALS.items():
            expected = Decimal(sent[key]) if key in sent else None
            assert row[column] == expected, (row["symbol"], column)
        assert row["open_time"] == EPOCH + timedelta(milliseconds=sent["openTime"])
        assert row["close_time"] == EPOCH + timedelta(milliseconds=sent["closeTime"])
        assert row["first_trade_id"] == sent["firstId"]
        assert row["last_trade_id"] == sent["lastId"]
        assert row["trade_count"] == sent["count"]
        assert row["date"] == row["polled_at"].date()


def test_usdm_rows_have_no_bid_ask_or_previous_close(tmp_path: Path) -> None:
    _, collected = run(tmp_path, {"market": "usdm"})

    rows = collected.rows
    assert rows.height == len(tickers("usdm"))
    for column in ("prev_close_price", "bid_price", "bid_quantity", "ask_price", "ask_quantity"):
        assert rows[column].null_count() == rows.height, column
    assert rows["last_price"].null_count() == 0


@pytest.mark.parametrize(("market", "symbol"), [("spot", "OLDCOINBTC"), ("usdm", "DEADUSDT")])
def test_a_symbol_without_trades_keeps_trade_ids_of_minus_one(
    tmp_path: Path, market: str, symbol: str
) -> None:
    _, collected = run(tmp_path, {"market": market})

    row = collected.rows.filter(pl.col("symbol") == symbol).row(0, named=True)
    assert (row["first_trade_id"], row["last_trade_id"], row["trade_count"]) == (-1, -1, 0)


def test_a_coinm_source_polls_the_dapi_path_and_lands_its_contracts(tmp_path: Path) -> None:
    server, collected = run(tmp_path, {"market": "coinm"})

    (request,) = server.requests
    assert request.path == "/dapi/v1/ticker/24hr"
    assert request.query == {}  # every contract in one request: COIN-M takes no list
    sent = {t["symbol"]: t for t in tickers("coinm")}
    rows = collected.rows
    assert sorted(rows["symbol"]) == sorted(sent)
    assert collected.dead_letters.is_empty()
    for row in rows.iter_rows(named=True):
        ticker = sent[row["symbol"]]
        assert row["market"] == "coinm"
        assert row["pair"] == ticker["pair"]
        assert row["volume"] == Decimal(ticker["baseVolume"])
        assert row["contract_volume"] == Decimal(ticker["volume"])
        assert row["quote_volume"] is None


def test_coinm_symbols_are_fetched_in_one_request_and_filtered(tmp_path: Path) -> None:
    server, collected = run(tmp_path, {"market": "coinm", "symbols": ["ETHUSD_PERP"]})

    (request,) = server.requests
    assert request.query == {}
    assert collected.rows.select("symbol", "pair").rows() == [("ETHUSD_PERP", "ETHUSD")]


def test_polls_reuse_one_http_connection(tmp_path: Path) -> None:
    server, _ = run(tmp_path, {"interval": 0.2}, polls=3)

    assert len(server.requests) >= 3
    assert len({r.peer for r in server.requests}) == 1


def test_a_symbols_list_is_sent_as_a_compact_json_array(tmp_path: Path) -> None:
    server, collected = run(tmp_path, {"symbols": ["BTCUSDT", "ETHBTC"]})

    (request,) = server.requests
    assert request.raw_query == "symbols=%5B%22BTCUSDT%22,%22ETHBTC%22%5D"
    assert symbols_of(request) == ["BTCUSDT", "ETHBTC"]
    assert sorted(collected.rows["symbol"]) == ["BTCUSDT", "ETHBTC"]


def test_a_long_symbols_list_is_split_into_requests_of_at_most_100(tmp_path: Path) -> None:
    symbols = [f"COIN{i:03d}USDT" for i in range(250)]
    server, collected = run(tmp_path, {"symbols": symbols})

    sent = [symbols_of(r) for r in server.requests]
    assert [len(s or []) for s in sent] == [100, 100, 50]
    assert [s for chunk in sent for s in chunk or []] == symbols
    assert collected.rows.height == 250
    assert sorted(collected.rows["symbol"]) == symbols


def test_usdm_symbols_are_fetched_in_one_request_and_filtered(tmp_path: Path) -> None:
    server, collected = run(tmp_path, {"market": "usdm", "symbols": ["ETHUSDT", "BTCUSDT"]})

    (request,) = server.requests
    assert request.query == {}
    assert sorted(collected.rows["symbol"]) == ["BTCUSDT", "ETHUSDT"]


def test_an_unlisted_usdm_symbol_stops_the_source(tmp_path: Path) -> None:
    server, collected = run(tmp_path, {"market": "usdm", "symbols": ["BTCUSDT", "NOPEUSDT"]})

    assert collected.result.failed == [NAME]
    assert len(server.requests) == 1
    (reason,) = collected.gaps["reason"]
    assert "NOPEUSDT" in reason
    assert "BTCUSDT" in reason  # the configured list, to compare with


def test_a_429_waits_retry_after_and_the_poll_still_lands(tmp_path: Path) -> None:
    limited = Reply(429, error(-1003, "Too many requests."), {"Retry-After": "1"})
    server, collected = run(tmp_path, {"interval": 5}, limited)

    first, second = server.requests
    assert second.at - first.at >= 1.0  # Binance asked for 1 s
    assert collected.rows.height == len(tickers("spot"))
    assert stats(collected).failed_polls == 0
    assert collected.gaps.is_empty()


def test_a_418_pauses_polling_for_retry_after_then_resumes(tmp_path: Path) -> None:
    banned = Reply(418, error(-1003, "Way too many requests; IP banned."), {"Retry-After": "1"})
    server, collected = run(tmp_path, {"interval": 0.2}, Reply(), banned, polls=2)

    _, ban, *resumed = server.requests
    assert resumed
    assert all(r.at - ban.at >= 1.0 for r in resumed)  # nothing was sent during the pause
    assert stats(collected).failed_polls == 1
    (reason,) = collected.gaps["reason"]
    assert reason.startswith("paused:")
    assert "418" in reason
    assert collected.rows.height == 2 * len(tickers("spot"))


@pytest.mark.parametrize(
    "failure",
    [
        Reply(500, error(-1000, "An unknown error occurred while processing the request.")),
        Reply(503, b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"),
        Reply(stall=3.0),  # longer than the 0.3 s timeout
        Reply(drop=True),
    ],
    ids=["500", "503-html", "timeout", "dropped-connection"],
)
@pytest.mark.usefixtures("fast_retries")
def test_a_transient_failure_is_retried_and_the_poll_lands(tmp_path: Path, failure: Reply) -> None:
    server, collected = run(tmp_path, {"interval": 5, "timeout": 0.3}, failure)

    assert len(server.requests) == 2
    assert collected.rows.height == len(tickers("spot"))
    assert stats(collected).failed_polls == 0
    assert collected.gaps.is_empty()


@pytest.mark.usefixtures("fast_retries")
def test_retries_are_bounded_and_a_lost_poll_is_a_gap(tmp_path: Path) -> None:
    attempts = BinancePricesSource.max_attempts
    failures = [Reply(500, error(-1000, "Internal error.")) for _ in range(attempts)]
    server, collected = run(tmp_path, {"interval": 1.0}, *failures, polls=1)

    assert len(server.requests) == attempts + 1  # the next poll succeeded
    assert stats(collected).failed_polls == 1
    (reason,) = collected.gaps["reason"]
    assert f"after {attempts} attempt(s)" in reason
    assert "HTTP 500 code -1000: Internal error." in reason
    assert collected.rows.height == len(tickers("spot"))


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Service Unavailable</body></html>",
        b'[{"symbol":"BTCUSDT","priceChange":"-94.99999800","lastPri',
    ],
    ids=["html", "truncated-json"],
)
def test_an_unparseable_200_body_becomes_a_dead_letter_and_the_next_poll_is_fine(
    tmp_path: Path, body: bytes
) -> None:
    _, collected = run(tmp_path, {"interval": 0.2}, Reply(body=body), polls=2)

    (dead,) = collected.dead_letters.iter_rows(named=True)
    assert dead["payload"] == body
    assert dead["table"] == "prices"
    assert "body is not JSON" in dead["error"]
    assert collected.rows.height == (stats(collected).polls - 1) * len(tickers("spot"))
    assert collected.rows.height > 0


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-1121, "Invalid symbol."),
        (-1100, "Illegal characters found in parameter 'symbols'."),
    ],
)
def test_a_symbol_error_stops_the_source_without_retrying(
    tmp_path: Path, code: int, msg: str
) -> None:
    refused = Reply(400, error(code, msg))
    server, collected = run(tmp_path, {"interval": 0.2, "symbols": ["BTCUSDT", "NOPE"]}, refused)

    assert collected.result.failed == [NAME]
    assert stats(collected).state == "failed"
    assert len(server.requests) == 1
    (reason,) = collected.gaps["reason"]
    for part in (str(code), msg, "BTCUSDT", "NOPE"):
        assert part in reason
    assert collected.rows.is_empty()


RESTRICTED = error(
    0,
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error.",
)


@pytest.mark.parametrize("market", ["spot", "usdm", "coinm"])
def test_a_451_restricted_location_stops_the_source_without_retrying(
    tmp_path: Path, market: str
) -> None:
    server, collected = run(tmp_path, {"market": market, "interval": 0.2}, Reply(451, RESTRICTED))

    assert collected.result.failed == [NAME]
    assert stats(collected).state == "failed"
    assert len(server.requests) == 1
    assert stats(collected).polls == 0
    assert collected.rows.is_empty()


def test_a_451_says_binance_refuses_the_location_and_what_to_do(tmp_path: Path) -> None:
    _, collected = run(tmp_path, {"interval": 0.2}, Reply(451, RESTRICTED))

    (reason,) = collected.gaps["reason"]
    assert reason.startswith("source stopped: Binance refuses requests from this machine's")
    for part in ("HTTP 451", "restricted location", "retrying cannot", "Run lakeflow from"):
        assert part in reason, part


def test_another_4xx_loses_the_poll_but_polling_goes_on(tmp_path: Path) -> None:
    refused = Reply(400, error(-1104, "Not all sent parameters were read."))
    server, collected = run(tmp_path, {"interval": 0.5}, refused, polls=1)

    assert len(server.requests) == 2  # not retried within the poll; the next poll worked
    assert collected.result.failed == []
    (reason,) = collected.gaps["reason"]
    assert "HTTP 400 code -1104: Not all sent parameters were read." in reason


def test_near_the_weight_limit_no_request_goes_before_the_window_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Binance's window is the wall-clock minute; a 1 s window exercises the same code, and
    # the 0.5 s slack makes the wait always longer than the 0.2 s interval.
    monkeypatch.setattr(BinancePricesSource, "weight_window", 1.0)
    monkeypatch.setattr(BinancePricesSource, "clock_slack", 0.5)
    caplog.set_level(logging.WARNING, logger="lakeflow_binance_prices")
    heavy = Reply(headers={"X-MBX-USED-WEIGHT-1M": "5000"})  # over 80 % of spot's 6000
    server, collected = run(tmp_path, {"interval": 0.2}, heavy, polls=2)

    first, *later = server.requests
    resume = math.floor(first.at) + 1.0 + 0.5
    assert later
    assert all(r.at >= resume for r in later)
    assert "request weight 5000 of 6000 used this minute" in caplog.text
    # The polls that fell before the window turned were skipped, and say why.
    assert "request weight 5000/6000" in collected.gaps["reason"][0]
    assert collected.rows.height == stats(collected).polls * len(tickers("spot"))


def test_a_body_over_the_size_limit_loses_the_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BinancePricesSource, "max_body", 2000)
    huge = Reply(body=b"[" + b" " * 5000 + b"]")
    server, collected = run(tmp_path, {"interval": 0.5, "symbols": ["BTCUSDT"]}, huge, polls=1)

    assert len(server.requests) == 2  # not retried: the next poll's small body landed
    (reason,) = collected.gaps["reason"]
    assert "exceeds the 2000-byte limit" in reason
    assert collected.rows["symbol"].to_list() == ["BTCUSDT"]
