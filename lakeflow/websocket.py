"""A streaming source base for WebSocket feeds: subclasses say where, the core reads.

It reads with aiohttp, whose frame parser is several times cheaper per message than
the alternatives measured in ``bench/`` (the reader is the hot path of a busy feed),
and asks it for text frames as raw bytes, never decoded to ``str``. It answers server
pings and sends its own (autoping and heartbeat), caps the frame size, waits on the
runtime when the sink is behind, and can roll over to a fresh connection before a
server's scheduled cut (Binance closes every connection after 24 h): the new connection
opens while the old one is still read, and events that arrive on both during the
overlap are kept once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

import aiohttp
from aiohttp import WSMsgType

from lakeflow.secrets import mask_uri
from lakeflow.sources import Feed, StreamingSource


class WebSocketSource(StreamingSource):
    """Reads every frame of ``self.url()`` into the runtime as a raw payload.

    Override :meth:`url`, and :meth:`on_open` if the feed needs a subscribe message.
    ``max_age`` (seconds) rolls to a new connection before the server's cut;
    ``max_size`` caps one frame (a larger one drops the connection, not the process).
    A subclass that overrides :meth:`open` or :meth:`close` calls ``super()``.
    """

    max_size: ClassVar[int] = 1 << 20
    max_age: ClassVar[float | None] = None
    overlap: ClassVar[float] = 2.0
    open_timeout: ClassVar[float] = 10.0
    #: Our own keepalive: a ping every ``ping_interval`` seconds; a server that does not
    #: answer within half of it is dropped and reconnected. Server pings are answered
    #: regardless.
    ping_interval: ClassVar[float] = 20.0

    _session: aiohttp.ClientSession | None = None
    _successor: aiohttp.ClientWebSocketResponse | None = None
    _seen: set[bytes] | None = None

    def url(self) -> str:
        """The WebSocket URL to connect to."""
        raise NotImplementedError

    def describe_url(self) -> str:
        """The URL for logs: credentials masked, a long query (200 streams) shortened."""
        url = mask_uri(self.url())
        return url if len(url) <= 120 else f"{url[:100]}... ({len(url)} chars)"

    async def on_open(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Called on every new connection before reading (send a subscription here)."""

    async def open(self) -> None:
        """One HTTP session for the life of the source; every connection reuses it."""
        self._session = aiohttp.ClientSession(headers={"User-Agent": "lakeflow"})

    async def close(self) -> None:
        """Close the session (and with it any connection still open)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        if self._session is None:
            await self.open()
        assert self._session is not None
        ws = await self._session.ws_connect(
            self.url(),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            autoping=True,
            heartbeat=self.ping_interval,
            max_msg_size=self.max_size,
            decode_text=False,
        )
        await self.on_open(ws)
        return ws

    async def stream(self, feed: Feed) -> None:
        try:
            ws = await asyncio.wait_for(self._connect(), self.open_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            raise ConnectionError(f"handshake refused: HTTP {exc.status} {exc.message}") from None
        feed.connected(self.describe_url())
        loop = asyncio.get_running_loop()
        dedup: set[bytes] | None = None
        try:
            while True:
                roll = None
                if self.max_age is not None:
                    roll = loop.call_later(self.max_age, self._start_roll_over, ws)
                message = await self._read(ws, feed, dedup)
                if roll is not None:
                    roll.cancel()
                successor, self._successor = self._successor, None
                if successor is None:
                    raise _closed_error(ws, message)
                dedup, self._seen = self._seen, None
                ws = successor
                self.log.info("rolled over to a new connection before the server's cut")
        finally:
            await ws.close()

    async def _read(
        self, ws: aiohttp.ClientWebSocketResponse, feed: Feed, dedup: set[bytes] | None
    ) -> aiohttp.WSMessage:
        """Emit every data frame until the connection ends; returns the ending message."""
        receive, emit = ws.receive, feed.emit
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        # After a roll-over, the new connection first repeats what the old one carried
        # during the overlap; drop those, then read at full speed.
        while dedup:
            message = await receive()
            if message.type is not text and message.type is not binary:
                return message
            if message.data in dedup:
                continue
            dedup = None
            emit(message.data)
        while True:
            message = await receive()
            if message.type is text or message.type is binary:
                payload = message.data
                emit(payload)
                if self._seen is not None:
                    self._seen.add(payload)
                if feed.backlogged:
                    await feed.writable()
            else:
                return message

    def _start_roll_over(self, old: aiohttp.ClientWebSocketResponse) -> None:
        task = asyncio.ensure_future(self._roll_over(old))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _roll_over(self, old: aiohttp.ClientWebSocketResponse) -> None:
        """Open the next connection, keep reading the old one ``overlap`` s, then close it."""
        try:
            new = await asyncio.wait_for(self._connect(), self.open_timeout)
        except Exception as exc:
            self.log.warning(
                "could not open the next connection before the cut (%s); "
                "staying on this one until the server closes it",
                exc,
            )
            return
        self._seen = set()
        self._successor = new
        await asyncio.sleep(self.overlap)
        with contextlib.suppress(Exception):
            await old.close()


def _closed_error(ws: aiohttp.ClientWebSocketResponse, message: aiohttp.WSMessage) -> Exception:
    """A ConnectionError that says how the connection ended."""
    if message.type is WSMsgType.ERROR:
        return ConnectionError(f"connection lost: {message.data}")
    code = ws.close_code
    reason = f", {message.extra}" if message.type is WSMsgType.CLOSE and message.extra else ""
    return ConnectionError(f"server closed the connection (code {code}{reason})")
