"""An upgrade of this plugin that added a column: today's rows land in yesterday's table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import polars as pl
from deltalake import write_deltalake
from lakeflow_binance_liquidations import LIQUIDATION

ALL_MARKET = "/market/ws/!forceOrder@arr"


def test_a_table_written_before_pair_existed_gains_it_with_the_next_commit(
    frames, expected, stand_in, collect, lakeflow_tables
):
    """The scenario of the months-unattended issue: a `liquidations` table without `pair`
    (a plugin version before it) failed every commit with "Cannot cast schema"."""
    old_frame = frames("usdm_forceOrder_raw.jsonl")[0]
    row = expected(old_frame) | {"received_at": datetime(2024, 11, 24, tzinfo=UTC)}
    old = pl.DataFrame([row], schema=LIQUIDATION.polars_schema).drop("pair")
    write_deltalake(str(lakeflow_tables / "liquidations"), old, partition_by=["date"])
    sent = frames("usdm_forceOrder_live2026.jsonl")

    async def main():
        async with stand_in(ALL_MARKET, sent) as server:
            return await collect(server, {}, payloads=len(sent))

    rows = asyncio.run(main()).rows

    assert rows.height == 1 + len(sent)
    # Added columns come last in the table: readers select by name.
    assert sorted(rows.columns) == sorted(LIQUIDATION.columns)
    old_rows = rows.filter(pl.col("trade_time").dt.year() == 2024)
    new_rows = rows.filter(pl.col("trade_time").dt.year() == 2026)
    assert old_rows["pair"].to_list() == [None]
    assert new_rows["pair"].to_list() == new_rows["symbol"].to_list()
