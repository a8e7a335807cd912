"""The source end to end: a loopback OKX stand-in, the real runtime, real Delta tables."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging

import polars as pl
import pytest
from lakeflow_okx_liquidations import LIQUIDATION, OkxLiquidationsSource

SUBSCRIBE_BOTH = (
    '{"op":"subscribe","args":[{"channel":"liquidation-orders","instType":"SWAP"},'
    '{"channel":"liquidation-orders","instType":"FUTURES"}]}'
)


def with_key(frame: bytes, path: str, value: str) -> bytes:
    """The frame with one more key (``"action"``; ``"data.details.lever"`` in each of its
    details): what OKX might add one day."""
    message = json.loads(frame)
    if path.startswith("data.details."):
        for element in message["data"]:
            for detail in element["details"]:
                detail[path.removeprefix("data.details.")] = value
    else:
        message[path] = value
    return json.dumps(message, separators=(",", ":")).encode()


def with_detail(frame: bytes, **values: str) -> bytes:
    """The frame with ``values`` replacing keys of every detail (``posSide="both"``)."""
    message = json.loads(frame)
    for element in message["data"]:
        for detail in element["details"]:
            detail.update(values)
    return json.dumps(message, separators=(",", ":")).encode()


def warnings_saying(caplog, text: str) -> list[str]:
    """The WARNING messages logged so far that contain ``text``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and text in record.getMessage()
    ]


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


def test_okx_the_instrument_list_is_read_on_the_sources_schedule_whatever_the_connection_does(
    okx_frames, okx_exchange, okx_collect, okx_rest, wait_until
):
    # Four connections, each dropped as soon as it has subscribed: none lives as long as
    # one refresh_interval, and the list is still read every interval, and only then.
    interval = 0.4
    server = okx_exchange()
    rest = okx_rest()
    frame = okx_frames("swap_frames.jsonl")[0]

    def reads() -> list[float]:
        return [r.at for r in rest.requests if r.query.get("instType") == "SWAP"]

    async def main():
        run = asyncio.ensure_future(
            okx_collect(server, {"refresh_interval": interval}, payloads=4 * 2 + 1, rest=rest)
        )
        for n in (1, 2, 3):
            await wait_until(lambda n=n: len(server.subscribed) == 2 * n, f"connection {n}")
            await asyncio.to_thread(server.drop)
        await wait_until(lambda: len(server.subscribed) == 8, "connection 4")
        await wait_until(lambda: len(reads()) >= 4, "three reads after the first")
        await asyncio.to_thread(server.publish, "SWAP", frame)
        return await run

    result = asyncio.run(main())

    assert len(server.connections) == 4
    assert result.result.stats["source"].reconnects == 3
    times = reads()
    # Not on connecting (the second connection opened at once after the first drop), not
    # per connection: one schedule, the source's.
    assert all(later - earlier >= interval * 0.95 for earlier, later in itertools.pairwise(times))
    asked = sorted(r.query["instType"] for r in rest.requests)
    assert asked == sorted(["SWAP", "FUTURES"] * (len(asked) // 2))  # both types each time


def test_okx_an_instrument_that_leaves_the_list_keeps_its_contract_value(
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
    bodies = okx_instrument_bodies
    futures = bodies["FUTURES"]["data"]
    rest = okx_rest(bodies)
    server = okx_exchange()
    frames = okx_frames("futures_frames.jsonl")  # BTC-USD-251226 and ETH-USDT-251226

    def futures_reads_since(start: int) -> int:
        return sum(r.query.get("instType") == "FUTURES" for r in rest.requests[start:])

    async def main():
        run = asyncio.ensure_future(
            okx_collect(server, {"refresh_interval": 0.1}, payloads=2 + len(frames), rest=rest)
        )
        await wait_until(lambda: len(server.subscribed) == 2, "the subscription")
        start = len(rest.requests)
        futures.clear()  # delivered: OKX lists neither any more
        # A second read without them began after the first one had ended and been kept.
        await wait_until(lambda: futures_reads_since(start) >= 2, "two reads without them")
        await asyncio.to_thread(server.publish, "FUTURES", *frames)
        return await run

    result = asyncio.run(main())

    assert okx_stored(result.rows) == okx_expected(frames, okx_listed)  # sized as before
    assert [row for row in result.drift if row[0] == "instrument"] == []


@pytest.mark.parametrize(
    "path",
    ["action", "data.details.lever"],
    ids=["frame", "detail"],
)
def test_okx_a_key_no_field_reads_appearing_mid_run_warns_once_is_recorded_and_rows_land(
    path,
    okx_frames,
    okx_exchange,
    okx_collect,
    okx_expected,
    okx_stored,
    okx_listed,
    monkeypatch,
    caplog,
):
    # Every payload examined for keys (the default samples one in 64).
    monkeypatch.setattr(OkxLiquidationsSource, "key_sample", 1)
    first, *rest = okx_frames("swap_frames.jsonl")
    frames = [first, *(with_key(frame, path, "10") for frame in rest)]
    server = okx_exchange({"SWAP": frames})

    result = asyncio.run(okx_collect(server, payloads=2 + len(frames)))

    assert len(warnings_saying(caplog, f"a key no field reads: {path}")) == 1
    assert result.drift == [("key", path, "", len(rest))]
    assert okx_stored(result.rows) == okx_expected(frames, okx_listed)
    assert result.dead_letters.height == 0


def test_okx_an_unlisted_instrument_is_read_for_early_once_then_recorded_as_drift(
    okx_frames,
    okx_exchange,
    okx_collect,
    okx_expected,
    okx_stored,
    okx_listed,
    okx_rest,
    caplog,
    wait_until,
):
    unlisted = okx_frames("unlisted_frames.jsonl")  # NEWCOIN-USDT-SWAP, twice
    listed = okx_frames("swap_frames.jsonl")[:1]
    rest = okx_rest()
    server = okx_exchange()
    drift_said = "symbol 'NEWCOIN-USDT-SWAP', which no instrument list names"

    async def main():
        run = asyncio.ensure_future(
            okx_collect(server, payloads=2 + 2 * len(unlisted) + len(listed), rest=rest)
        )
        await wait_until(lambda: len(server.subscribed) == 2, "the subscription")
        await asyncio.to_thread(server.publish, "SWAP", *unlisted, *unlisted)
        await wait_until(lambda: warnings_saying(caplog, drift_said), "the instrument drift")
        await asyncio.to_thread(server.publish, "SWAP", *listed)
        return await run

    result = asyncio.run(main())

    # Both types before the first decode, and both once early: not once per row.
    assert sorted(r.query["instType"] for r in rest.requests) == ["FUTURES"] * 2 + ["SWAP"] * 2
    assert len(warnings_saying(caplog, drift_said)) == 1
    assert result.drift == [("instrument", "symbol", "NEWCOIN-USDT-SWAP", 2)]
    assert okx_stored(result.rows) == okx_expected(unlisted * 2 + listed, okx_listed)  # unsized


def test_okx_a_pos_side_outside_its_domain_is_recorded_as_value_drift_and_the_row_lands(
    okx_frames, okx_exchange, okx_collect
):
    first = okx_frames("swap_frames.jsonl")[0]
    odd = with_detail(first, posSide="both", ts="1764000000999")
    server = okx_exchange({"SWAP": [first, odd]})

    result = asyncio.run(okx_collect(server, payloads=2 + 2))

    assert result.drift == [("value", "data.details.posSide", "both", 1)]
    assert result.rows.height == 2 and result.dead_letters.height == 0
    (row,) = result.rows.filter(pl.col("position_side").is_null()).to_dicts()
    assert (row["side"], row["quantity"]) == ("sell", 12)  # as sent; no position guessed
