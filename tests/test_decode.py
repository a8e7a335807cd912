"""The decoding helpers: one parse per batch, bad payloads isolated, nothing dropped silently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from lakeflow import DECIMAL, TIMESTAMP, Batch, Drift, Field, decode_json, read_ndjson
from lakeflow.decode import INDEX, raw_schema

FIELDS = {
    "symbol": Field("o.s", pl.String()),
    "price": Field("o.p", DECIMAL),
    "time": Field("E", TIMESTAMP, epoch="ms"),
    "note": Field("note", pl.String(), required=False),
}


#: When the test batches arrive, a microsecond apart: the day of the payloads' times.
RECEIVED = datetime(2024, 11, 24, tzinfo=UTC)
#: ``RECEIVED`` in milliseconds, as an exchange sends a time.
RECEIVED_MS = 1732406400000


def batch_of(*payloads: bytes) -> Batch:
    times = [RECEIVED + timedelta(microseconds=i) for i in range(len(payloads))]
    return Batch(payloads=list(payloads), received_at=pl.Series(times, dtype=TIMESTAMP))


def good(i: int) -> bytes:
    return b'{"E": 1732406400%03d, "o": {"s": "S%d", "p": "%d.125"}}' % (i, i, i)


def test_raw_schema_nests_dotted_paths_as_string_leaves():
    schema = raw_schema(FIELDS, extra=["id"])
    assert schema["o"].to_schema()["s"] == pl.String()
    assert schema["E"] == pl.String()
    assert schema["id"] == pl.String()


def test_raw_schema_reads_decimal_leaves_as_categorical_so_that_numbers_are_refused():
    assert raw_schema(FIELDS)["o"] == pl.Struct({"s": pl.String(), "p": pl.Categorical()})


def test_read_ndjson_returns_strings_in_the_decimal_leaves():
    frame, _ = read_ndjson([good(1)], raw_schema(FIELDS))
    assert frame.schema["o"] == pl.Struct({"s": pl.String(), "p": pl.String()})


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
            b'{"E": 1732406400000, "o": {"s": "BTC", "p": "abc"}}',
            b'{"E": "yesterday", "o": {"s": "BTC", "p": "1"}}',
            b'{"E": 1732406400000}',
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
        batch_of(b'{"E": 1732406400000, "o": {"s": "X", "p": "123456789012345678901234.5"}}'),
        FIELDS,
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
    offsets = (decoded.rows["received_at"] - RECEIVED).dt.total_microseconds()
    assert offsets.to_list() == [0, 2]


def test_decode_json_rejects_more_decimals_than_the_column_keeps_exactly():
    decoded = decode_json(
        batch_of(
            b'{"E": 1732406400000, "o": {"s": "X", "p": "1.1234567890123456789"}}',
            b'{"E": 1732406400000, "o": {"s": "X", "p": "1.123456789012345678000"}}',
        ),
        FIELDS,
    )
    assert [i for i, _ in decoded.rejects] == [0]
    assert "more than 18 decimals" in decoded.rejects[0][1]
    assert decoded.rows["price"].to_list() == [Decimal("1.123456789012345678")]


def test_decode_json_derives_columns_from_the_decoded_ones_of_the_rows_it_keeps():
    decoded = decode_json(
        batch_of(good(1), b'{"E": 1732406400000, "o": {"s": "X", "p": "n/a"}}', good(2)),
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


# Plausible times: an epoch time outside the plausibility window never becomes a row.

TRADES = {
    "symbol": Field("o.s", pl.String()),
    "trade_time": Field("o.T", TIMESTAMP, epoch="ms"),
}
DATED = {"date": pl.col("trade_time").dt.date()}


def trade(time: int, symbol: str = "BTC") -> bytes:
    return b'{"o": {"s": "%s", "T": %d}}' % (symbol.encode(), time)


IMPLAUSIBLE = {
    "year 10000": 253402300800000,
    "year 2100": 4102444800000,
    "year 1938": -1000000000000,
    "9e15 ms": 9000000000000000,
    "1e19 ms": 10000000000000000000,
}


@pytest.mark.parametrize("time", IMPLAUSIBLE.values(), ids=IMPLAUSIBLE.keys())
def test_an_implausible_time_is_a_dead_letter_naming_the_field_and_the_value(time):
    decoded = decode_json(batch_of(trade(time)), TRADES, derive=DATED)

    assert decoded.rows.is_empty()
    assert decoded.rejects == [
        (
            0,
            f"field 'o.T' = {time} is not a plausible time "
            "(before 2009-01-01 or later than 2 days after receipt)",
        )
    ]


@pytest.mark.parametrize("time", IMPLAUSIBLE.values(), ids=IMPLAUSIBLE.keys())
def test_an_implausible_time_is_value_drift_of_its_field(time):
    decoded = decode_json(batch_of(trade(RECEIVED_MS), trade(time)), TRADES)

    side = "before 2009-01-01" if time < 0 else "later than 2 days after receipt"
    assert decoded.drift == [Drift("value", "o.T", f"not a plausible time: {side}", 1, 1)]


def test_a_plausible_row_beside_implausible_ones_is_kept_with_its_own_date():
    payloads = [trade(time) for time in IMPLAUSIBLE.values()]

    decoded = decode_json(batch_of(*payloads, trade(RECEIVED_MS, "ETH")), TRADES, derive=DATED)

    assert decoded.rows.select("symbol", "date").rows() == [("ETH", RECEIVED.date())]
    assert [index for index, _ in decoded.rejects] == list(range(len(IMPLAUSIBLE)))


@pytest.mark.parametrize(
    ("unit", "per_ms"), [("s", None), ("ms", 1), ("us", 1_000), ("ns", 1_000_000)]
)
def test_two_days_after_receipt_is_plausible_and_one_unit_more_is_not(unit, per_ms):
    # Received at RECEIVED exactly: the last plausible time is RECEIVED + 2 days.
    last_ms = RECEIVED_MS + 2 * 86_400_000
    last = last_ms // 1000 if per_ms is None else last_ms * per_ms
    fields = {"time": Field("T", TIMESTAMP, epoch=unit)}
    received = pl.Series([RECEIVED, RECEIVED], dtype=TIMESTAMP)

    decoded = decode_json(Batch([b'{"T": %d}' % last, b'{"T": %d}' % (last + 1)], received), fields)

    assert decoded.rows["time"].to_list() == [RECEIVED + timedelta(days=2)]
    assert [index for index, _ in decoded.rejects] == [1]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_time_just_before_2009_is_implausible_in_every_unit(unit):
    start = datetime(2009, 1, 1, tzinfo=UTC)
    microseconds = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    first = {"s": microseconds // 10**6, "ms": microseconds // 1000, "us": microseconds}.get(
        unit, microseconds * 1000
    )
    fields = {"time": Field("T", TIMESTAMP, epoch=unit)}

    decoded = decode_json(batch_of(b'{"T": %d}' % first, b'{"T": %d}' % (first - 1)), fields)

    assert decoded.rows["time"].to_list() == [start]
    assert "is not a plausible time" in dict(decoded.rejects)[1]


def test_a_field_can_set_its_own_plausibility():
    fields = {
        "time": Field(
            "T", TIMESTAMP, epoch="ms", plausible=(datetime(2024, 1, 1), timedelta(hours=1))
        )
    }
    two_hours_late = RECEIVED_MS + 2 * 3_600_000
    from_2023 = 1672531200000

    decoded = decode_json(batch_of(b'{"T": %d}' % two_hours_late, b'{"T": %d}' % from_2023), fields)

    bounds = "(before 2024-01-01 or later than 1 hour after receipt)"
    assert decoded.rejects == [
        (0, f"field 'T' = {two_hours_late} is not a plausible time {bounds}"),
        (1, f"field 'T' = {from_2023} is not a plausible time {bounds}"),
    ]


def test_a_plausibility_side_set_to_none_is_not_checked():
    fields = {"time": Field("T", TIMESTAMP, epoch="ms", plausible=(None, timedelta(days=2)))}

    decoded = decode_json(batch_of(b'{"T": -1000000000000}'), fields)

    assert decoded.rows["time"].dt.year().to_list() == [1938]


def test_plausible_none_switches_the_check_off():
    fields = {"time": Field("T", TIMESTAMP, epoch="ms", plausible=None)}

    decoded = decode_json(batch_of(b'{"T": 4102444800000}'), fields)

    assert decoded.rows["time"].dt.year().to_list() == [2100]
    assert decoded.rejects == []
    assert decoded.drift == []


def test_unchecked_a_time_no_timestamp_holds_is_not_a_valid_epoch_time():
    fields = {"time": Field("T", TIMESTAMP, epoch="ms", plausible=None)}

    decoded = decode_json(
        batch_of(b'{"T": 9000000000000000}'), fields, derive={"date": pl.col("time").dt.date()}
    )

    assert decoded.rejects == [(0, "field 'T' is not a valid epoch time in ms")]


def test_convert_alone_leaves_a_time_past_the_year_9999_null():
    spec = Field("T", TIMESTAMP, epoch="s")
    frame = pl.DataFrame({"T": ["9000000000000000", "1732406400"]})

    converted = frame.select(spec.convert(pl.col("T")))

    assert converted["T"].to_list() == [None, RECEIVED]


def test_an_implausible_time_is_reported_as_such_not_also_as_outside_its_window():
    fields = {
        "time": Field("T", TIMESTAMP, epoch="ms", window=(timedelta(days=1), timedelta(hours=1)))
    }
    decoded = decode_json(batch_of(b'{"T": 4102444800000}'), fields)

    assert [drift.value for drift in decoded.drift] == [
        "not a plausible time: later than 2 days after receipt"
    ]


def test_a_plausible_window_needs_an_epoch_time():
    with pytest.raises(ValueError, match="needs an epoch time"):
        Field("T", pl.String(), plausible=(datetime(2020, 1, 1, tzinfo=UTC), None))
