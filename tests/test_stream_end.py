"""Whatever ends a stream commits what is buffered at once, not at the flush deadline.

Issue of the speed measurements: a disconnect woke the flusher, but a flush already
under way consumed that wake-up, so the tail of a finished stream waited a whole
``flush_interval`` (every reconnect paid it). Pinned on the commit happening before the
deadline: the deadline here is a minute, the run gives up after 20 s.
"""

from __future__ import annotations

import time

import polars as pl
from deltalake import DeltaTable
from lakeflow_testsource import WebSocketTestSource

from harness import Plugin, run
from lakeflow.sinks.delta import DeltaSink
from lakeflow.testing import WebSocketStandIn


class SlowDeltaSink(DeltaSink):
    """The Delta sink, a third of a second slower per commit: a disconnect then always
    lands while a flush is under way, the case that used to lose its wake-up."""

    type = "slow_delta"

    def commit(self, *args, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return super().commit(*args, **kwargs)


def frames(n: int) -> list[str]:
    return [f'{{"n": {k}, "value": "{k}.5"}}' for k in range(1, n + 1)]


def test_the_tail_of_a_finished_stream_commits_at_once(pm, tmp_path):
    pm.register(Plugin(WebSocketTestSource, sinks=[SlowDeltaSink]), name="t")
    # 12 frames: a flush of 10 starts, the last 2 and the close arrive during its commit.
    with WebSocketStandIn(frames(12), [], delay=0.02) as server:
        result, tables = run(
            pm,
            tmp_path,
            '[sink]\ntype = "slow_delta"\nflush_interval = 60\nflush_rows = 10\n'
            f'[sources.s]\ntype = "test_websocket"\nurl = "{server.url}/ws"\n',
            until=lambda stats: stats["s"].rows >= 12,
        )

    assert result.stats["s"].rows == 12
    assert sorted(pl.read_delta(str(tables / "test_records"))["n"]) == list(range(1, 13))


def test_a_drain_commits_in_batches_of_flush_rows(pm, tmp_path):
    pm.register(Plugin(WebSocketTestSource, sinks=[SlowDeltaSink]), name="t")
    with WebSocketStandIn(frames(25), []) as server:
        _result, tables = run(
            pm,
            tmp_path,
            '[sink]\ntype = "slow_delta"\nflush_interval = 60\nflush_rows = 10\n'
            f'[sources.s]\ntype = "test_websocket"\nurl = "{server.url}/ws"\n',
            until=lambda stats: stats["s"].rows >= 25,
        )

    # One data file per commit: how the 25 were cut depends on when the flusher woke,
    # but never more than flush_rows in one.
    added = DeltaTable(str(tables / "test_records")).get_add_actions(flatten=True)
    per_commit = pl.DataFrame(added)["num_records"].to_list()
    assert sum(per_commit) == 25
    assert max(per_commit) <= 10
