"""decode() on fixture frames directly: no network, no runtime, no tables."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from lakeflow_binance_liquidations import LIQUIDATION, BinanceLiquidationsSource, LiquidationsConfig
from lakeflow_binance_liquidations.source import contract_sizes

from lakeflow import TIMESTAMP, Batch


def decode(payloads: list[bytes], **config: Any):
    source = BinanceLiquidationsSource("test", LiquidationsConfig(**config))
    received_at = pl.Series("received_at", range(len(payloads)), dtype=pl.Int64).cast(TIMESTAMP)
    return source.decode(Batch(payloads=payloads, received_at=received_at))


def test_raw_frames_decode_to_schema_rows(frames, expected):
    payloads = frames("usdm_forceOrder_raw.jsonl")

    decoded = decode(payloads)

    assert decoded.rejects == []
    assert decoded.ignored == 0
    assert decoded.rows.schema == LIQUIDATION.polars_schema
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p) for p in payloads]
    # Each row keeps the receipt time of its own payload.
    assert decoded.rows["received_at"].dt.epoch("us").to_list() == list(range(len(payloads)))


def test_combined_frames_decode_from_under_data(frames, expected):
    payloads = frames("usdm_forceOrder_combined.jsonl")

    decoded = decode(payloads, symbols=["BTCUSDT", "ETHUSDT"])

    assert decoded.rejects == []
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p) for p in payloads]


def test_coinm_frames_keep_the_pair(frames, expected):
    payloads = frames("coinm_forceOrder_raw.jsonl")

    decoded = decode(payloads, market="coinm")

    assert decoded.rejects == []
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p, "coinm") for p in payloads]


def test_coinm_frame_without_pair_is_rejected(frames):
    decoded = decode(frames("usdm_forceOrder_raw.jsonl")[:1], market="coinm")

    assert decoded.rows.height == 0
    assert decoded.rejects == [(0, "missing field 'o.ps'")]


def test_each_bad_frame_is_rejected_with_its_reason(frames):
    payloads = frames("bad_frames.jsonl")

    decoded = decode(payloads)

    assert decoded.rows.height == 0
    assert [index for index, _ in decoded.rejects] == list(range(len(payloads)))
    reasons = [reason for _, reason in decoded.rejects]
    assert reasons[0] == "field 'o.p' is not a valid decimal"
    assert reasons[1].startswith("invalid JSON")
    assert "missing field 'o.s'" in reasons[2] and "missing field 'o.T'" in reasons[2]
    assert reasons[3].startswith("invalid JSON")
    assert reasons[4] == "field 'E' is not a valid epoch time in ms"


def test_control_frames_are_ignored_not_rejected(frames):
    decoded = decode(frames("ws_control_frames.jsonl"))

    assert decoded.ignored == 2
    assert decoded.rejects == []
    assert decoded.rows.height == 0


def test_control_frames_on_a_combined_stream_are_ignored(frames):
    payloads = frames("ws_control_frames.jsonl") + frames("usdm_forceOrder_combined.jsonl")

    decoded = decode(payloads, symbols=["BTCUSDT"])

    assert decoded.ignored == 2
    assert decoded.rejects == []
    assert decoded.rows.height == 4


def test_event_of_another_type_is_rejected(frames):
    other = frames("usdm_forceOrder_raw.jsonl")[0].replace(b'"forceOrder"', b'"aggTrade"')

    decoded = decode([other])

    assert decoded.rows.height == 0
    assert decoded.rejects == [(0, "event type is not 'forceOrder'")]


def test_a_frame_holding_an_array_is_rejected(frames):
    event = frames("usdm_forceOrder_raw.jsonl")[0]

    decoded = decode([b"[" + event + b"]", event])

    assert decoded.rows.height == 1
    assert [index for index, _ in decoded.rejects] == [0]


def test_an_empty_batch_decodes_to_an_empty_frame():
    decoded = decode([])

    assert decoded.rows.schema == LIQUIDATION.polars_schema
    assert decoded.rows.height == 0


# Live 2026 frames: `ps` and `st` inside `o`, keys in any order, integer quantities, and a
# last fill (`l`) larger than the accumulated one (`z`), as Binance has sent them.
LIVE = "usdm_forceOrder_live2026.jsonl"


def test_live_2026_frames_decode_whatever_their_key_order_and_extra_keys(frames, expected):
    payloads = frames(LIVE)

    decoded = decode(payloads)

    assert decoded.rejects == []
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p) for p in payloads]


def test_live_usdm_frames_fill_pair_from_ps(frames):
    decoded = decode(frames(LIVE))

    assert decoded.rows["pair"].to_list() == decoded.rows["symbol"].to_list()


def test_integer_quantities_are_exact(frames):
    decoded = decode(frames(LIVE))

    assert str(decoded.rows["quantity"][1].normalize()) == "3661"


def test_a_last_fill_larger_than_the_accumulated_one_is_kept_as_sent(frames):
    decoded = decode(frames(LIVE))

    third = decoded.rows.row(2, named=True)
    assert str(third["last_filled_quantity"].normalize()) == "4.5"
    assert str(third["filled_quantity"].normalize()) == "3.25"


def test_a_sell_order_liquidates_a_long_and_a_buy_a_short(frames):
    decoded = decode(frames("usdm_forceOrder_raw.jsonl"))

    pairs = set(decoded.rows.select("side", "position_side").iter_rows())
    assert pairs <= {("SELL", "long"), ("BUY", "short")}
    assert len(pairs) == 2


def test_usdm_notional_is_the_filled_quantity_times_average_price_in_the_quote_asset(frames):
    decoded = decode(frames("usdm_forceOrder_raw.jsonl"))

    for row in decoded.rows.to_dicts():
        assert row["base_quantity"] == row["filled_quantity"]
        assert row["notional"] == row["filled_quantity"] * row["average_price"]
        assert row["symbol"].split("_")[0].endswith(row["notional_currency"])


def test_coinm_rows_are_sized_by_the_contract_sizes_the_source_knows(
    frames, expected, exchange_info, coinm_contracts
):
    payloads = frames("coinm_forceOrder_raw.jsonl")
    source = BinanceLiquidationsSource("test", LiquidationsConfig(market="coinm"))
    source.contracts = contract_sizes(json.loads(exchange_info))
    received_at = pl.Series("received_at", range(len(payloads)), dtype=pl.Int64).cast(TIMESTAMP)

    decoded = source.decode(Batch(payloads=payloads, received_at=received_at))

    want = [expected(p, "coinm", coinm_contracts) for p in payloads]
    assert decoded.rows.drop("received_at").to_dicts() == want
