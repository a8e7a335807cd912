"""The ``binance_markprice`` example: decode, a loopback stream end to end, its README.

The stream tests use only ``lakeflow.testing``'s fixtures: ``ws_standin`` plays Binance,
``lakeflow_collect`` runs the real runtime and Delta sink and returns the table.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lakeflow_binance_markprice import (
    MARK_PRICE,
    BinanceMarkPriceSource,
    MarkPriceConfig,
    decode_frames,
)

from lakeflow import TIMESTAMP, Batch

HERE = Path(__file__).parent
FRAMES = (HERE / "fixtures" / "usdm_markPrice_arr.jsonl").read_bytes().splitlines()
README = (HERE.parent / "README.md").read_text(encoding="utf-8")
ALL_MARKET = "/market/ws/!markPrice@arr@1s"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: When a test's batch arrives: after every time of its frames (the latest, the merged
#: stream's, are of 2026-12-05), for a time more than 2 days after its receipt is
#: implausible and a dead letter (``lakeflow.decode.PLAUSIBLE``).
RECEIVED = datetime(2026, 12, 6, tzinfo=UTC)


def expected_rows(frames: list[bytes]) -> list[dict[str, Any]]:
    """The rows the frames must become, worked out with the standard library."""
    rows = []
    for update in itertools.chain.from_iterable(json.loads(frame) for frame in frames):
        funded = update["r"] != ""
        event_time = EPOCH + timedelta(milliseconds=update["E"])
        rows.append(
            {
                "exchange": "binance",
                "market": "usdm",
                "symbol": update["s"],
                "mark_price": Decimal(update["p"]),
                "index_price": Decimal(update["i"]),
                "estimated_settle_price": Decimal(update["P"]),
                "funding_rate": Decimal(update["r"]) if funded else None,
                "next_funding_time": (
                    EPOCH + timedelta(milliseconds=update["T"]) if funded else None
                ),
                "event_time": event_time,
                "date": event_time.date(),
            }
        )
    return sorted(rows, key=lambda row: (row["event_time"], row["symbol"]))


def stored(rows: pl.DataFrame) -> list[dict[str, Any]]:
    return rows.drop("received_at").sort("event_time", "symbol").to_dicts()


def received_at(count: int) -> pl.Series:
    """The receipt times of a batch of ``count`` frames: ``RECEIVED``, then 1 µs apart."""
    first = (RECEIVED - EPOCH) // timedelta(microseconds=1)
    return pl.Series(range(first, first + count), dtype=pl.Int64).cast(TIMESTAMP)


def decode(frames: list[bytes], symbols: list[str] | None = None):
    return decode_frames(Batch(payloads=frames, received_at=received_at(len(frames))), symbols)


def test_every_update_of_every_frame_becomes_a_row():
    decoded = decode(FRAMES)

    assert decoded.rejects == []
    assert decoded.rows.schema == MARK_PRICE.polars_schema
    assert stored(decoded.rows) == expected_rows(FRAMES)


def test_each_row_keeps_the_receipt_time_of_its_frame():
    rows = decode(FRAMES).rows

    by_symbol = rows.group_by("event_time").agg(pl.col("received_at").n_unique())
    assert by_symbol["received_at"].to_list() == [1] * by_symbol.height
    assert sorted(rows["received_at"].unique()) == received_at(2).to_list()


def test_a_delivery_contract_has_no_funding():
    row = decode(FRAMES).rows.filter(symbol="BTCUSDT_250328").row(0, named=True)

    assert row["funding_rate"] is None
    assert row["next_funding_time"] is None
    assert row["mark_price"] == Decimal("98950.4")


def test_a_bad_update_is_named_and_the_rest_of_its_frame_is_kept():
    frame = FRAMES[0].replace(b'"p":"3365.21000000"', b'"p":"n/a"')

    decoded = decode([frame])

    assert sorted(decoded.rows["symbol"]) == ["1000PEPEUSDT", "BTCUSDT"]
    assert decoded.rejects == [
        (0, "1 update(s) rejected: ETHUSDT: field 'p' is not a valid decimal")
    ]


@pytest.mark.parametrize(
    "frame",
    [b'[{"e":"markPriceUpdate","E":1', b"not json", b'{"result":null,"id":1}'],
    ids=["truncated", "garbage", "object"],
)
def test_a_frame_that_is_not_an_array_of_updates_is_rejected_whole(frame):
    decoded = decode([FRAMES[0], frame])

    assert decoded.rows.height == 3
    assert [index for index, _ in decoded.rejects] == [1]


def test_an_update_of_another_event_type_is_rejected():
    decoded = decode([FRAMES[1].replace(b'"markPriceUpdate"', b'"forceOrder"', 1)])

    assert decoded.rows["symbol"].to_list() == ["BTCUSDT_250328"]
    assert "BTCUSDT: event type is not 'markPriceUpdate'" in decoded.rejects[0][1]


def test_symbols_keeps_only_those():
    rows = decode(FRAMES, ["ETHUSDT", "BTCUSDT"]).rows

    assert sorted(set(rows["symbol"])) == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize(
    ("config", "url"),
    [
        ({}, "wss://fstream.binance.com/market/ws/!markPrice@arr@1s"),
        ({"speed": "3s"}, "wss://fstream.binance.com/market/ws/!markPrice@arr"),
        ({"ws_url": "ws://127.0.0.1:9/"}, "ws://127.0.0.1:9/market/ws/!markPrice@arr@1s"),
    ],
)
def test_url_follows_speed_and_ws_url(config, url):
    assert BinanceMarkPriceSource("t", MarkPriceConfig(**config)).url() == url


def test_the_stream_lands_every_update_once(ws_standin, lakeflow_collect):
    server = ws_standin(FRAMES, path=ALL_MARKET)

    result = lakeflow_collect(
        "binance_markprice", {"ws_url": server.url}, payloads=len(FRAMES), standins=[server]
    )

    assert stored(result.rows) == expected_rows(FRAMES)
    assert result.rows["date"].unique().to_list() == [date(2024, 11, 24)]
    assert result.dead_letters.is_empty()


def test_a_dropped_connection_is_a_gap_and_nothing_is_lost(ws_standin, lakeflow_collect):
    server = ws_standin(FRAMES[:1], FRAMES[1:], path=ALL_MARKET)

    result = lakeflow_collect(
        "binance_markprice", {"ws_url": server.url}, payloads=len(FRAMES), standins=[server]
    )

    assert server.paths == [ALL_MARKET, ALL_MARKET]
    assert stored(result.rows) == expected_rows(FRAMES)
    assert result.gaps.height == 1


def test_a_broken_frame_is_a_dead_letter_and_the_stream_goes_on(ws_standin, lakeflow_collect):
    server = ws_standin([b"[{oops", *FRAMES], path=ALL_MARKET)

    result = lakeflow_collect(
        "binance_markprice", {"ws_url": server.url}, payloads=len(FRAMES) + 1, standins=[server]
    )

    assert result.dead_letters["payload"].to_list() == [b"[{oops"]
    assert stored(result.rows) == expected_rows(FRAMES)


def test_readme_config_example_is_valid():
    (block,) = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    section = dict(tomllib.loads(block)["sources"]["mark_prices"])

    assert section.pop("type") == BinanceMarkPriceSource.type
    MarkPriceConfig(**section)


def test_readme_lists_every_config_key_and_column():
    keys_then_columns = re.findall(r"^\| `(\w+)` \|", README, flags=re.M)
    keys = keys_then_columns[: len(MarkPriceConfig.model_fields) + 1]

    assert sorted(keys) == sorted(["type", *MarkPriceConfig.model_fields])
    assert keys_then_columns[len(keys) :] == list(MARK_PRICE.columns)


def merged_frame() -> bytes:
    """One second of the merged stream: a USD-M and a COIN-M update, each with its st."""
    return (
        b'[{"e":"markPriceUpdate","E":1796486400000,"s":"BTCUSDT","p":"97012.4","ap":"97010.1",'
        b'"P":"97031.1","i":"97050.5","r":"0.0001","T":1796486400000,"st":1},'
        b'{"e":"markPriceUpdate","E":1796486400000,"s":"BTCUSD_PERP","p":"97001.2","ap":"97000.0",'
        b'"P":"97020.0","i":"97040.1","r":"0.0001","T":1796486400000,"st":2}]'
    )


@pytest.mark.parametrize(
    ("market", "kept"),
    [
        ("usdm", [("BTCUSDT", "usdm")]),
        ("coinm", [("BTCUSD_PERP", "coinm")]),
        ("all", [("BTCUSDT", "usdm"), ("BTCUSD_PERP", "coinm")]),
    ],
)
def test_the_merged_stream_is_routed_by_each_updates_product(market, kept):
    source = BinanceMarkPriceSource("test", MarkPriceConfig(market=market))

    decoded = source.decode(Batch([merged_frame()], received_at(1)))

    assert decoded.rows.select("symbol", "market").rows() == kept
    assert decoded.rejects == []
    assert "st" in (decoded.reads or ()) and "ap" in (decoded.reads or ())
