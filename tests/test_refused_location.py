"""HTTP 451 on a WebSocket handshake: the exchange refuses this location, retrying cannot help.

The source stops with one error naming the cause; the other sources go on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import polars as pl
import pytest
from aiohttp import web
from lakeflow_testsource import SequenceSource, WebSocketTestSource

from harness import Plugin, run

BINANCE_451 = (
    '{"code":0,"msg":"Service unavailable from a restricted location according to '
    "'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer "
    'service if you believe you received this message in error."}'
)


class Refusing:
    """An HTTP server that answers every request, handshakes included, with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=self.status, text=BINANCE_451, content_type="application/json")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> Refusing:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def refusing() -> Iterator[Refusing]:
    with Refusing(451) as server:
        yield server


def pipeline(port: int) -> str:
    return (
        "[sink]\nflush_interval = 0.1\n"
        f'[sources.ws]\ntype = "test_websocket"\nurl = "ws://127.0.0.1:{port}/ws"\n'
        '[sources.other]\ntype = "test_sequence"\ncount = 50\n'
    )


def test_a_451_handshake_stops_the_source_without_retrying(pm, tmp_path, refusing, caplog):
    pm.register(Plugin(WebSocketTestSource, SequenceSource), name="t")
    caplog.set_level(logging.ERROR)

    result, _ = run(pm, tmp_path, pipeline(refusing.port), until=lambda s: s["other"].rows >= 50)

    assert result.failed == ["ws"]
    assert refusing.requests == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("HTTP 451" in m and "refuses clients from this location" in m for m in errors)
    assert any("Retrying cannot fix it" in m for m in errors)


def test_the_other_sources_go_on_after_a_refused_location(pm, tmp_path, refusing):
    pm.register(Plugin(WebSocketTestSource, SequenceSource), name="t")

    result, tables = run(
        pm, tmp_path, pipeline(refusing.port), until=lambda s: s["other"].rows >= 50
    )

    assert result.stats["other"].rows == 50
    rows = pl.read_delta(str(tables / "test_records"))
    assert rows["source"].unique().to_list() == ["other"]
