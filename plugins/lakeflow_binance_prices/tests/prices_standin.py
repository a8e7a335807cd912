"""A loopback stand-in for Binance's 24 h ticker endpoints, for the tests.

A real aiohttp server on 127.0.0.1 serving ``/api/v3/ticker/24hr`` (spot) and
``/fapi/v1/ticker/24hr`` (USD-M) from the fixture files. Tests queue replies (status,
headers, body, a stall) that are served in order, one per request; with none queued,
it answers like Binance: the whole fixture, or the tickers ``symbols=[...]`` names
(made up from the first fixture ticker for symbols the fixture lacks). Every request
is recorded.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"
PATHS = {"spot": "/api/v3/ticker/24hr", "usdm": "/fapi/v1/ticker/24hr"}


def fixture(market: str) -> bytes:
    """The fixture body of ``market``'s endpoint (all symbols)."""
    return (FIXTURES / f"{market}_ticker_24hr.json").read_bytes()


def tickers(market: str) -> list[dict]:
    """The fixture's tickers of ``market``, parsed."""
    return json.loads(fixture(market))


@dataclass
class Reply:
    """One programmed answer. ``body=None`` means the normal answer for the request."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (longer than the client's timeout: a stall).
    stall: float = 0.0
    #: Close the connection without answering (a broken connection).
    drop: bool = False


@dataclass(frozen=True)
class Request:
    """One request the stand-in received."""

    market: str
    query: dict[str, str]
    raw_query: str
    peer: tuple[str, int]
    at: float  # wall clock, time.time()

    @property
    def symbols(self) -> list[str] | None:
        """The ``symbols=[...]`` list, parsed, if the request had one."""
        return json.loads(self.query["symbols"]) if "symbols" in self.query else None


class StandIn:
    """The server. ``async with StandIn() as server:`` starts it; ``server.url`` is its root."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    def queue(self, *replies: Reply) -> None:
        """Serve these replies, in order, to the next requests."""
        self.replies.extend(replies)

    async def __aenter__(self) -> StandIn:
        app = web.Application()
        for market, path in PATHS.items():
            app.router.add_get(path, self._handler(market))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()  # ends stalls at once, so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, market: str):
        async def handle(request: web.Request) -> web.Response:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.requests.append(
                Request(
                    market=market,
                    query=dict(request.query),
                    raw_query=request.raw_path.partition("?")[2],
                    peer=tuple(peer[:2]) if peer else ("", 0),
                    at=time.time(),
                )
            )
            reply = self.replies.popleft() if self.replies else Reply()
            if reply.drop and request.transport is not None:
                request.transport.close()
            if reply.stall:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), reply.stall)
            body = reply.body if reply.body is not None else self._answer(market, request)
            headers = {"X-MBX-USED-WEIGHT-1M": "80", "Content-Type": "application/json"}
            headers.update(reply.headers)
            return web.Response(status=reply.status, body=body, headers=headers)

        return handle

    @staticmethod
    def _answer(market: str, request: web.Request) -> bytes:
        """What Binance would send: all tickers, or those ``symbols=[...]`` names."""
        if "symbols" not in request.query:
            return fixture(market)
        known = {t["symbol"]: t for t in tickers(market)}
        template = tickers(market)[0]
        answer = []
        for symbol in json.loads(request.query["symbols"]):
            ticker = copy.deepcopy(known.get(symbol, template))
            ticker["symbol"] = symbol
            answer.append(ticker)
        return json.dumps(answer, separators=(",", ":")).encode()


@contextmanager
def standin_in_thread() -> Iterator[StandIn]:
    """Run a :class:`StandIn` on its own event loop in a background thread (for subprocesses)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = StandIn()
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(timeout=10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
