"""A streaming source against a misbehaving server: refused, silent. It reconnects, and says so."""

from __future__ import annotations

import socket

import polars as pl
from lakeflow_binance_liquidations import BinanceLiquidationsSource

import lakeflow
from harness import Plugin as _Plugin
from harness import run
from standin import SilentServer


class QuickPings(BinanceLiquidationsSource):
    type = "test_quick_pings"
    ping_interval = 0.2
    ping_timeout = 0.2


class Plugin(_Plugin):
    @lakeflow.hookimpl
    def register_schemas(self, register):
        from lakeflow_binance_liquidations import LIQUIDATION

        register(LIQUIDATION)


def test_server_that_stops_answering_pings_is_dropped_and_reconnected(pm, tmp_path):
    pm.register(Plugin(QuickPings), name="t")
    with SilentServer() as server:
        result, tables = run(
            pm,
            tmp_path,
            f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_pings"\n'
            f'ws_url = "{server.url}"\n',
            until=lambda stats: server.accepted >= 3,
        )
    assert result.stats["s"].reconnects >= 2
    gaps = pl.read_delta(str(tables / "_gaps"))
    assert gaps["reason"].str.contains("keepalive ping timeout").any()
    # The one event each connection carried still landed.
    assert pl.read_delta(str(tables / "liquidations")).height >= 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_connections_back_off_and_are_one_gap(pm, tmp_path):
    pm.register(Plugin(QuickPings), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_pings"\n'
        f'ws_url = "ws://127.0.0.1:{free_port()}"\n',
        until=lambda stats: stats["s"].reconnects >= 3,
    )
    gaps = pl.read_delta(str(tables / "_gaps"))
    # Still disconnected at stop: one gap from the first failure to the stop, not one per try.
    assert gaps.height == 1
    assert "Connect" in gaps["reason"][0] or "refused" in gaps["reason"][0].lower()
