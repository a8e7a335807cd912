"""Test kit of the binance_liquidations plugin: fixture frames and a loopback Binance stand-in.

Everything here is offered as pytest fixtures (not imported by module name) so that the
test folders of several plugins can sit side by side in one pytest run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from lakeflow.testing import Collected, collect_async

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


class StandIn:
    """A loopback WebSocket server that plays Binance for one test.

    Connection *k* receives ``connections[k]`` as text frames. Every connection but the
    last is then closed by the server with ``close`` (code, reason); the last stays open
    until the client leaves. A request for any path but ``path`` is refused and recorded
    in ``wrong_path``, which :func:`collect` turns into a test failure at once.
    """

    def __init__(
        self,
        path: str,
        *connections: Sequence[bytes],
        close: tuple[int, str] = (1001, "going away"),
    ) -> None:
        self.path = path
        self.connections = connections
        self.close = close
        self.paths: list[str] = []
        self.wrong_path = asyncio.Event()
        self.url = ""
        self._server: Server | None = None

    async def __aenter__(self) -> StandIn:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"ws://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        index = len(self.paths)
        self.paths.append(ws.request.path if ws.request else "")
        if self.paths[-1] != self.path:
            self.wrong_path.set()
            await ws.close(1008, "unexpected path")
            return
        frames = self.connections[index] if index < len(self.connections) else ()
        for frame in frames:
            await ws.send(frame.decode())  # Binance sends text frames
        if index < len(self.connections) - 1:
            await ws.close(*self.close)
        else:
            await ws.wait_closed()


@pytest.fixture
def frames() -> Callable[[str], list[bytes]]:
    """``frames(name)``: the frames of a file in ``tests/fixtures``."""
    return read_frames


@pytest.fixture
def expected() -> Callable[..., dict[str, Any]]:
    """``expected(frame, market="usdm")``: the row a valid frame must become."""
    return expected_row


@pytest.fixture
def stand_in() -> type[StandIn]:
    """The :class:`StandIn` server class: ``async with stand_in(path, frames) as server``."""
    return StandIn


@pytest.fixture
def collect(tmp_path: Path) -> Callable[..., Awaitable[Collected]]:
    """``await collect(server, config, payloads=n)``: run the real source against the stand-in.

    Runs the real runtime and Delta sink in ``tmp_path`` until ``n`` payloads arrived,
    then returns what was committed. ``ws_url`` always points at the stand-in, so no
    test can reach Binance.
    """

    async def run(server: StandIn, config: dict[str, Any], *, payloads: int) -> Collected:
        collecting = asyncio.ensure_future(
            collect_async(
                SOURCE_TYPE,
                {**config, "ws_url": server.url},
                tmp_path,
                payloads=payloads,
                timeout=COLLECT_TIMEOUT,
            )
        )
        wrong = asyncio.ensure_future(server.wrong_path.wait())
        await asyncio.wait({collecting, wrong}, return_when=asyncio.FIRST_COMPLETED)
        wrong.cancel()
        if not collecting.done():
            collecting.cancel()
            await asyncio.gather(collecting, return_exceptions=True)
            raise AssertionError(f"the source asked for {server.paths[-1]!r}, not {server.path!r}")
        return collecting.result()

    return run
