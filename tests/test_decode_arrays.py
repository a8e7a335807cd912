"""decode_json on frames that carry arrays of events: one row per event, frames whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from lakeflow import DECIMAL, TIMESTAMP, Batch, Field, decode_json

NESTED = {
    "channel": Field("arg.channel", pl.String()),
    "symbol": Field("data.instId", pl.String()),
    "size": Field("data.details.sz", DECIMAL),
    "time": Field("data.details.ts", TIMESTAMP, epoch="ms"),
}
FLAT = {"symbol": Field("data.s", pl.String()), "size": Field("data.v", DECIMAL)}


#: When the test frames arrive, a microsecond apart: the time of their events.
RECEIVED = datetime(2025, 11, 24, 16, tzinfo=UTC)


def batch(*payloads: bytes) -> Batch:
    received = [RECEIVED + timedelta(microseconds=i) for i in range(len(payloads))]
    return Batch(payloads=list(payloads), received_at=pl.Series(received, dtype=TIMESTAMP))


def nested(*instruments: tuple[str, list[str]]) -> bytes:
    """An OKX-shaped frame: instruments, each with an array of details."""
    data = [
        {"instId": inst, "details": [{"sz": sz, "ts": "1764000000777"} for sz in sizes]}
        for inst, sizes in instruments
    ]
    return json.dumps({"arg": {"channel": "liq"}, "data": data}).encode()


def test_every_element_of_an_array_becomes_a_row():
    frame = b'{"data":[{"s":"A","v":"1.25"},{"s":"A","v":"0.4"},{"s":"B","v":"3"}]}'

    decoded = decode_json(batch(frame), FLAT, explode="data")

    assert decoded.rows["symbol"].to_list() == ["A", "A", "B"]
    assert decoded.rows["size"].to_list() == [Decimal("1.25"), Decimal("0.4"), Decimal(3)]
    assert decoded.rejects == []


def test_arrays_inside_arrays_explode_outermost_first_with_the_frames_own_keys():
    frame = nested(("ETH-USDT-SWAP", ["12", "8.55"]), ("BTC-USD-SWAP", ["3"]))

    decoded = decode_json(batch(frame), NESTED, explode=("data", "data.details"))

    rows = decoded.rows.select("channel", "symbol", "size").rows()
    assert rows == [
        ("liq", "ETH-USDT-SWAP", Decimal(12)),
        ("liq", "ETH-USDT-SWAP", Decimal("8.55")),
        ("liq", "BTC-USD-SWAP", Decimal(3)),
    ]


def test_each_row_gets_its_frames_receipt_time():
    decoded = decode_json(
        batch(nested(("A", ["1", "2"])), nested(("B", ["3"]))),
        NESTED,
        explode=("data", "data.details"),
    )

    offsets = (decoded.rows["received_at"] - RECEIVED).dt.total_microseconds()
    assert offsets.to_list() == [0, 0, 1]


def test_one_bad_element_rejects_its_whole_frame_and_only_it():
    bad = nested(("A", ["1", "x"]))
    good = nested(("B", ["2"]))

    decoded = decode_json(batch(bad, good), NESTED, explode=("data", "data.details"))

    assert decoded.rows["symbol"].to_list() == ["B"]
    assert decoded.rejects == [(0, "field 'data.details.sz' is not a valid decimal")]


def test_an_empty_array_is_ignored_not_a_dead_letter():
    decoded = decode_json(
        batch(b'{"data":[]}', b'{"arg":{"channel":"liq"},"data":[{"instId":"A","details":[]}]}'),
        NESTED,
        explode=("data", "data.details"),
    )

    assert decoded.rows.is_empty()
    assert decoded.rejects == []
    assert decoded.ignored == 2


def test_a_frame_without_the_array_is_rejected_unless_ignore_marks_it():
    ack = b'{"op":"subscribe","success":true}'
    stray = b'{"topic":"other"}'

    decoded = decode_json(
        batch(ack, stray),
        FLAT,
        explode="data",
        ignore=pl.col("op").is_not_null(),
        ignore_keys=("op",),
    )

    assert decoded.ignored == 1
    assert [index for index, _ in decoded.rejects] == [1]
    assert "missing field 'data.s'" in decoded.rejects[0][1]


def test_ignored_payloads_are_counted_and_indices_of_the_rest_kept():
    frame = b'{"data":[{"s":"A","v":"1"}]}'

    decoded = decode_json(
        batch(b"pong", b"{broken", frame, b"pong"),
        FLAT,
        explode="data",
        ignore_payloads=(b"pong",),
    )

    assert decoded.ignored == 2
    assert [index for index, _ in decoded.rejects] == [1]
    offsets = (decoded.rows["received_at"] - RECEIVED).dt.total_microseconds()
    assert offsets.to_list() == [2]


def test_an_empty_inner_array_beside_a_full_one_stores_no_empty_row():
    # One instrument with no detail, one with a detail: only the detail is a row, whatever
    # else the batch holds (nothing ignored or rejected beside it).
    frame = nested(("A", []), ("B", ["2"]))

    decoded = decode_json(batch(frame), NESTED, explode=("data", "data.details"))

    assert decoded.rows["symbol"].to_list() == ["B"]
    assert decoded.rejects == []
