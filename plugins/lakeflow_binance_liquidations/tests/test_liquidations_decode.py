"""decode() on fixture frames directly: no network, no runtime, no tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from lakeflow_binance_liquidations import LIQUIDATION, BinanceLiquidationsSource, LiquidationsConfig
from lakeflow_binance_liquidations.source import coinm_instruments

from lakeflow import DECIMAL, Batch, Decoded


@pytest.fixture
def decode(received_at: Callable[[int], pl.Series]) -> Callable[..., Decoded]:
    """``decode(payloads, listed=None, **config)``: decode with a fresh source.

    ``listed`` gives its instrument lists' symbols; the batch is received as ``received_at``
    gives.
    """

    def run(
        payloads: list[bytes], *, listed: dict[str, list[str]] | None = None, **config: Any
    ) -> Decoded:
        source = BinanceLiquidationsSource("test", LiquidationsConfig(**config))
        for product, symbols in (listed or {}).items():
            source.refs.put(product, pl.DataFrame({"symbol": symbols, "contract_size": None}))
        return source.decode(Batch(payloads=payloads, received_at=received_at(len(payloads))))

    return run


def test_raw_frames_decode_to_schema_rows(frames, expected, decode, received_at):
    payloads = frames("usdm_forceOrder_raw.jsonl")

    decoded = decode(payloads)

    assert decoded.rejects == []
    assert decoded.ignored == 0
    assert decoded.rows.schema == LIQUIDATION.polars_schema
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p) for p in payloads]
    # Each row keeps the receipt time of its own payload.
    assert decoded.rows["received_at"].to_list() == received_at(len(payloads)).to_list()


def test_combined_frames_decode_from_under_data(frames, expected, decode):
    payloads = frames("usdm_forceOrder_combined.jsonl")

    decoded = decode(payloads, symbols=["BTCUSDT", "ETHUSDT"])

    assert decoded.rejects == []
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p) for p in payloads]


def test_coinm_frames_keep_the_pair(frames, expected, decode):
    payloads = frames("coinm_forceOrder_raw.jsonl")

    decoded = decode(payloads, market="coinm")

    assert decoded.rejects == []
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p, "coinm") for p in payloads]


def test_a_usdm_frame_on_a_coinm_source_is_left_to_a_usdm_source(frames, decode):
    decoded = decode(frames("usdm_forceOrder_raw.jsonl")[:1], market="coinm")

    assert decoded.rows.height == 0
    assert decoded.rejects == []
    assert decoded.ignored == 1


def test_each_bad_frame_is_rejected_with_its_reason(frames, decode):
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


def test_control_frames_are_ignored_not_rejected(frames, decode):
    decoded = decode(frames("ws_control_frames.jsonl"))

    assert decoded.ignored == 2
    assert decoded.rejects == []
    assert decoded.rows.height == 0


def test_control_frames_on_a_combined_stream_are_ignored(frames, decode):
    payloads = frames("ws_control_frames.jsonl") + frames("usdm_forceOrder_combined.jsonl")

    decoded = decode(payloads, symbols=["BTCUSDT"])

    assert decoded.ignored == 2
    assert decoded.rejects == []
    assert decoded.rows.height == 4


def test_event_of_another_type_is_rejected(frames, decode):
    other = frames("usdm_forceOrder_raw.jsonl")[0].replace(b'"forceOrder"', b'"aggTrade"')

    decoded = decode([other])

    assert decoded.rows.height == 0
    assert decoded.rejects == [(0, "event type is not 'forceOrder'")]


def test_a_frame_holding_an_array_is_rejected(frames, decode):
    event = frames("usdm_forceOrder_raw.jsonl")[0]

    decoded = decode([b"[" + event + b"]", event])

    assert decoded.rows.height == 1
    assert [index for index, _ in decoded.rejects] == [0]


def test_an_empty_batch_decodes_to_an_empty_frame(decode):
    decoded = decode([])

    assert decoded.rows.schema == LIQUIDATION.polars_schema
    assert decoded.rows.height == 0


# Live 2026 frames: `ps` and `st` inside `o`, keys in any order, integer quantities, and a
# last fill (`l`) larger than the accumulated one (`z`), as Binance has sent them.
LIVE = "usdm_forceOrder_live2026.jsonl"


def live_symbols(payloads: list[bytes]) -> list[str]:
    return [json.loads(p)["o"]["s"] for p in payloads]


def test_live_2026_frames_decode_whatever_their_key_order_and_extra_keys(frames, expected, decode):
    payloads = frames(LIVE)

    decoded = decode(payloads, listed={"usdm": live_symbols(payloads)})

    assert decoded.rejects == []
    assert decoded.rows.drop("received_at").to_dicts() == [expected(p) for p in payloads]


def with_symbol_type(frame: bytes, value: int) -> bytes:
    event = json.loads(frame)
    event["o"]["st"] = value
    return json.dumps(event).encode()


def test_a_symbol_type_outside_1_and_2_is_drift_and_the_list_places_the_event(frames, decode):
    payloads = [with_symbol_type(p, 0) for p in frames(LIVE)]

    decoded = decode(payloads, listed={"usdm": live_symbols(payloads)})

    zero = [d for d in decoded.drift if d.path == "o.st"]
    assert [(d.kind, d.value, d.count) for d in zero] == [("value", "0", len(payloads))]
    assert set(decoded.rows["market"]) == {"usdm"}


def test_an_unknown_symbol_type_on_an_unlisted_symbol_is_kept_unsized(frames, decode):
    frame = with_symbol_type(frames(LIVE)[0], 3)  # BTCUSDT, and no list read

    decoded = decode([frame])

    row = decoded.rows.row(0, named=True)
    assert (row["market"], row["notional"], row["base_quantity"]) == (None, None, None)


def test_live_usdm_frames_fill_pair_from_ps(frames, decode):
    decoded = decode(frames(LIVE))

    assert decoded.rows["pair"].to_list() == decoded.rows["symbol"].to_list()


def test_integer_quantities_are_exact(frames, decode):
    decoded = decode(frames(LIVE))

    assert str(decoded.rows["quantity"][1].normalize()) == "3661"


def test_a_last_fill_larger_than_the_accumulated_one_is_kept_as_sent(frames, decode):
    decoded = decode(frames(LIVE))

    third = decoded.rows.row(2, named=True)
    assert str(third["last_filled_quantity"].normalize()) == "4.5"
    assert str(third["filled_quantity"].normalize()) == "3.25"


def test_a_sell_order_liquidates_a_long_and_a_buy_a_short(frames, decode):
    decoded = decode(frames("usdm_forceOrder_raw.jsonl"))

    pairs = set(decoded.rows.select("side", "position_side").iter_rows())
    assert pairs <= {("SELL", "long"), ("BUY", "short")}
    assert len(pairs) == 2


def test_usdm_notional_is_the_filled_quantity_times_average_price_in_the_quote_asset(
    frames, decode
):
    decoded = decode(frames("usdm_forceOrder_raw.jsonl"))

    for row in decoded.rows.to_dicts():
        assert row["base_quantity"] == row["filled_quantity"]
        assert row["notional"] == row["filled_quantity"] * row["average_price"]
        assert row["symbol"].split("_")[0].endswith(row["notional_currency"])


def test_coinm_rows_are_sized_by_the_contract_sizes_the_source_knows(
    frames, expected, exchange_info, coinm_contracts, received_at
):
    payloads = frames("coinm_forceOrder_raw.jsonl")
    source = BinanceLiquidationsSource("test", LiquidationsConfig(market="coinm"))
    source.refs.put("coinm", coinm_instruments(json.loads(exchange_info)))

    decoded = source.decode(Batch(payloads=payloads, received_at=received_at(len(payloads))))

    want = [expected(p, "coinm", coinm_contracts) for p in payloads]
    assert decoded.rows.drop("received_at").to_dicts() == want


# Since 2026-06-30 the all-market stream of either host carries both products.
MERGED = "merged_forceOrder_raw.jsonl"


def merged_products(payloads: list[bytes]) -> list[str]:
    return [{1: "usdm", 2: "coinm"}[json.loads(p)["o"]["st"]] for p in payloads]


def test_all_keeps_both_products_each_sized_by_its_own_rules(
    frames, expected, exchange_info, coinm_contracts, received_at
):
    payloads = frames(MERGED)
    source = BinanceLiquidationsSource("test", LiquidationsConfig(market="all"))
    source.refs.put("coinm", coinm_instruments(json.loads(exchange_info)))

    decoded = source.decode(Batch(payloads=payloads, received_at=received_at(len(payloads))))

    want = [expected(p, contracts=coinm_contracts) for p in payloads]
    assert decoded.rows.drop("received_at").to_dicts() == want
    assert decoded.rows["market"].to_list() == merged_products(payloads)


@pytest.mark.parametrize("market", ["usdm", "coinm"])
def test_a_one_product_source_keeps_its_product_and_leaves_the_other(frames, market, decode):
    payloads = frames(MERGED)
    products = merged_products(payloads)

    decoded = decode(payloads, market=market)

    assert decoded.rows["market"].to_list() == [p for p in products if p == market]
    assert decoded.ignored == sum(p != market for p in products)
    assert decoded.rejects == []


def test_a_coinm_event_on_the_usdm_host_is_never_sized_as_usdm(received_at):
    # The case: 3 contracts of BTCUSD_200925 (100 USD each) read 28,058 as USD-M.
    frame = (
        b'{"e":"forceOrder","E":1796486401533,"o":{"s":"BTCUSD_200925","S":"SELL",'
        b'"o":"LIMIT","f":"IOC","q":"3","p":"9352.6","ap":"9352.6","X":"FILLED","l":"3",'
        b'"z":"3","T":1796486400529,"ps":"BTCUSD","st":2}}'
    )
    source = BinanceLiquidationsSource("test", LiquidationsConfig(market="all"))
    sizes = pl.DataFrame({"symbol": ["BTCUSD_200925"], "contract_size": ["100"]})
    source.refs.put("coinm", sizes.with_columns(pl.col("contract_size").cast(DECIMAL)))

    row = source.decode(Batch([frame], received_at(1))).rows.row(0, named=True)

    assert (row["market"], row["notional"], row["notional_currency"]) == (
        "coinm",
        Decimal(300),
        "USD",
    )


def test_the_symbol_type_is_read_at_the_top_level_too(frames, decode):
    # Binance's SDK models put st and ps beside e/E/o; live frames put them inside o.
    event = json.loads(frames(MERGED)[1])  # BTCUSD_PERP, st 2
    event["st"], event["ps"] = event["o"].pop("st"), event["o"].pop("ps")

    decoded = decode([json.dumps(event).encode()], market="all")

    assert decoded.rows.row(0, named=True)["market"] == "coinm"
    assert decoded.rows.row(0, named=True)["pair"] == "BTCUSD"


@pytest.mark.parametrize(
    ("symbol", "market"),
    [("BTCUSDT_260327", "usdm"), ("BTCUSD_260327", "coinm"), ("ETHUSD_PERP", "coinm")],
)
def test_a_frame_from_before_the_merge_goes_by_the_symbols_shape(symbol, market, decode):
    # "_" is in USD-M delivery symbols too: it alone does not mark COIN-M.
    frame = (
        b'{"e":"forceOrder","E":1768435200113,"o":{"s":"%s","S":"SELL","o":"LIMIT","f":"IOC",'
        b'"q":"1","p":"1","ap":"1","X":"FILLED","l":"1","z":"1","T":1768435200111}}'
        % symbol.encode()
    )

    decoded = decode([frame], market="all")

    assert decoded.rows["market"].to_list() == [market]
