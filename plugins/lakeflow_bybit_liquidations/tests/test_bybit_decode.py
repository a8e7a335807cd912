"""decode() on fixture frames directly: no network, no runtime, no tables."""

from __future__ import annotations

import json
from decimal import Decimal

from lakeflow_bybit_liquidations import LIQUIDATION

from lakeflow import Drift
from lakeflow.runtime.drift import key_paths, unread


def test_every_event_of_a_frame_becomes_one_row_with_exact_decimals(
    frames, instruments, expected, quote_coins, decode
):
    payloads = frames("linear_allLiquidation.jsonl")

    decoded = decode(payloads, instruments("linear"))

    assert decoded.rejects == []
    assert decoded.ignored == 0
    assert decoded.rows.height == 8  # 2 + 1 + 3 + 2 events in 4 frames
    want = [row for payload in payloads for row in expected(payload, "linear", quote_coins)]
    assert decoded.rows.drop("received_at").to_dicts() == want
    first = decoded.rows.row(0, named=True)
    assert first["quantity"] == Decimal("1.25") and first["price"] == Decimal("3011.42")
    assert first["notional"] == Decimal("3764.275")  # 1.25 x 3011.42, exact


def test_rows_are_the_shared_schema_in_its_column_order(frames, instruments, decode):
    decoded = decode(frames("linear_allLiquidation.jsonl"), instruments("linear"))

    assert decoded.rows.schema == LIQUIDATION.polars_schema


def test_each_row_keeps_the_receipt_time_of_its_own_frame(frames, instruments, decode, received_at):
    decoded = decode(frames("linear_allLiquidation.jsonl"), instruments("linear"))

    # Frames 0..3 carry 2, 1, 3 and 2 events.
    frame_of = [0, 0, 1, 2, 2, 2, 3, 3]
    assert decoded.rows["received_at"].to_list() == received_at(4).gather(frame_of).to_list()


def test_buy_is_a_long_position_liquidated_and_sell_a_short_one(frames, decode):
    # Bybit's S is the side of the liquidated *position*, the opposite of Binance's order
    # side; libraries have shipped this inverted (cryptofeed#985).
    decoded = decode(frames("linear_allLiquidation.jsonl"))

    pairs = set(decoded.rows.select("side", "position_side").iter_rows())
    assert pairs == {("Buy", "long"), ("Sell", "short")}


def test_linear_notional_is_quantity_times_price_in_the_quote_coin(frames, instruments, decode):
    decoded = decode(frames("linear_allLiquidation.jsonl"), instruments("linear"))

    rows = {(r["symbol"], r["trade_time"].timestamp()): r for r in decoded.rows.to_dicts()}
    btc = next(r for (symbol, _), r in rows.items() if symbol == "BTCUSDT")
    assert btc["base_quantity"] == Decimal("0.003")
    assert btc["notional"] == Decimal("260.1945")  # 0.003 x 86731.5
    assert btc["notional_currency"] == "USDT"
    usdc = {r["notional_currency"] for (symbol, _), r in rows.items() if symbol == "ETHPERP"}
    assert usdc == {"USDC"}  # a USDC contract: the instrument's quoteCoin, not a guess


def test_linear_currency_is_null_for_a_symbol_the_instrument_list_does_not_give(frames, decode):
    # Before the list is read (its first read failed) or for a symbol listed since: rows
    # are kept, the size is v x p as sent, and the currency is left null, never guessed.
    decoded = decode(frames("linear_allLiquidation.jsonl"))

    assert decoded.rejects == []
    assert decoded.rows.height == 8
    assert decoded.rows["notional_currency"].null_count() == 8
    assert decoded.rows["notional"].null_count() == 0


def test_inverse_contracts_are_usd_and_the_base_quantity_is_notional_over_price(
    frames, instruments, expected, decode
):
    payloads = frames("inverse_allLiquidation.jsonl")

    decoded = decode(payloads, instruments("inverse"), category="inverse")

    assert decoded.rejects == []
    want = [row for payload in payloads for row in expected(payload, "inverse")]
    assert decoded.rows.drop("received_at").to_dicts() == want
    first = decoded.rows.row(0, named=True)
    assert first["market"] == "inverse"
    assert first["notional"] == Decimal(1000) and first["notional_currency"] == "USD"
    assert first["base_quantity"] == Decimal("0.011533958858368752")  # 1000 / 86700.5, to 18 places


def test_a_frame_crossing_midnight_is_partitioned_by_each_trade_time(frames, decode):
    sol = frames("linear_allLiquidation.jsonl")[3]

    decoded = decode([sol])

    assert [str(d) for d in decoded.rows["date"]] == ["2025-11-24", "2025-11-25"]


def test_acks_and_pongs_are_ignored_not_rejected(frames, decode):
    control = frames("ws_control_frames.jsonl")

    decoded = decode(control)

    assert decoded.ignored == len(control)
    assert decoded.rejects == []
    assert decoded.rows.height == 0


def test_a_refused_subscription_is_rejected_with_bybits_message(frames, decode):
    refusal = frames("refused_subscription.json")

    decoded = decode(refusal)

    assert decoded.ignored == 0
    assert decoded.rejects == [
        (
            0,
            "Bybit refused the subscribe request (req_id 2): "
            "error:handler not found,topic:allLiquidation.NOPE",
        )
    ]


def test_each_bad_frame_is_rejected_with_its_reason(frames, decode):
    payloads = frames("bad_frames.jsonl")

    decoded = decode(payloads)

    assert decoded.rows.height == 0
    assert [index for index, _ in decoded.rejects] == list(range(len(payloads)))
    reasons = [reason for _, reason in decoded.rejects]
    assert reasons[0] == "field 'data.p' is not a valid decimal"
    assert reasons[1].startswith("invalid JSON")
    assert reasons[2] == "missing field 'data.T'"
    assert reasons[3] == "topic is not allLiquidation.<symbol>"
    assert reasons[4] == "field 'data.v' has more than 18 decimals"
    assert reasons[5] == "field 'ts' is not a valid epoch time in ms"


def test_one_bad_event_rejects_its_whole_frame_and_spares_the_others(frames, decode):
    # Frame 4 of bad_frames has one good event and one of 19 decimals: kept or rejected
    # whole, so that replaying the dead letter never stores the good event twice.
    good = frames("linear_allLiquidation.jsonl")[0]
    mixed = frames("bad_frames.jsonl")[4]

    decoded = decode([good, mixed])

    assert [index for index, _ in decoded.rejects] == [1]
    assert decoded.rows.height == 2


def test_an_event_of_another_symbol_than_its_topic_is_rejected(decode):
    frame = {
        "topic": "allLiquidation.ETHUSDT",
        "ts": 1764000000500,
        "data": [{"T": 1764000000123, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "2"}],
    }

    decoded = decode([json.dumps(frame).encode()])

    assert decoded.rejects == [(0, "the event's symbol 'data.s' is not the topic's")]


def test_a_frame_with_an_empty_data_array_carries_nothing_and_is_ignored(decode):
    frame = b'{"topic":"allLiquidation.ETHUSDT","type":"snapshot","ts":1764000000500,"data":[]}'

    decoded = decode([frame])

    assert decoded.ignored == 1
    assert decoded.rejects == []
    assert decoded.rows.height == 0


def test_a_side_bybit_does_not_document_is_kept_as_sent_without_a_position_and_is_drift(decode):
    frame = {
        "topic": "allLiquidation.ETHUSDT",
        "type": "snapshot",
        "ts": 1764000002500,
        "data": [{"T": 1764000002123, "s": "ETHUSDT", "S": "Long", "v": "1.25", "p": "3011.42"}],
    }

    decoded = decode([json.dumps(frame).encode()])

    assert decoded.rejects == []
    (row,) = decoded.rows.to_dicts()
    assert (row["side"], row["position_side"]) == ("Long", None)  # never a guess
    assert decoded.drift == [Drift("value", "data.S", "Long", 1, 0)]


def test_every_key_of_the_documented_frames_is_read_or_known_and_no_value_drifts(frames, decode):
    payloads = frames("linear_allLiquidation.jsonl") + frames("inverse_allLiquidation.jsonl")

    decoded = decode(payloads)

    assert decoded.reads is not None
    assert unread(key_paths(payloads), decoded.reads) == []
    assert decoded.drift == []
