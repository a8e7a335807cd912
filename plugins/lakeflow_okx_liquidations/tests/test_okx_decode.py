"""``decode`` alone, no server: frames in, rows, rejects and ignored counts out."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from lakeflow_okx_liquidations import LIQUIDATION, instrument_table

from lakeflow import Drift
from lakeflow.runtime.drift import key_paths, unread


def frame(*elements: dict) -> bytes:
    """A liquidation-orders frame of SWAP elements, in the documented shape."""
    arg = {"channel": "liquidation-orders", "instType": "SWAP"}
    return json.dumps({"arg": arg, "data": list(elements)}, separators=(",", ":")).encode()


def element(inst_id: str, *details: dict) -> dict:
    family = inst_id.rsplit("-", 1)[0]
    return {
        "instId": inst_id,
        "instFamily": family,
        "uly": family,
        "instType": "SWAP",
        "details": list(details),
    }


def detail(side: str, pos_side: str, price: str, size: str, ts: str = "1764000000777") -> dict:
    return {
        "side": side,
        "posSide": pos_side,
        "bkPx": price,
        "sz": size,
        "bkLoss": "0",
        "ccy": "",
        "ts": ts,
    }


def test_okx_decode_makes_one_row_per_detail_of_every_instrument_exactly(
    okx_frames, okx_decoder, okx_batch, okx_expected, okx_stored, okx_listed
):
    frames = okx_frames("swap_frames.jsonl") + okx_frames("futures_frames.jsonl")

    decoded = okx_decoder().decode(okx_batch(frames))

    assert okx_stored(decoded.rows) == okx_expected(frames, okx_listed)
    assert (decoded.rejects, decoded.ignored) == ([], 0)


def test_okx_decode_rows_have_the_schema_columns_in_order(okx_frames, okx_decoder, okx_batch):
    decoded = okx_decoder().decode(okx_batch(okx_frames("swap_frames.jsonl")))

    assert decoded.rows.schema == LIQUIDATION.polars_schema


def test_okx_decode_of_no_payloads_is_an_empty_frame_of_the_schema(okx_decoder, okx_batch):
    decoded = okx_decoder().decode(okx_batch([]))

    assert decoded.rows.schema == LIQUIDATION.polars_schema and decoded.rows.height == 0


def test_okx_decode_keeps_a_fractional_sz_exactly(okx_decoder, okx_batch):
    payload = frame(element("ETH-USDT-SWAP", detail("buy", "short", "3021.37", "8.55")))

    (row,) = okx_decoder().decode(okx_batch([payload])).rows.to_dicts()

    assert row["quantity"] == Decimal("8.55")
    assert row["base_quantity"] == Decimal("0.855")  # 8.55 contracts of 0.1 ETH
    assert row["notional"] == Decimal("2583.27135")  # 0.855 ETH at 3021.37


def test_okx_decode_sizes_a_linear_swap_in_its_base_and_settle_currency(okx_decoder, okx_batch):
    payload = frame(element("ETH-USDT-SWAP", detail("sell", "long", "3010.5", "12")))

    (row,) = okx_decoder().decode(okx_batch([payload])).rows.to_dicts()

    assert row["base_quantity"] == Decimal("1.2")  # 12 contracts * ctVal 0.1 ETH
    assert row["notional"] == Decimal("3612.6")  # * bkPx 3010.5
    assert row["notional_currency"] == "USDT"  # settleCcy


def test_okx_decode_sizes_an_inverse_swap_in_usd(okx_decoder, okx_batch):
    payload = frame(element("BTC-USD-SWAP", detail("buy", "short", "96500", "150")))

    (row,) = okx_decoder().decode(okx_batch([payload])).rows.to_dicts()

    assert row["notional"] == Decimal(15000)  # 150 contracts * ctVal 100 USD
    assert row["notional_currency"] == "USD"  # ctValCcy
    # 15000 / 96500 = 0.15544041450777202072..., rounded to 18 decimals.
    assert row["base_quantity"] == Decimal("0.155440414507772021")


def test_okx_decode_settles_a_usdc_linear_swap_in_usdc(okx_decoder, okx_batch):
    payload = frame(element("ETH-USDC-SWAP", detail("buy", "net", "3030.1", "250")))

    (row,) = okx_decoder().decode(okx_batch([payload])).rows.to_dicts()

    assert (row["base_quantity"], row["notional_currency"]) == (Decimal("0.25"), "USDC")


@pytest.mark.parametrize(
    ("side", "pos_side", "position"),
    [("sell", "long", "long"), ("buy", "short", "short")],
)
def test_okx_decode_takes_the_position_from_pos_side_in_hedge_mode(
    okx_decoder, okx_batch, side, pos_side, position
):
    payload = frame(element("ETH-USDT-SWAP", detail(side, pos_side, "3010.5", "1")))

    (row,) = okx_decoder().decode(okx_batch([payload])).rows.to_dicts()

    assert (row["side"], row["position_side"]) == (side, position)


@pytest.mark.parametrize(("side", "position"), [("sell", "long"), ("buy", "short")])
def test_okx_decode_takes_the_position_from_the_order_side_in_net_mode(
    okx_decoder, okx_batch, side, position
):
    payload = frame(element("BTC-USDT-SWAP", detail(side, "net", "96990.4", "0.7")))

    (row,) = okx_decoder().decode(okx_batch([payload])).rows.to_dicts()

    assert (row["side"], row["position_side"]) == (side, position)  # side kept as sent


def test_okx_decode_leaves_an_unlisted_instrument_unsized_but_keeps_it(
    okx_frames, okx_decoder, okx_batch
):
    (row,) = okx_decoder().decode(okx_batch(okx_frames("unlisted_frames.jsonl"))).rows.to_dicts()

    assert (row["base_quantity"], row["notional"], row["notional_currency"]) == (None, None, None)
    assert (row["symbol"], row["quantity"], row["price"]) == (
        "NEWCOIN-USDT-SWAP",
        Decimal(1200),
        Decimal("0.04213"),
    )


def test_okx_decode_without_an_instrument_list_stores_every_row_unsized(
    okx_frames, okx_decoder, okx_batch, okx_expected, okx_stored
):
    frames = okx_frames("swap_frames.jsonl")

    decoded = okx_decoder(sized=False).decode(okx_batch(frames))

    assert okx_stored(decoded.rows) == okx_expected(frames, {})
    assert decoded.rejects == []


def test_okx_decode_fills_what_okx_does_not_send_with_null(okx_frames, okx_decoder, okx_batch):
    rows = okx_decoder().decode(okx_batch(okx_frames("swap_frames.jsonl"))).rows
    absent = ["pair", "order_type", "time_in_force", "average_price", "status"]
    absent += ["last_filled_quantity", "filled_quantity", "event_time"]

    assert all(rows[name].null_count() == rows.height for name in absent)


def test_okx_decode_counts_acks_and_pongs_as_ignored_not_rejected(
    okx_frames, okx_decoder, okx_batch
):
    control = [*okx_frames("acks.jsonl"), b"pong", b"pong"]
    data = okx_frames("swap_frames.jsonl")[:1]

    decoded = okx_decoder().decode(okx_batch([control[0], *data, *control[1:]]))

    assert (decoded.ignored, decoded.rejects, decoded.rows.height) == (4, [], 1)


def test_okx_decode_rejects_an_error_event_with_okx_code_and_msg(
    okx_frames, okx_decoder, okx_batch
):
    (error,) = okx_frames("error_frames.jsonl")
    good = okx_frames("swap_frames.jsonl")[:1]

    decoded = okx_decoder().decode(okx_batch([*good, error]))

    msg = json.loads(error)["msg"]
    assert decoded.rejects == [(1, f"OKX error event, code 60012: {msg}")]
    assert decoded.rows.height == 1


def test_okx_decode_ignores_a_service_upgrade_notice(okx_decoder, okx_batch):
    # OKX announces a close for an upgrade, then closes: not data, and not bad data.
    said = "The connection will soon be closed for a service upgrade."
    notice = json.dumps({"event": "notice", "code": "64008", "msg": said, "connId": "a4d3ae55"})

    decoded = okx_decoder().decode(okx_batch([notice.encode()]))

    assert decoded.rejects == []
    assert decoded.ignored == 1


def test_okx_decode_rejects_any_other_okx_event_saying_what_it_said(okx_decoder, okx_batch):
    said = "Channel liquidation-orders is offline."
    event = json.dumps({"event": "channel-conn-count-error", "code": "64003", "msg": said})

    decoded = okx_decoder().decode(okx_batch([event.encode()]))

    assert decoded.rejects == [(0, f"OKX channel-conn-count-error event, code 64003: {said}")]


def test_okx_decode_reads_an_empty_pos_side_as_one_way_mode(okx_decoder, okx_batch):
    frame = {
        "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
        "data": [
            {
                "instId": "ETH-USDT-SWAP",
                "instType": "SWAP",
                "details": [
                    {"side": "buy", "posSide": "", "bkPx": "3000", "sz": "1", "ts": "1764000000777"}
                ],
            }
        ],
    }

    decoded = okx_decoder().decode(okx_batch([json.dumps(frame).encode()]))

    assert decoded.rejects == []
    assert decoded.rows["position_side"].to_list() == ["short"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (0, "field 'data.details.bkPx' is not a valid decimal"),
        (1, "invalid JSON"),
        (2, "field 'data.details.ts' is not a valid epoch time in ms"),
        (3, "missing field 'data.details.sz'"),
        (4, "channel is not 'liquidation-orders'"),
        (5, "instType is not SWAP or FUTURES"),
        (6, "field 'data.details.sz' is not a valid decimal"),
        (7, "invalid JSON"),
    ],
    ids=[
        "price-not-a-number",
        "cut-off",
        "ts-not-epoch",
        "no-sz",
        "other-channel",
        "option",
        "one-bad-detail",
        "not-json",
    ],
)
def test_okx_decode_rejects_a_bad_frame_with_its_reason(
    okx_frames, okx_decoder, okx_batch, line, reason
):
    bad = okx_frames("bad_frames.jsonl")[line]

    decoded = okx_decoder().decode(okx_batch([bad]))

    ((index, why),) = decoded.rejects
    assert index == 0 and reason in why
    assert decoded.rows.height == 0


def test_okx_decode_rejects_a_frame_whole_when_one_of_its_details_is_bad(
    okx_frames, okx_decoder, okx_batch
):
    # The frame's first detail is good: storing it alone would store it twice on replay.
    mixed = okx_frames("bad_frames.jsonl")[6]
    good = okx_frames("swap_frames.jsonl")

    decoded = okx_decoder().decode(okx_batch([mixed, *good]))

    assert [index for index, _ in decoded.rejects] == [0]
    assert decoded.rows.height == 8  # every detail of the good frames, none of the bad one


def test_okx_decode_keeps_a_pos_side_okx_does_not_send_as_drift_without_a_position(
    okx_decoder, okx_batch
):
    payload = frame(element("ETH-USDT-SWAP", detail("sell", "sideways", "3010.5", "1")))

    decoded = okx_decoder().decode(okx_batch([payload]))

    assert decoded.rejects == []
    (row,) = decoded.rows.to_dicts()
    assert (row["side"], row["position_side"]) == ("sell", None)  # not guessed from side
    assert decoded.drift == [Drift("value", "data.details.posSide", "sideways", 1, 0)]


def test_okx_decode_keeps_a_side_okx_does_not_send_as_drift_without_a_position(
    okx_decoder, okx_batch
):
    payload = frame(element("ETH-USDT-SWAP", detail("hold", "net", "3010.5", "1")))

    decoded = okx_decoder().decode(okx_batch([payload]))

    assert decoded.rejects == []
    (row,) = decoded.rows.to_dicts()
    assert (row["side"], row["position_side"]) == ("hold", None)
    assert decoded.drift == [Drift("value", "data.details.side", "hold", 1, 0)]


def test_okx_every_key_of_the_documented_frames_is_read_or_known_and_no_value_drifts(
    okx_frames, okx_decoder, okx_batch
):
    frames = okx_frames("swap_frames.jsonl") + okx_frames("futures_frames.jsonl")

    decoded = okx_decoder().decode(okx_batch(frames))

    assert decoded.reads is not None
    assert unread(key_paths(frames), decoded.reads) == []
    assert decoded.drift == []


def test_okx_decode_leaves_a_size_too_large_for_a_decimal_unsized_instead_of_failing(
    okx_decoder, okx_batch
):
    # 10^19 contracts fit a decimal(38, 18); their value at 3010.5 does not.
    huge = frame(element("ETH-USDT-SWAP", detail("sell", "long", "3010.5", "1" + "0" * 19)))
    good = frame(element("ETH-USDT-SWAP", detail("sell", "long", "3010.5", "12")))

    decoded = okx_decoder().decode(okx_batch([huge, good]))

    rows = decoded.rows.sort("quantity")
    assert rows["notional"].to_list() == [Decimal("3612.6"), None]
    assert rows["base_quantity"].to_list() == [Decimal("1.2"), Decimal(10**18)]
    assert decoded.rejects == []


def test_okx_instrument_table_reads_contract_values_by_inst_id(okx_instrument_bodies):
    table = instrument_table(okx_instrument_bodies["SWAP"])

    by_id = {row["inst_id"]: row for row in table.to_dicts()}
    assert by_id["ETH-USDT-SWAP"]["ct_val"] == Decimal("0.1")
    assert by_id["ETH-USDT-SWAP"]["ct_type"] == "linear"
    assert (by_id["BTC-USD-SWAP"]["ct_val"], by_id["BTC-USD-SWAP"]["ct_val_ccy"]) == (
        Decimal(100),
        "USD",
    )
    assert by_id["ETH-USD-SWAP"]["state"] == "suspend"  # kept: it is still sized


def test_okx_instrument_table_refuses_an_okx_error_answer():
    with pytest.raises(ValueError, match="code 50011: Too Many Requests"):
        instrument_table({"code": "50011", "msg": "Too Many Requests", "data": []})


def test_okx_instrument_table_leaves_out_instruments_without_a_contract_value():
    body = {
        "code": "0",
        "msg": "",
        "data": [{"instId": "X-USDT-SWAP", "ctVal": "", "ctType": "linear"}],
    }

    assert instrument_table(body).height == 0
