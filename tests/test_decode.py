"""The decoding helpers: one parse per batch, bad payloads isolated, nothing dropped silently."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from lakeflow import DECIMAL, TIMESTAMP, Batch, Field, decode_json, read_ndjson
from lakeflow.decode import INDEX, raw_schema

FIELDS = {
    "symbol": Field("o.s", pl.String()),
    "price": Field("o.p", DECIMAL),
    "time": Field("E", TIMESTAMP, epoch="ms"),
    "note": Field("note", pl.String(), required=False),
}


def batch_of(*payloads: bytes) -> Batch:
    times = pl.Series(range(len(payloads)), dtype=pl.Int64).cast(TIMESTAMP)
    return Batch(payloads=list(payloads), received_at=times)


def good(i: int) -> bytes:
    return b'{"E": 1732406400%03d, "o": {"s": "S%d", "p": "%d.125"}}' % (i, i, i)


def test_raw_schema_nests_dotted_paths_as_string_leaves():
    schema = raw_schema(FIELDS, extra=["id"])
    assert schema["o"] == pl.Struct({"s": pl.String(), "p": pl.String()})
    assert schema["id"] == pl.String()


def test_read_ndjson_isolates_malformed_payloads_and_keeps_the_rest():
    payloads = [good(i) for i in range(50)]
    payloads[7] = b'{"E": 1, "o": {"s"'
    payloads[31] = b"not json"
    frame, rejects = read_ndjson(payloads, raw_schema(FIELDS))
    assert [i for i, _ in rejects] == [7, 31]
    assert all(reason.startswith("invalid JSON") for _, reason in rejects)
    assert sorted(frame[INDEX].to_list()) == [i for i in range(50) if i not in (7, 31)]


def test_read_ndjson_keeps_a_payload_with_a_raw_newline_whole():
    frame, rejects = read_ndjson(
        [good(1), b'{"E": 2,\n "o": {"s": "X", "p": "1"}}', good(3)], raw_schema(FIELDS)
    )
    assert not rejects
    assert frame.height == 3


def test_read_ndjson_rejects_empty_and_multi_object_payloads():
    _, rejects = read_ndjson([b"", good(1), b"{} {}"], raw_schema(FIELDS))
    assert [i for i, _ in rejects] == [0, 2]


def test_decode_json_converts_decimals_exactly_and_times_to_utc():
    decoded = decode_json(
        batch_of(b'{"E": 1732406400115, "o": {"s": "BTC", "p": "0.00000001"}}'), FIELDS
    )
    row = decoded.rows.row(0, named=True)
    assert row["price"] == Decimal("0.00000001")
    assert row["time"].isoformat() == "2024-11-24T00:00:00.115000+00:00"
    assert row["note"] is None


def test_decode_json_rejects_wrong_types_and_missing_fields_with_reasons():
    decoded = decode_json(
        batch_of(
            good(0),
            b'{"E": 1, "o": {"s": "BTC", "p": "abc"}}',
            b'{"E": "yesterday", "o": {"s": "BTC", "p": "1"}}',
            b'{"E": 1}',
        ),
        FIELDS,
    )
    assert decoded.rows.height == 1
    reasons = dict(decoded.rejects)
    assert "'o.p' is not a valid decimal" in reasons[1]
    assert "'E' is not a valid epoch time in ms" in reasons[2]
    assert "missing field 'o.s'" in reasons[3]


def test_decode_json_rejects_numbers_too_large_for_the_decimal():
    decoded = decode_json(
        batch_of(b'{"E": 1, "o": {"s": "X", "p": "123456789012345678901234.5"}}'), FIELDS
    )
    assert decoded.rows.height == 0
    assert len(decoded.rejects) == 1


def test_decode_json_counts_ignored_control_frames():
    decoded = decode_json(
        batch_of(good(1), b'{"result": null, "id": 1}'),
        FIELDS,
        ignore=pl.col("E").is_null() & pl.col("id").is_not_null(),
        ignore_keys=["id"],
    )
    assert decoded.ignored == 1
    assert decoded.rows.height == 1
    assert not decoded.rejects


def test_decode_json_adds_constants_and_receipt_times_in_payload_order():
    decoded = decode_json(batch_of(good(1), b"bad", good(2)), FIELDS, constants={"exchange": "x"})
    assert decoded.rows["exchange"].to_list() == ["x", "x"]
    assert decoded.rows["received_at"].cast(pl.Int64).to_list() == [0, 2]


def test_decode_json_rejects_more_decimals_than_the_column_keeps_exactly():
    decoded = decode_json(
        batch_of(
            b'{"E": 1, "o": {"s": "X", "p": "1.1234567890123456789"}}',
            b'{"E": 1, "o": {"s": "X", "p": "1.123456789012345678000"}}',
        ),
        FIELDS,
    )
    assert [i for i, _ in decoded.rejects] == [0]
    assert "more than 18 decimals" in decoded.rejects[0][1]
    assert decoded.rows["price"].to_list() == [Decimal("1.123456789012345678")]


def test_decode_json_derives_columns_from_the_decoded_ones_of_the_rows_it_keeps():
    decoded = decode_json(
        batch_of(good(1), b'{"E": 1, "o": {"s": "X", "p": "n/a"}}', good(2)),
        FIELDS,
        derive={"day": pl.col("time").dt.date(), "label": pl.col("symbol") + "!"},
    )
    assert decoded.rows["label"].to_list() == ["S1!", "S2!"]
    assert decoded.rows["day"].cast(pl.String).to_list() == ["2024-11-24", "2024-11-24"]
    assert [i for i, _ in decoded.rejects] == [1]


def test_decode_json_columns_picks_and_orders_the_output():
    decoded = decode_json(
        batch_of(good(1)), FIELDS, constants={"exchange": "x"}, columns=["exchange", "price"]
    )
    assert decoded.rows.columns == ["exchange", "price"]
