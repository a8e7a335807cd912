"""Loopback stand-in servers: play an exchange's WebSocket feed or REST endpoint in a test.

Both are real servers on ``127.0.0.1`` and a free port (``websockets`` and ``aiohttp``),
so a source talks to them exactly as to the exchange. Each can run two ways:

- on its own thread and event loop: ``with WebSocketStandIn(frames) as server:`` or
  ``server.start()`` / ``server.stop()``. Works from a plain (sync) test, beside a
  blocking :func:`lakeflow.testing.collect`, and from async tests too;
- on the running event loop: ``async with WebSocketStandIn(frames) as server:``.

Everything a stand-in receives is recorded on it for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve

#: Seconds to wait for a stand-in to start or stop before giving up.
START_TIMEOUT = 10.0


class _StandIn:
    """Start/stop plumbing shared by the stand-ins: on this loop, or on a thread of its own."""

    url: str = ""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    def start(self) -> Any:
        """Serve from a background thread with its own event loop; returns the stand-in."""
        if self._thread is not None:
            raise RuntimeError("this stand-in is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=type(self).__name__, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(START_TIMEOUT)
        return self

    def stop(self) -> None:
        """Stop a stand-in started with :meth:`start` (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(START_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(START_TIMEOUT)
            loop.close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class WebSocketStandIn(_StandIn):
    """A WebSocket server that sends each connection a list of payloads.

    Connection *k* receives ``connections[k]`` as text frames (``bytes`` are sent as
    text too, as exchanges do; ``binary=True`` sends binary frames), ``delay`` seconds
    apart. Then every connection but the last is closed by the server with ``close``
    (code, reason): a drop the source must reconnect after. The last connection, and
    any beyond the list (which receive nothing), stay open until the client leaves,
    unless ``close_last`` is true.

    ``path`` (``"/ws/btcusdt@trade"``, query included) is the only path served; a
    request for another is refused and recorded in ``unexpected``, which
    :func:`~lakeflow.testing.collect_async` turns into a failure at once when the
    stand-in is passed as ``standins=[server]``. ``ping_interval`` makes the server
    send pings that far apart and drop a client that does not answer within as long
    (the source's keepalive is tested by a silent server instead).

    Recorded: ``paths`` (the path of every connection, in order), ``received`` (what the
    client sent: subscription requests), ``sent`` (frames sent, all connections).
    ``url`` is ``ws://127.0.0.1:PORT``; add the path your source appends.
    """

    def __init__(
        self,
        *connections: Sequence[bytes | str],
        path: str | None = None,
        close: tuple[int, str] = (1001, "going away"),
        close_last: bool = False,
        binary: bool = False,
        delay: float = 0.0,
        ping_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.connections = [list(frames) for frames in connections] or [[]]
        self.path = path
        self.close = close
        self.close_last = close_last
        self.binary = binary
        self.delay = delay
        self.ping_interval = ping_interval
        self.paths: list[str] = []
        self.unexpected: list[str] = []
        self.received: list[bytes | str] = []
        self.sent = 0
        self._server: Server | None = None

    async def _start(self) -> None:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            compression=None,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"ws://{host}:{port}"

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _read(self, ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            async for message in ws:
                self.received.append(message)

    async def _handle(self, ws: ServerConnection) -> None:
        index = len(self.paths)
        path = ws.request.path if ws.request else ""
        self.paths.append(path)
        if self.path is not None and path != self.path:
            self.unexpected.append(path)
            await ws.close(1008, f"unexpected path; this stand-in serves {self.path}")
            return
        reader = asyncio.ensure_future(self._read(ws))
        frames = self.connections[index] if index < len(self.connections) else []
        try:
            for frame in frames:
                if self.binary:
                    await ws.send(frame.encode() if isinstance(frame, str) else frame)
                else:
                    await ws.send(frame.decode() if isinstance(frame, bytes) else frame)
                self.sent += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
            last = index >= len(self.connections) - 1
            if not last or self.close_last:
                await ws.close(*self.close)
            await reader  # until the client (or the close handshake) ends the connection
        except Exception:
            reader.cancel()  # the client left mid-way: nothing more to send


@dataclass
class Response:
    """One answer of an :class:`HttpStandIn`.

    ``body`` is sent as is when it is ``bytes`` or ``str``; anything else is sent as
    JSON (with ``Content-Type: application/json``). ``delay`` waits that many seconds
    before answering (longer than the client's timeout: a stall); ``drop`` closes the
    connection without answering (a broken connection).
    """

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass(frozen=True)
class Request:
    """One request an :class:`HttpStandIn` received."""

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]
    #: Wall-clock time it arrived, ``time.time()``.
    at: float


#: What a response may be given as: a :class:`Response`, or just its body.
ResponseLike = Response | bytes | str | list[Any] | dict[str, Any]
#: A response, or a function of the request that returns one.
Answer = ResponseLike | Callable[[Request], ResponseLike]


def as_response(value: ResponseLike) -> Response:
    """A :class:`Response` from a response or a bare body (status 200)."""
    return value if isinstance(value, Response) else Response(body=value)


class HttpStandIn(_StandIn):
    """An HTTP server that answers requests with a sequence of responses.

    Request *k* gets ``responses[k]``; more can be added while it runs with
    :meth:`queue`. When none is left, ``then`` answers. Each is a :class:`Response`, a
    bare body (status 200; not ``bytes``/``str`` means JSON), or a function of the
    :class:`Request` returning one (to compute an answer from the query). Without
    ``then``, the last response is served again, so one response serves any number of
    polls. ``headers`` are added to every response (a rate-limit header, say).

    ``path`` (without query) is the only path served; a request for another gets 404
    and is recorded in ``unexpected`` (see :class:`WebSocketStandIn`). Every request
    is recorded in ``requests``. ``url`` is ``http://127.0.0.1:PORT``.
    """

    def __init__(
        self,
        responses: Iterable[Answer] = (),
        *,
        then: Answer | None = None,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.responses: deque[Answer] = deque(responses)
        self.then = then
        self.path = path
        self.headers = dict(headers or {})
        self.requests: list[Request] = []
        self.unexpected: list[str] = []
        self._last: Answer | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    def queue(self, *responses: Answer) -> None:
        """Serve these responses, in order, to the next requests."""
        self.responses.extend(responses)

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # ends delays at once, so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next(self, request: Request) -> Response:
        answer: Answer | None
        if self.responses:
            answer = self.responses.popleft()
        elif self.then is not None:
            answer = self.then
        else:
            answer = self._last
        if answer is None:
            return Response(404, b"the stand-in has no response for this request")
        self._last = answer
        return as_response(answer(request) if callable(answer) else answer)

    async def _handle(self, http: web.Request) -> web.StreamResponse:
        peer = http.transport.get_extra_info("peername") if http.transport else None
        request = Request(
            method=http.method,
            path=http.path,
            query=dict(http.query),
            raw_query=http.raw_path.partition("?")[2],
            headers=dict(http.headers),
            body=await http.read(),
            peer=tuple(peer[:2]) if peer else ("", 0),
            at=time.time(),
        )
        self.requests.append(request)
        if self.path is not None and request.path != self.path:
            self.unexpected.append(request.path)
            return web.Response(status=404, text=f"this stand-in serves {self.path}")
        response = self._next(request)
        if response.drop and http.transport is not None:
            http.transport.close()
        if response.delay and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), response.delay)
        headers = {**self.headers, **response.headers}
        body = response.body
        if not isinstance(body, bytes | str):
            body = json.dumps(body, separators=(",", ":"))
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        return web.Response(status=response.status, body=body, headers=headers)
