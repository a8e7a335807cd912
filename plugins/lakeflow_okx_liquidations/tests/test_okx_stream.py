"""The source end to end: a loopback OKX stand-in, the real runtime, real Delta tables."""

from __future__ import annotations

import asyncio
import logging

from lakeflow_okx_liquidations import LIQUIDATION, OkxLiquidationsSource

SUBSCRIBE_BOTH = (
    '{"op":"subscribe","args":[{"channel":"liquidation-orders","instType":"SWAP"},'
    '{"channel":"liquidation-orders","instType":"FUTURES"}]}'
)


def pings(server) -> int:
    """How many text ``ping``s the stand-in has received, on every connection."""
    return sum(message == "ping" for c in server.connections for message in c.received)


def test_okx_every_event_of_several_instruments_lands_once_exactly(
    okx_frames, okx_exchange, okx_collect, okx_expected, okx_stored, okx_listed
):
    swap, futures = okx_frames("swap_frames.jsonl"), okx_frames("futures_frames.jsonl")
    server = okx_exchange({"SWAP": swap, "FUTURES": futures})

    result = asyncio.run(okx_collect(server, payloads=2 + len(swap) + len(futures)))

    assert result.rows.schema == LIQUIDATION.polars_schema  # order, exact decimals, UTC times
    assert okx_stored(result.rows) == okx_expected(swap + futures, okx_listed)
    assert result.rows.height == 11  # every detail of every instrument of every frame
    assert result.rows["received_at"].null_count() == 0
    assert result.dead_letters.height == 0


def test_okx_subscribes_every_configured_type_in_one_request(okx_frames, okx_exchange, okx_collect):
    server = okx_exchange()

    asyncio.run(okx_collect(server, payloads=2))

    assert [c.received[0] for c in server.connections] == [SUBSCRIBE_BOTH]
    assert server.subscribed == ["SWAP", "FUTURES"]


def test_okx_a_type_left_out_of_inst_types_is_neither_subscribed_nor_stored(
    okx_frames, okx_exchange, okx_collect
):
    swap, futures = okx_frames("swap_frames.jsonl"), okx_frames("futures_frames.jsonl")
    server = okx_exchange({"SWAP": swap, "FUTURES": futures})

    result = asyncio.run(okx_collect(server, {"inst_types": ["SWAP"]}, payloads=1 + len(swap)))

    assert server.subscribed == ["SWAP"]
    assert set(result.rows["market"]) == {"swap"}


def test_okx_subscription_acks_are_counted_as_ignored_not_stored(
    okx_frames, okx_exchange, okx_collect
):
    swap = okx_frames("swap_frames.jsonl")
    server = okx_exchange({"SWAP": swap})

    result = asyncio.run(okx_collect(server, payloads=2 + len(swap)))

    assert result.result.stats["source"].ignored == 2
    assert result.dead_letters.height == 0


def test_okx_refused_subscription_is_a_dead_letter_naming_okx_code_and_msg(
    okx_frames, okx_exchange, okx_collect, okx_expected, okx_stored, okx_listed
):
    swap = okx_frames("swap_frames.jsonl")
    server = okx_exchange({"SWAP": swap}, refuse=["FUTURES"])

    result = asyncio.run(okx_collect(server, payloads=2 + len(swap)))

    (reason,) = result.dead_letters["error"].to_list()
    assert reason.startswith("OKX error event, code 60012: Invalid request: ")
    assert '"instType":"FUTURES"' in reason  # OKX's msg quotes the request
    assert okx_stored(result.rows) == okx_expected(swap, okx_listed)  # SWAP goes on


def test_okx_bad_frames_become_dead_letters_and_the_stream_goes_on(
    okx_frames, okx_exchange, okx_collect, okx_expected, okx_stored, okx_listed
):
    good, bad = okx_frames("swap_frames.jsonl"), okx_frames("bad_frames.jsonl")
    server = okx_exchange({"SWAP": [good[0], *bad, *good[1:]]})

    result = asyncio.run(okx_collect(server, payloads=2 + len(good) + len(bad)))

    assert okx_stored(result.rows) == okx_expected(good, okx_listed)
    dead = result.dead_letters
    assert sorted(dead["payload"].to_list()) == sorted(bad)
    assert set(dead["table"]) == {LIQUIDATION.table}
    reasons = dict(zip(dead["payload"], dead["error"], strict=True))
    assert "'data.details.bkPx' is not a valid decimal" in reasons[bad[0]]
    assert "invalid JSON" in reasons[bad[1]]


def test_okx_text_ping_keeps_the_connection_open_past_the_idle_timeout(
    okx_frames,
    okx_exchange,
    okx_collect,
    okx_expected,
    okx_stored,
    okx_listed,
    monkeypatch,
    wait_until,
):
    monkeypatch.setattr(OkxLiquidationsSource, "keepalive_interval", 0.1)
    server = okx_exchange(idle_timeout=0.5)
    late = okx_frames("swap_frames.jsonl")[:1]
    seen_pings, slack = 8, 5  # 8 pings: 0.8 s, past the 0.5 s the stand-in allows silence

    async def main():
        run = asyncio.ensure_future(
            okx_collect(server, payloads=2 + seen_pings + len(late) + slack)
        )
        await wait_until(lambda: pings(server) >= seen_pings, "pings past the idle timeout")
        await asyncio.to_thread(server.publish, "SWAP", *late)
        return await run

    result = asyncio.run(main())

    assert len(server.connections) == 1 and not server.connections[0].dropped_for_silence
    assert okx_stored(result.rows) == okx_expected(late, okx_listed)
    # Every pong (and both acks) counted as ignored: no dead letters, no rows.
    stats = result.result.stats["source"]
    assert stats.ignored == stats.received - len(late)
    assert result.dead_letters.height == 0


def test_okx_without_the_text_ping_the_exchange_drops_the_connection(
    okx_frames, okx_exchange, okx_collect, monkeypatch
):
    # What the keepalive above prevents (and proof that the stand-in enforces it).
    monkeypatch.setattr(OkxLiquidationsSource, "keepalive_interval", None)
    server = okx_exchange(idle_timeout=0.3)

    result = asyncio.run(okx_collect(server, payloads=2 * 2))

    assert server.connections[0].dropped_for_silence
    assert result.result.stats["source"].reconnects >= 1


def test_okx_reconnect_subscribes_again_and_the_stream_resumes(
    okx_frames, okx_exchange, okx_collect, okx_expected, okx_stored, okx_listed, wait_until
):
    server = okx_exchange()
    before, after = okx_frames("swap_frames.jsonl")[:1], okx_frames("futures_frames.jsonl")

    async def main():
        run = asyncio.ensure_future(okx_collect(server, payloads=2 + 1 + 2 + 1))
        await wait_until(lambda: len(server.subscribed) == 2, "the first subscription")
        await asyncio.to_thread(server.publish, "SWAP", *before)
        await asyncio.to_thread(server.drop)
        await wait_until(lambda: len(server.subscribed) == 4, "the subscription after it")
        await asyncio.to_thread(server.publish, "FUTURES", *after)
        return await run

    result = asyncio.run(main())

    assert [c.received[0] for c in server.connections] == [SUBSCRIBE_BOTH, SUBSCRIBE_BOTH]
    assert [c.topics for c in server.connections] == [["SWAP", "FUTURES"]] * 2
    assert okx_stored(result.rows) == okx_expected(before + after, okx_listed)
    assert result.result.stats["source"].reconnects == 1
    assert result.gaps.filter(source="source").height == 1


def test_okx_instrument_lists_are_read_for_each_type(okx_exchange, okx_collect, okx_rest):
    rest = okx_rest()

    asyncio.run(okx_collect(okx_exchange(), payloads=2, rest=rest))

    asked = sorted(r.query["instType"] for r in rest.requests)
    assert asked == ["FUTURES", "SWAP"]
    assert {r.path for r in rest.requests} == {"/api/v5/public/instruments"}


def test_okx_instrument_missing_from_the_list_is_stored_unsized(
    okx_frames, okx_exchange, okx_collect
):
    unlisted = okx_frames("unlisted_frames.jsonl")
    server = okx_exchange({"SWAP": unlisted})

    result = asyncio.run(okx_collect(server, payloads=2 + len(unlisted)))

    (row,) = result.rows.to_dicts()
    assert row["symbol"] == "NEWCOIN-USDT-SWAP"
    assert (row["base_quantity"], row["notional"], row["notional_currency"]) == (None, None, None)
    assert row["quantity"] is not None and row["price"] is not None  # kept, to size later
    assert result.dead_letters.height == 0


def test_okx_unreachable_instrument_list_at_start_still_lands_every_row_unsized(
    okx_frames, okx_exchange, okx_collect, okx_expected, okx_stored, nowhere, monkeypatch
):
    monkeypatch.setattr(OkxLiquidationsSource, "instruments_within", 0.5)
    swap = okx_frames("swap_frames.jsonl")
    server = okx_exchange({"SWAP": swap})

    result = asyncio.run(okx_collect(server, payloads=2 + len(swap), rest=nowhere))

    assert okx_stored(result.rows) == okx_expected(swap, {})
    assert result.dead_letters.height == 0


def test_okx_failed_refresh_warns_keeps_the_known_sizes_and_the_stream_goes_on(
    okx_frames,
    okx_exchange,
    okx_collect,
    okx_expected,
    okx_stored,
    okx_listed,
    okx_rest,
    monkeypatch,
    caplog,
    wait_until,
):
    monkeypatch.setattr(OkxLiquidationsSource, "instruments_within", 0.3)
    caplog.set_level(logging.WARNING, logger="lakeflow_okx_liquidations")
    rest = okx_rest(fail_after=2)  # the two reads before the first decode; then 503s
    server = okx_exchange()
    frames = okx_frames("swap_frames.jsonl")

    async def main():
        run = asyncio.ensure_future(
            okx_collect(server, {"refresh_interval": 0.1}, payloads=2 + len(frames), rest=rest)
        )
        await wait_until(
            lambda: "could not read the OKX instrument list" in caplog.text, "a failed refresh"
        )
        await asyncio.to_thread(server.publish, "SWAP", *frames)
        return await run

    result = asyncio.run(main())

    assert "HTTP 503" in caplog.text
    assert okx_stored(result.rows) == okx_expected(frames, okx_listed)  # sized as before
    assert result.result.stats["source"].reconnects == 0


def test_okx_instrument_listed_later_is_sized_after_the_next_refresh(
    okx_frames,
    okx_exchange,
    okx_collect,
    okx_expected,
    okx_stored,
    okx_listed,
    okx_rest,
    okx_instrument_bodies,
    wait_until,
):
    newcoin = {**okx_listed["ETH-USDT-SWAP"], "instId": "NEWCOIN-USDT-SWAP", "ctVal": "1000"}
    bodies, answered_with_it = okx_instrument_bodies, []

    def current():
        if newcoin in bodies["SWAP"]["data"]:
            answered_with_it.append(True)
        return bodies

    rest = okx_rest(current)
    server = okx_exchange()
    frames = okx_frames("unlisted_frames.jsonl")

    async def main():
        run = asyncio.ensure_future(
            okx_collect(server, {"refresh_interval": 0.1}, payloads=2 + len(frames), rest=rest)
        )
        await wait_until(lambda: len(server.subscribed) == 2, "the subscription")
        bodies["SWAP"]["data"].append(newcoin)  # OKX lists it
        # A second answer naming it comes from a refresh that began after the one that
        # read it had ended: the source knows it by then.
        await wait_until(lambda: len(answered_with_it) >= 2, "two refreshes that list it")
        await asyncio.to_thread(server.publish, "SWAP", *frames)
        return await run

    result = asyncio.run(main())

    listed = {**okx_listed, "NEWCOIN-USDT-SWAP": newcoin}
    assert okx_stored(result.rows) == okx_expected(frames, listed)
    assert result.rows["notional"].to_list() != [None]
