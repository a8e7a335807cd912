"""Decimals sent as JSON numbers: stored from their exact digits, or refused with a reason.

polars reads a JSON number as a 64-bit float, so a decimal read that way would silently
lose what a float cannot hold (``1.00000000000000011`` becomes ``1``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from lakeflow import DECIMAL, TIMESTAMP, Batch, Field, decode_json

FIELDS = {
    "symbol": Field("o.s", pl.String()),
    "price": Field("o.p", DECIMAL),
    "quantity": Field("o.q", DECIMAL, required=False),
    "time": Field("E", TIMESTAMP, epoch="ms", required=False),
    "note": Field("note", pl.String(), required=False),
}
#: An OKX-shaped frame reads its sizes and prices from an array inside an array.
NESTED = {
    "channel": Field("arg.channel", pl.String()),
    "symbol": Field("data.instId", pl.String()),
    "size": Field("data.details.sz", DECIMAL),
    "price": Field("data.details.bkPx", DECIMAL),
}
RECEIVED = datetime(2024, 11, 24, tzinfo=UTC)


def batch(*payloads: bytes) -> Batch:
    received = [RECEIVED + timedelta(microseconds=i) for i in range(len(payloads))]
    return Batch(payloads=list(payloads), received_at=pl.Series(received, dtype=TIMESTAMP))


def order(price: str, **keys: str) -> bytes:
    """A frame whose price is ``price`` written into the JSON as is (a number or not)."""
    extra = "".join(f', "{key}": {value}' for key, value in keys.items())
    return f'{{"o": {{"s": "BTC", "p": {price}{extra}}}}}'.encode()


def prices(*payloads: bytes) -> list[Decimal]:
    return decode_json(batch(*payloads), FIELDS).rows["price"].to_list()


def test_a_decimal_sent_as_a_number_keeps_the_digits_a_float_would_lose():
    assert prices(order("1.00000000000000011")) == [Decimal("1.00000000000000011")]


def test_a_decimal_sent_as_a_number_keeps_all_twenty_integer_digits():
    assert prices(order("12345678901234567890.5")) == [Decimal("12345678901234567890.5")]


@pytest.mark.parametrize("number", ["10.0", "0.5", "1e-7", "1E+2", "-3", "0"])
def test_a_number_a_float_holds_exactly_is_stored_unchanged(number):
    assert prices(order(number)) == [Decimal(number)]


def test_decimals_sent_as_strings_are_stored_as_sent():
    assert prices(order('"95000.10"'), order('"0.000000000000000001"')) == [
        Decimal("95000.10"),
        Decimal("0.000000000000000001"),
    ]


def test_numbers_and_strings_in_one_batch_are_all_exact_and_in_order():
    decoded = decode_json(batch(order('"1.5"'), order("0.30000000000000004"), order('"2"')), FIELDS)

    assert decoded.rows["price"].to_list() == [
        Decimal("1.5"),
        Decimal("0.30000000000000004"),
        Decimal(2),
    ]
    assert decoded.rejects == []


@pytest.mark.parametrize("number", ["1.1234567890123456789", "2.5e-18", "1e-19"])
def test_a_number_with_more_decimals_than_the_column_keeps_is_rejected(number):
    decoded = decode_json(batch(order(number)), FIELDS)

    assert decoded.rows.is_empty()
    assert decoded.rejects == [(0, "field 'o.p' has more than 18 decimals")]


@pytest.mark.parametrize("number", ["123456789012345678901", "1e21", "1e-999", "1e999"])
def test_a_number_no_decimal_column_holds_is_not_a_valid_decimal(number):
    decoded = decode_json(batch(order(number)), FIELDS)

    assert decoded.rejects == [(0, "field 'o.p' is not a valid decimal")]


@pytest.mark.parametrize("value", ["true", '{"x": 1}', "[1.5]"])
def test_a_non_number_in_a_decimal_field_is_rejected_as_not_a_valid_decimal(value):
    decoded = decode_json(batch(order(value), order('"1"')), FIELDS)

    assert decoded.rows["price"].to_list() == [Decimal(1)]
    assert decoded.rejects == [(0, "field 'o.p' is not a valid decimal")]


def test_a_number_written_inside_a_string_is_left_as_sent():
    note = json.dumps('{"p":1.5, "q": 2}')
    frame = f'{{"note": {note}, "o": {{"s": "BTC", "p": 0.1}}}}'.encode()

    decoded = decode_json(batch(frame), FIELDS)

    assert decoded.rows.select("note", "price").rows() == [('{"p":1.5, "q": 2}', Decimal("0.1"))]


def test_numbers_beside_a_decimal_sent_as_a_number_are_read_as_before():
    frame = b'{"E": 1732406400000, "o": {"s": "BTC", "p": 1.00000000000000011}}'

    decoded = decode_json(batch(frame), FIELDS)

    assert decoded.rows.select("time", "price").rows() == [
        (RECEIVED, Decimal("1.00000000000000011"))
    ]


def test_every_decimal_key_sent_as_a_number_is_exact():
    frame = order("1.00000000000000011", q="0.100000000000000001")

    decoded = decode_json(batch(frame), FIELDS)

    assert decoded.rows.select("price", "quantity").rows() == [
        (Decimal("1.00000000000000011"), Decimal("0.100000000000000001"))
    ]


def test_a_malformed_payload_beside_numbers_is_rejected_as_invalid_json_alone():
    decoded = decode_json(batch(order("0.5"), b'{"o": {"s": "BTC", "p": 1.5', order("2")), FIELDS)

    assert decoded.rows["price"].to_list() == [Decimal("0.5"), Decimal(2)]
    assert [index for index, _ in decoded.rejects] == [1]
    assert decoded.rejects[0][1].startswith("invalid JSON")


def test_numbers_inside_exploded_arrays_are_exact():
    frame = (
        b'{"arg": {"channel": "liquidation-orders"}, "data": [{"instId": "BTC-USDT-SWAP", '
        b'"details": [{"sz": 12345678901234567890.5, "bkPx": 1.00000000000000011}, '
        b'{"sz": "2", "bkPx": 1e-7}]}]}'
    )

    decoded = decode_json(batch(frame), NESTED, explode=("data", "data.details"))

    assert decoded.rows.select("size", "price").rows() == [
        (Decimal("12345678901234567890.5"), Decimal("1.00000000000000011")),
        (Decimal(2), Decimal("1e-7")),
    ]
    assert decoded.rejects == []
