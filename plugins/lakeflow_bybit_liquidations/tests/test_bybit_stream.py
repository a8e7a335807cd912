"""The source end to end: loopback stand-ins speaking Bybit v5, the real runtime, real Delta tables.

Payload counts include Bybit's replies: one acknowledgement per subscribe request (ten
topics at most each) and one pong per ping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import ClassVar

import pytest
from lakeflow_bybit_liquidations import LIQUIDATION, BybitLiquidationsSource

ETH, BTC, ETHPERP, SOL = (
    f"allLiquidation.{s}" for s in ("ETHUSDT", "BTCUSDT", "ETHPERP", "SOLUSDT")
)
#: The trading symbols of fixtures/instruments_linear.json, in its order (NEWUSDT is PreLaunch).
TRADING = ["BTCUSDT", "ETHUSDT", "ETHPERP", "SOLUSDT"]


class QuickPing(BybitLiquidationsSource):
    """The real source with its 20 s keepalive shortened, so that a test sees several."""

    type = "bybit_liquidations_quick_ping"
    keepalive_interval: ClassVar[float | None] = 0.2


class NoPing(BybitLiquidationsSource):
    """The real source without its keepalive: what Bybit drops."""

    type = "bybit_liquidations_no_ping"
    keepalive_interval: ClassVar[float | None] = None


def entry(symbol: str, status: str = "Trading", quote: str = "USDT") -> dict[str, str]:
    """An instruments-info entry of a linear perpetual, in Bybit's shape."""
    return {
        "symbol": symbol,
        "contractType": "LinearPerpetual",
        "status": status,
        "baseCoin": symbol.removesuffix(quote),
        "quoteCoin": quote,
        "settleCoin": quote,
    }


def event_frame(symbol: str, side: str, size: str, price: str, time_ms: int) -> str:
    """An allLiquidation frame of one event, in the documented shape."""
    event = {"T": time_ms, "s": symbol, "S": side, "v": size, "p": price}
    frame = {"topic": f"allLiquidation.{symbol}", "type": "snapshot", "ts": time_ms + 200}
    return json.dumps({**frame, "data": [event]}, separators=(",", ":"))


def with_key(frame: bytes | str, path: str, value: str) -> str:
    """The frame with one more key (``"cs"``; ``"data.bL"`` in each of its events): what
    Bybit might add one day."""
    message = json.loads(frame)
    if path.startswith("data."):
        for event in message["data"]:
            event[path.removeprefix("data.")] = value
    else:
        message[path] = value
    return json.dumps(message, separators=(",", ":"))


def warnings_saying(caplog, text: str) -> list[str]:
    """The WARNING messages logged so far that contain ``text``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and text in record.getMessage()
    ]


def test_every_event_of_every_symbol_is_stored_once_exactly(
    frames, bybit_ws, bybit_rest, collect, expected, quote_coins, stored, ordered
):
    sent = frames("linear_allLiquidation.jsonl")
    ws = bybit_ws({ETH: [sent[0]], BTC: [sent[1]], ETHPERP: [sent[2]], SOL: [sent[3]]})
    rest = bybit_rest()

    result = collect(ws, rest, payloads=1 + len(sent))  # one ack: four topics, one request

    assert result.rows.schema == LIQUIDATION.polars_schema
    want = [row for frame in sent for row in expected(frame, "linear", quote_coins)]
    assert stored(result.rows) == ordered(want)
    assert result.rows["received_at"].null_count() == 0
    assert result.dead_letters.height == 0


def test_every_trading_symbol_of_every_instrument_page_is_subscribed(bybit_ws, bybit_rest, collect):
    ws = bybit_ws()
    rest = bybit_rest(page_size=2)  # five instruments: three pages

    collect(ws, rest, payloads=1)

    assert ws.subscribed == [f"allLiquidation.{s}" for s in TRADING]  # not NEWUSDT (PreLaunch)
    queries = [request.query for request in rest.requests]
    assert queries == [
        {"category": "linear", "limit": "1000"},
        {"category": "linear", "limit": "1000", "cursor": "page%3D2"},
        {"category": "linear", "limit": "1000", "cursor": "page%3D4"},
    ]


def test_topics_past_bybits_limit_per_connection_are_not_sent_and_an_error_says_how_to_split(
    bybit_ws, bybit_rest, collect, monkeypatch, caplog
):
    # Bybit takes 21,000 characters of topics per connection (~800 symbols); a limit of
    # 100 here fits three "allLiquidation.COINnUSDT" topics (27 characters each, quoted).
    monkeypatch.setattr("lakeflow_bybit_liquidations.source.ARGS_LIMIT", 100)
    symbols = [f"COIN{i}USDT" for i in range(5)]
    ws = bybit_ws(listed=symbols)
    rest = bybit_rest(listed=[entry(s) for s in symbols], page_size=1000)

    collect(ws, rest, payloads=1)

    assert ws.subscribed == [f"allLiquidation.{s}" for s in symbols[:3]]
    assert "2 symbols NOT subscribed" in caplog.text
    assert "shards = 2" in caplog.text


def test_shards_split_every_symbol_between_sources_without_overlap(bybit_ws, bybit_rest, collect):
    symbols = [f"COIN{i}USDT" for i in range(12)]
    rest = bybit_rest(listed=[entry(s) for s in symbols], page_size=1000)
    parts = []
    for shard in (0, 1):
        ws = bybit_ws(listed=symbols)
        collect(ws, rest, {"shards": 2, "shard": shard}, payloads=1)
        parts.append({topic.removeprefix("allLiquidation.") for topic in ws.subscribed})

    assert parts[0] | parts[1] == set(symbols)
    assert not parts[0] & parts[1]
    assert parts[0] and parts[1]


def test_subscribe_requests_carry_at_most_ten_topics_each(bybit_ws, bybit_rest, collect):
    symbols = [f"COIN{i}USDT" for i in range(23)]
    ws = bybit_ws(listed=symbols)
    rest = bybit_rest(listed=[entry(s) for s in symbols], page_size=1000)

    result = collect(ws, rest, payloads=3)  # 10 + 10 + 3 topics: three acks

    requests = ws.protocol.requests
    assert [len(r["args"]) for r in requests] == [10, 10, 3]
    assert [r["op"] for r in requests] == ["subscribe"] * 3
    assert len({r["req_id"] for r in requests}) == 3
    assert ws.subscribed == [f"allLiquidation.{s}" for s in symbols]
    assert result.result.stats["source"].ignored == 3


def test_inverse_rows_are_usd_contracts_on_the_inverse_stream(
    frames, bybit_ws, bybit_rest, collect, expected, stored, ordered
):
    sent = frames("inverse_allLiquidation.jsonl")
    ws = bybit_ws(
        {"allLiquidation.BTCUSD": [sent[0]], "allLiquidation.ETHUSD": [sent[1]]},
        category="inverse",
    )
    rest = bybit_rest("inverse")

    result = collect(ws, rest, {"category": "inverse"}, payloads=1 + len(sent))

    assert [c.path for c in ws.connections] == ["/v5/public/inverse"]
    assert stored(result.rows) == ordered(row for f in sent for row in expected(f, "inverse"))
    assert set(result.rows["notional_currency"]) == {"USD"}
    assert set(result.rows["market"]) == {"inverse"}


def test_a_refused_topic_is_a_dead_letter_naming_bybits_message(
    frames, bybit_ws, bybit_rest, collect
):
    eth = frames("linear_allLiquidation.jsonl")[0]
    ws = bybit_ws({ETH: [eth]})
    rest = bybit_rest()

    result = collect(ws, rest, {"symbols": ["ETHUSDT", "NOPE"]}, payloads=2)

    assert result.rows["symbol"].to_list() == ["ETHUSDT", "ETHUSDT"]  # the listed one still flows
    dead = result.dead_letters
    assert dead.height == 1
    assert "error:handler not found,topic:allLiquidation.NOPE" in dead["error"][0]
    assert dead["error"][0].startswith("Bybit refused the subscribe request")
    assert set(dead["table"]) == {LIQUIDATION.table}


def test_bad_frames_become_dead_letters_and_the_stream_goes_on(
    frames, bybit_ws, bybit_rest, collect
):
    good = frames("linear_allLiquidation.jsonl")
    bad = frames("bad_frames.jsonl")
    ws = bybit_ws({ETH: [good[0], *bad, good[1]]})
    rest = bybit_rest()

    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=1 + 2 + len(bad))

    assert result.rows.height == 3  # 2 events of the first good frame, 1 of the last
    dead = result.dead_letters
    assert sorted(dead["payload"].to_list()) == sorted(bad)
    reasons = dict(zip(dead["payload"], dead["error"], strict=True))
    assert reasons[bad[0]] == "field 'data.p' is not a valid decimal"
    assert "invalid JSON" in reasons[bad[1]]
    assert reasons[bad[3]] == "topic is not allLiquidation.<symbol>"


def test_acks_and_pongs_are_counted_as_ignored_not_dead_letters(
    frames, bybit_ws, bybit_rest, collect
):
    ws = bybit_ws({ETH: [frames("linear_allLiquidation.jsonl")[0]]})
    rest = bybit_rest()

    # One ack, one frame, then three pongs to QuickPing's pings.
    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=5, source=QuickPing)

    assert result.result.stats["source"].ignored == 4
    assert result.dead_letters.height == 0
    assert result.rows.height == 2


def test_the_keepalive_ping_keeps_a_connection_bybit_drops_when_silent(
    frames, bybit_ws, bybit_rest, collect
):
    ws = bybit_ws({ETH: [frames("linear_allLiquidation.jsonl")[0]]}, idle_timeout=0.5)
    rest = bybit_rest()

    # Ack + frame, then eight pongs: 1.6 s of pings every 0.2 s, past three idle limits.
    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=10, source=QuickPing)

    assert len(ws.connections) == 1
    connection = ws.connections[0]
    assert not connection.dropped_for_silence
    assert connection.received.count('{"op":"ping"}') >= 8
    assert result.result.stats["source"].reconnects == 0


def test_without_the_keepalive_bybit_drops_the_connection(bybit_ws, bybit_rest, collect):
    # The stand-in's idle limit is real: the keepalive test above proves something.
    ws = bybit_ws(idle_timeout=0.3)
    rest = bybit_rest()

    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=2, source=NoPing)

    assert ws.connections[0].dropped_for_silence
    assert result.result.stats["source"].reconnects >= 1


def test_after_a_drop_every_symbol_is_subscribed_again(
    frames, bybit_ws, bybit_rest, collect_async, expected, quote_coins, stored, ordered
):
    sent = frames("linear_allLiquidation.jsonl")
    ws = bybit_ws()
    rest = bybit_rest()

    async def subscribed(connections: int) -> None:
        while len(ws.connections) < connections or len(ws.connections[-1].topics) < 4:  # noqa: ASYNC110 - the stand-in has its own thread
            await asyncio.sleep(0.02)

    async def drop_between_two_frames() -> None:
        await subscribed(1)
        await asyncio.to_thread(ws.publish, ETH, sent[0])
        await asyncio.to_thread(ws.drop)
        await subscribed(2)
        await asyncio.to_thread(ws.publish, BTC, sent[1])

    async def main():
        dropper = asyncio.ensure_future(drop_between_two_frames())
        result = await collect_async(ws, rest, payloads=4)  # ack, frame, ack, frame
        await dropper
        return result

    result = asyncio.run(main())

    every = [f"allLiquidation.{s}" for s in TRADING]
    assert [c.topics for c in ws.connections] == [every, every]
    want = [*expected(sent[0], "linear", quote_coins), *expected(sent[1], "linear", quote_coins)]
    assert stored(result.rows) == ordered(want)
    assert result.result.stats["source"].reconnects == 1
    gaps = result.gaps.filter(source="source")
    assert gaps.height == 1 and "1001" in gaps["reason"][0]
    # The list was read once, before the first decode: not per connection.
    assert len(rest.requests) == 3


def test_a_symbol_listed_after_the_start_is_subscribed_at_the_next_refresh(
    frames, bybit_ws, bybit_rest, collect, instruments, caplog
):
    listed = instruments("linear")
    relisted = [*listed, entry("NEWCOINUSDT")]
    new = event_frame("NEWCOINUSDT", "Sell", "1500", "0.0421", 1764000003000)
    ws = bybit_ws({"allLiquidation.NEWCOINUSDT": [new]}, listed=[e["symbol"] for e in relisted])
    rest = bybit_rest(listed=listed, relisted=relisted, page_size=1000)
    caplog.set_level(logging.INFO, logger="lakeflow_bybit_liquidations")

    result = collect(ws, rest, {"refresh_interval": 0.2}, payloads=3)  # ack, ack, frame

    assert [r["args"] for r in ws.protocol.requests] == [
        [f"allLiquidation.{s}" for s in TRADING],
        ["allLiquidation.NEWCOINUSDT"],  # only what is new, on the same connection
    ]
    assert len(ws.connections) == 1
    row = result.rows.row(0, named=True)
    assert (row["symbol"], row["position_side"], row["notional_currency"]) == (
        "NEWCOINUSDT",
        "short",
        "USDT",
    )
    assert "subscribing to 1 newly listed symbols: NEWCOINUSDT" in caplog.text


def test_an_unreachable_instrument_list_fails_the_connection_saying_why_then_recovers(
    frames, bybit_ws, bybit_rest, collect, expected, quote_coins, stored, ordered, monkeypatch
):
    # A 403 is Bybit's rate-limit ban; shorten the 10 minutes it is waited out.
    monkeypatch.setattr(BybitLiquidationsSource, "ban_wait", 0.2)
    sent = frames("linear_allLiquidation.jsonl")
    ws = bybit_ws({ETH: [sent[0]], BTC: [sent[1]]})
    # The read before the first decode and the first connection's are refused (then held);
    # a later connection's read succeeds.
    rest = bybit_rest(fail_first=2, page_size=1000)

    result = collect(ws, rest, payloads=3)

    assert ws.connections[0].received == []  # nothing subscribed without the list
    assert ws.connections[-1].topics == [f"allLiquidation.{s}" for s in TRADING]
    reasons = " ".join(result.gaps["reason"].to_list())
    assert "cannot subscribe to every linear symbol: the instrument list" in reasons
    assert "HTTP 403" in reasons
    want = [*expected(sent[0], "linear", quote_coins), *expected(sent[1], "linear", quote_coins)]
    assert stored(result.rows) == ordered(want)  # nothing lost, and sized
    assert result.dead_letters.height == 0


def test_named_symbols_flow_unsized_while_the_instrument_list_is_unreachable(
    frames, bybit_ws, bybit_rest, collect, expected, stored, ordered
):
    sent = frames("linear_allLiquidation.jsonl")
    ws = bybit_ws({ETH: [sent[0]]})
    rest = bybit_rest(fail_first=1000)

    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=2)

    assert stored(result.rows) == ordered(expected(sent[0], "linear"))  # currency null
    assert result.rows["notional_currency"].null_count() == 2
    assert result.result.stats["source"].reconnects == 0


def test_a_403_from_the_instrument_list_is_waited_out_before_asking_again(
    frames, bybit_ws, bybit_rest, collect, monkeypatch
):
    # Bybit bans an IP over its rate limit with "403, access too frequent" for at least
    # 10 minutes, and for good if it keeps asking: the source holds its requests.
    monkeypatch.setattr(BybitLiquidationsSource, "ban_wait", 1.5)
    sent = frames("linear_allLiquidation.jsonl")
    ws = bybit_ws({ETH: [sent[0]], BTC: [sent[1]]})
    rest = bybit_rest(fail_first=1, page_size=1000)

    collect(ws, rest, payloads=3)

    first, second = rest.requests[0], rest.requests[1]
    assert second.at - first.at >= 1.5
    assert len(ws.connections) >= 2  # the stream kept reconnecting meanwhile, not the API


def test_the_instrument_list_is_read_on_the_sources_schedule_whatever_the_connections_do(
    frames, bybit_ws, bybit_rest, collect_async, wait_until
):
    # Four connections, each dropped as soon as it has subscribed: none lives as long as
    # one refresh_interval, and the list is still read every interval, and only then.
    interval = 0.4
    ws = bybit_ws()
    rest = bybit_rest(page_size=1000)
    eth = frames("linear_allLiquidation.jsonl")[0]

    async def drop_each_connection_then_send_a_frame() -> None:
        for n in (1, 2, 3):
            await wait_until(lambda n=n: len(ws.subscribed) == 4 * n, f"connection {n}")
            await asyncio.to_thread(ws.drop)
        await wait_until(lambda: len(ws.subscribed) == 16, "connection 4")
        await wait_until(lambda: len(rest.requests) >= 4, "three reads after the first")
        await asyncio.to_thread(ws.publish, ETH, eth)

    async def main():
        driver = asyncio.ensure_future(drop_each_connection_then_send_a_frame())
        result = await collect_async(ws, rest, {"refresh_interval": interval}, payloads=4 + 1)
        await driver
        return result

    result = asyncio.run(main())

    assert len(ws.connections) == 4
    assert result.result.stats["source"].reconnects == 3
    times = [request.at for request in rest.requests]
    assert len(times) >= 4
    # Not on connecting (the second connection opened at once after the first drop), not
    # per connection: one schedule, the source's.
    assert all(later - earlier >= interval * 0.95 for earlier, later in itertools.pairwise(times))


@pytest.mark.parametrize("path", ["cs", "data.bL"], ids=["frame", "event"])
def test_a_key_no_field_reads_appearing_mid_run_warns_once_is_recorded_and_every_row_lands(
    path,
    frames,
    bybit_ws,
    bybit_rest,
    collect,
    expected,
    quote_coins,
    stored,
    ordered,
    monkeypatch,
    caplog,
):
    # Every payload examined for keys (the default samples one in 64).
    monkeypatch.setattr(BybitLiquidationsSource, "key_sample", 1)
    eth = frames("linear_allLiquidation.jsonl")[0]
    later = [
        with_key(event_frame("ETHUSDT", "Sell", "0.5", "3011.9", 1764000002000 + k), path, "7")
        for k in range(2)
    ]
    ws = bybit_ws({ETH: [eth, *later]})
    rest = bybit_rest()

    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=1 + 1 + len(later))

    assert len(warnings_saying(caplog, f"a key no field reads: {path}")) == 1
    assert result.drift == [("key", path, "", 2)]
    want = [row for frame in [eth, *later] for row in expected(frame, "linear", quote_coins)]
    assert stored(result.rows) == ordered(want)
    assert result.dead_letters.height == 0


def test_a_symbol_the_list_does_not_name_is_read_for_early_once_then_recorded_as_drift(
    frames,
    bybit_ws,
    bybit_rest,
    collect_async,
    expected,
    quote_coins,
    stored,
    ordered,
    caplog,
    wait_until,
):
    # The stream carries a symbol that instruments-info does not list (yet).
    new = [event_frame("NEWCOINUSDT", "Sell", "1500", "0.0421", 1764000003000 + k) for k in (0, 1)]
    eth = frames("linear_allLiquidation.jsonl")[0]
    ws = bybit_ws(listed=[*TRADING, "NEWCOINUSDT"])
    rest = bybit_rest(page_size=1000)
    drift_said = "symbol 'NEWCOINUSDT', which no instrument list names"

    async def send_the_new_symbol_then_a_listed_one() -> None:
        await wait_until(lambda: len(ws.subscribed) == 2, "the subscription")
        await asyncio.to_thread(ws.publish, "allLiquidation.NEWCOINUSDT", *new)
        await wait_until(lambda: warnings_saying(caplog, drift_said), "the instrument drift")
        await asyncio.to_thread(ws.publish, ETH, eth)

    async def main():
        driver = asyncio.ensure_future(send_the_new_symbol_then_a_listed_one())
        config = {"symbols": ["NEWCOINUSDT", "ETHUSDT"]}
        result = await collect_async(ws, rest, config, payloads=1 + len(new) + 1)
        await driver
        return result

    result = asyncio.run(main())

    assert len(rest.requests) == 2  # before the first decode, and once early: not per row
    assert len(warnings_saying(caplog, drift_said)) == 1
    assert result.drift == [("instrument", "symbol", "NEWCOINUSDT", 2)]
    want = [
        *(row for frame in new for row in expected(frame, "linear")),  # no quote coin known
        *expected(eth, "linear", quote_coins),
    ]
    assert stored(result.rows) == ordered(want)


def test_a_side_outside_buy_and_sell_is_recorded_as_value_drift_and_the_row_lands(
    frames, bybit_ws, bybit_rest, collect
):
    eth = frames("linear_allLiquidation.jsonl")[0]
    odd = event_frame("ETHUSDT", "Long", "1.25", "3011.42", 1764000002123)
    ws = bybit_ws({ETH: [eth, odd]})
    rest = bybit_rest()

    result = collect(ws, rest, {"symbols": ["ETHUSDT"]}, payloads=1 + 2)

    assert result.drift == [("value", "data.S", "Long", 1)]
    assert result.rows.height == 3 and result.dead_letters.height == 0
    (row,) = result.rows.filter(side="Long").to_dicts()
    assert row["position_side"] is None  # kept as sent, never guessed
