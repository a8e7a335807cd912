"""Test kit of the binance_liquidations plugin: fixture frames, expected rows, and
``lakeflow.testing``'s WebSocket stand-in and collector bound to this source.

Everything here is offered as pytest fixtures (not imported by module name) so that the
test folders of several plugins can sit side by side in one pytest run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lakeflow.testing import Collected, Collector, WebSocketStandIn

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE_TYPE = "binance_liquidations"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Seconds a run may take before collect_async gives up (a hang, not a slow machine).
COLLECT_TIMEOUT = 20.0


def read_frames(name: str) -> list[bytes]:
    """The frames of a fixture file, one per line, byte for byte."""
    return (FIXTURES / name).read_bytes().splitlines()


def utc_ms(ms: int) -> datetime:
    """A Binance millisecond time as a UTC datetime (exact: no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


def expected_row(frame: bytes, market: str = "usdm") -> dict[str, Any]:
    """The table row a forceOrder frame must become, worked out with the standard library."""
    event = json.loads(frame)
    event = event.get("data", event)
    order = event["o"]
    trade_time = utc_ms(order["T"])
    return {
        "exchange": "binance",
        "market": market,
        "symbol": order["s"],
        "pair": order.get("ps"),
        "side": order["S"],
        "order_type": order["o"],
        "time_in_force": order["f"],
        "quantity": Decimal(order["q"]),
        "price": Decimal(order["p"]),
        "average_price": Decimal(order["ap"]),
        "status": order["X"],
        "last_filled_quantity": Decimal(order["l"]),
        "filled_quantity": Decimal(order["z"]),
        "trade_time": trade_time,
        "event_time": utc_ms(event["E"]),
        "date": date(trade_time.year, trade_time.month, trade_time.day),
    }


@pytest.fixture
def frames() -> Callable[[str], list[bytes]]:
    """``frames(name)``: the frames of a file in ``tests/fixtures``."""
    return read_frames


@pytest.fixture
def expected() -> Callable[..., dict[str, Any]]:
    """``expected(frame, market="usdm")``: the row a valid frame must become."""
    return expected_row


@pytest.fixture
def stand_in() -> Callable[..., WebSocketStandIn]:
    """``async with stand_in(path, frames, ...) as server``: Binance on 127.0.0.1.

    A :class:`lakeflow.testing.WebSocketStandIn` that serves only ``path``. Connection
    *k* receives the *k*-th list of frames; every connection but the last is then
    closed with ``close`` (code, reason), like Binance dropping a client.
    """

    def make(
        path: str,
        *connections: Sequence[bytes],
        close: tuple[int, str] = (1001, "going away"),
    ) -> WebSocketStandIn:
        return WebSocketStandIn(*connections, path=path, close=close)

    return make


@pytest.fixture
def collect(lakeflow_collect: Collector) -> Callable[..., Awaitable[Collected]]:
    """``await collect(server, config, payloads=n)``: run the real source against the stand-in.

    ``lakeflow_collect`` (from ``lakeflow.testing``) runs the real runtime and Delta sink
    in ``tmp_path`` until ``n`` payloads arrived, then returns what was committed.
    ``ws_url`` always points at the stand-in, so no test can reach Binance, and a request
    for the wrong stream path fails the test at once.
    """

    async def run(server: WebSocketStandIn, config: dict[str, Any], *, payloads: int) -> Collected:
        return await lakeflow_collect.run_async(
            SOURCE_TYPE,
            {**config, "ws_url": server.url},
            payloads=payloads,
            timeout=COLLECT_TIMEOUT,
            standins=[server],
        )

    return run
