"""A streaming source against a misbehaving server: refused, silent. It reconnects, and says so.

The in-test ``test_websocket`` source, with the timings of the core's WebSocketSource
(keepalive, roll-over) shortened to fractions of a second.
"""

from __future__ import annotations

import polars as pl
from lakeflow_testsource import WebSocketTestSource

from harness import Plugin, free_port, run
from standin import SilentServer, StreamStandIn


class QuickPings(WebSocketTestSource):
    type = "test_quick_pings"
    ping_interval = 0.2


def test_server_that_stops_answering_pings_is_dropped_and_reconnected(pm, tmp_path):
    pm.register(Plugin(QuickPings), name="t")
    with SilentServer() as server:
        result, tables = run(
            pm,
            tmp_path,
            f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_pings"\n'
            f'url = "{server.url}"\n',
            until=lambda stats: server.accepted >= 3,
        )
    assert result.stats["s"].reconnects >= 2
    gaps = pl.read_delta(str(tables / "_gaps"))
    assert gaps["reason"].str.contains("No PONG received").any()
    # The one event each connection carried still landed.
    assert pl.read_delta(str(tables / "test_records")).height >= 2


def test_refused_connections_back_off_and_are_one_gap(pm, tmp_path):
    pm.register(Plugin(QuickPings), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_pings"\n'
        f'url = "ws://127.0.0.1:{free_port()}"\n',
        until=lambda stats: stats["s"].reconnects >= 3,
    )
    gaps = pl.read_delta(str(tables / "_gaps"))
    # Still disconnected at stop: one gap from the first failure to the stop, not one per try.
    assert gaps.height == 1
    assert "Connect" in gaps["reason"][0] or "refused" in gaps["reason"][0].lower()


class QuickRoll(WebSocketTestSource):
    type = "test_quick_roll"
    max_age = 0.6
    overlap = 0.2


def test_roll_over_before_the_cut_keeps_every_event_once_without_a_gap(pm, tmp_path):
    pm.register(Plugin(QuickRoll), name="t")
    with StreamStandIn(rate=500, broadcast=True) as server:
        result, tables = run(
            pm,
            tmp_path,
            f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_roll"\n'
            f'url = "{server.url}"\n',
            until=lambda stats: len(server.connections) >= 4,
        )
    rows = pl.read_delta(str(tables / "test_records"))
    seen = rows["n"].sort()
    assert seen.n_unique() == rows.height, "an event carried by both connections landed twice"
    first = server.connections[0].sent[0]
    # Every event from the first connection on, without a hole across three roll-overs.
    assert seen.to_list() == list(range(first, first + rows.height))
    assert result.stats["s"].reconnects == 0
    assert not (tables / "_gaps").exists()
