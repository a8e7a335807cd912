"""The source end to end: a loopback Binance stand-in, the real runtime, real Delta tables."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
from lakeflow_binance_liquidations import LIQUIDATION

ALL_MARKET = "/market/ws/!forceOrder@arr"
#: COIN-M's documented path, which a coinm source tries first.
COINM_ALL_MARKET = "/ws/!forceOrder@arr"


def stored(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Table rows without the receipt time, in event order."""
    return rows.drop("received_at").sort("event_time", "symbol").to_dicts()


def in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (row["event_time"], row["symbol"]))


def event(n: int, symbol: str, price: str, quantity: str, time_ms: int) -> bytes:
    """A generated forceOrder frame in the documented USD-M shape."""
    return json.dumps(
        {
            "e": "forceOrder",
            "E": time_ms + 2,
            "o": {
                "s": symbol,
                "S": "SELL" if n % 2 else "BUY",
                "o": "LIMIT",
                "f": "IOC",
                "q": quantity,
                "p": price,
                "ap": price,
                "X": "FILLED",
                "l": quantity,
                "z": quantity,
                "T": time_ms,
            },
        },
        separators=(",", ":"),
    ).encode()


def decimal_string(rng: random.Random) -> str:
    """A positive decimal string with 0 to 8 decimal places, as Binance writes them."""
    places = rng.randint(0, 8)
    whole = str(rng.randint(0, 99_999))
    return whole if places == 0 else f"{whole}.{rng.randint(0, 10**places - 1):0{places}d}"


def test_all_market_usdm_stores_every_event_once_exactly(frames, expected, stand_in, collect):
    sent = frames("usdm_forceOrder_raw.jsonl")

    async def main():
        async with stand_in(ALL_MARKET, sent) as server:
            return await collect(server, {}, payloads=len(sent))

    result = asyncio.run(main())

    assert result.rows.schema == LIQUIDATION.polars_schema  # order, decimals, UTC times
    assert stored(result.rows) == in_order([expected(frame) for frame in sent])
    assert result.rows["received_at"].null_count() == 0
    assert result.dead_letters.height == 0
    # The date partition is the UTC date of the trade: 23:59:59.994 and 00:00:00.007.
    xrp = result.rows.filter(symbol="XRPUSDT").sort("trade_time")
    assert xrp["date"].to_list() == [date(2024, 11, 24), date(2024, 11, 25)]


def test_combined_stream_of_symbols_asks_for_each_and_unwraps_events(
    frames, expected, stand_in, collect
):
    sent = frames("usdm_forceOrder_combined.jsonl")
    path = "/market/stream?streams=btcusdt@forceOrder/ethusdt@forceOrder"

    async def main():
        async with stand_in(path, sent) as server:
            result = await collect(server, {"symbols": ["BTCUSDT", "ETHUSDT"]}, payloads=len(sent))
            return server.paths, result

    paths, result = asyncio.run(main())

    assert paths == [path]
    assert stored(result.rows) == in_order([expected(frame) for frame in sent])
    assert result.dead_letters.height == 0


def test_coinm_all_market_fills_pair(frames, expected, stand_in, collect):
    sent = frames("coinm_forceOrder_raw.jsonl")

    async def main():
        async with stand_in(COINM_ALL_MARKET, sent) as server:
            return await collect(server, {"market": "coinm"}, payloads=len(sent))

    result = asyncio.run(main())

    assert stored(result.rows) == in_order([expected(frame, "coinm") for frame in sent])
    assert result.rows["pair"].to_list() == ["BTCUSD", "ETHUSD", "BNBUSD"]
    assert set(result.rows["market"]) == {"coinm"}


def test_coinm_rows_are_sized_by_the_contract_sizes_of_exchange_info(
    frames, expected, stand_in, collect, http_standin, exchange_info, coinm_contracts
):
    sent = frames("coinm_forceOrder_raw.jsonl")
    info = http_standin([exchange_info])

    async def main():
        async with stand_in(COINM_ALL_MARKET, sent) as server:
            config = {"market": "coinm", "rest_url": info.url}
            return await collect(server, config, payloads=len(sent))

    result = asyncio.run(main())

    want = [expected(frame, "coinm", coinm_contracts) for frame in sent]
    assert stored(result.rows) == in_order(want)
    by_symbol = {row["symbol"]: row for row in result.rows.to_dicts()}
    assert by_symbol["BTCUSD_PERP"]["notional"] == Decimal(100)  # 1 contract of 100 USD
    assert by_symbol["ETHUSD_250627"]["notional"] == Decimal(350)  # 35 of 10 USD
    assert by_symbol["BNBUSD_PERP"]["notional"] is None  # not listed: unsized, kept
    assert info.requests[0].path == "/dapi/v1/exchangeInfo"


def test_thousands_of_generated_events_land_exactly_once(expected, stand_in, collect):
    rng = random.Random(20241124)
    symbols = [f"COIN{i}USDT" for i in range(300)]
    start = 1_732_406_400_000
    sent = [
        event(n, rng.choice(symbols), decimal_string(rng), decimal_string(rng), start + n * 7)
        for n in range(5000)
    ]

    async def main():
        async with stand_in(ALL_MARKET, sent) as server:
            return await collect(server, {}, payloads=len(sent))

    result = asyncio.run(main())

    assert result.rows.height == len(sent)
    assert result.rows.select("symbol", "event_time").is_unique().all()
    assert stored(result.rows) == in_order([expected(frame) for frame in sent])


def test_control_frames_are_counted_as_ignored_not_stored(frames, stand_in, collect):
    events = frames("usdm_forceOrder_raw.jsonl")[:3]
    control = frames("ws_control_frames.jsonl")
    sent = [control[0], events[0], events[1], control[1], events[2]]

    async def main():
        async with stand_in(ALL_MARKET, sent) as server:
            return await collect(server, {}, payloads=len(sent))

    result = asyncio.run(main())

    assert result.result.stats["source"].ignored == len(control)
    assert result.rows.height == len(events)
    assert result.dead_letters.height == 0


def test_bad_frames_become_dead_letters_and_the_stream_goes_on(frames, stand_in, collect):
    good = frames("usdm_forceOrder_raw.jsonl")
    bad = frames("bad_frames.jsonl")
    sent = [good[0], *bad, *good[1:]]

    async def main():
        async with stand_in(ALL_MARKET, sent) as server:
            return await collect(server, {}, payloads=len(sent))

    result = asyncio.run(main())

    assert result.rows.height == len(good)
    dead = result.dead_letters
    assert sorted(dead["payload"].to_list()) == sorted(bad)
    assert set(dead["source"]) == {"source"}
    assert set(dead["table"]) == {LIQUIDATION.table}
    reasons = dict(zip(dead["payload"], dead["error"], strict=True))
    assert "'o.p' is not a valid decimal" in reasons[bad[0]]  # "p": "abc"
    assert "invalid JSON" in reasons[bad[1]]  # cut off mid-object
    assert "'E' is not a valid epoch time" in reasons[bad[4]]  # "E": "yesterday"


def test_server_close_is_a_gap_and_the_stream_resumes(frames, expected, stand_in, collect):
    sent = frames("usdm_forceOrder_raw.jsonl")
    before, after = sent[:4], sent[4:]

    async def main():
        async with stand_in(ALL_MARKET, before, after, close=(1001, "going away")) as server:
            result = await collect(server, {}, payloads=len(sent))
            return server.paths, result

    paths, result = asyncio.run(main())

    assert paths == [ALL_MARKET, ALL_MARKET]
    assert stored(result.rows) == in_order([expected(frame) for frame in sent])
    assert result.result.stats["source"].reconnects == 1
    gaps = result.gaps.filter(source="source")
    assert gaps.height == 1
    assert gaps["table"].to_list() == [LIQUIDATION.table]
    assert "1001" in gaps["reason"][0] and "going away" in gaps["reason"][0]
    assert (gaps["gap_end"] >= gaps["gap_start"]).all()


def test_the_merged_stream_stores_each_product_sized_by_its_own_rules(
    frames, expected, stand_in, collect, http_standin, exchange_info, coinm_contracts
):
    sent = frames("merged_forceOrder_raw.jsonl")
    dapi = http_standin([exchange_info])

    async def main():
        async with stand_in(ALL_MARKET, sent) as server:
            config = {"market": "all", "rest_url": dapi.url}
            return await collect(server, config, payloads=len(sent))

    result = asyncio.run(main())

    want = [expected(frame, contracts=coinm_contracts) for frame in sent]
    assert stored(result.rows) == in_order(want)
    by_symbol = {row["symbol"]: row for row in result.rows.to_dicts()}
    assert by_symbol["BTCUSD_PERP"]["notional"] == Decimal(25_000)  # 250 contracts of 100 USD
    assert by_symbol["BTCUSD_PERP"]["notional_currency"] == "USD"
    assert by_symbol["ETHUSDT"]["notional_currency"] == "USDT"
