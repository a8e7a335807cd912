"""A streaming source base for WebSocket feeds: subclasses say where, the core reads.

It answers server pings and sends its own (websockets does both), caps the frame
size, waits on the runtime when the sink is behind, and can roll over to a fresh
connection before a server's scheduled cut (Binance closes every connection after
24 h): the new connection opens while the old one is still read, and events that
arrive on both during the overlap are kept once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from lakeflow.secrets import mask_uri
from lakeflow.sources import Feed, StreamingSource


class WebSocketSource(StreamingSource):
    """Reads every frame of ``self.url()`` into the runtime as a raw payload.

    Override :meth:`url`, and :meth:`on_open` if the feed needs a subscribe message.
    ``max_age`` (seconds) rolls to a new connection before the server's cut;
    ``max_size`` caps one frame (a larger one drops the connection, not the process).
    """

    max_size: ClassVar[int] = 1 << 20
    max_age: ClassVar[float | None] = None
    overlap: ClassVar[float] = 2.0
    open_timeout: ClassVar[float] = 10.0
    #: Our own keepalive: a connection whose server stops answering pings is dropped
    #: after ``ping_interval + ping_timeout`` seconds and reconnected (server pings are
    #: answered regardless).
    ping_interval: ClassVar[float] = 20.0
    ping_timeout: ClassVar[float] = 20.0

    def url(self) -> str:
        """The WebSocket URL to connect to."""
        raise NotImplementedError

    def describe_url(self) -> str:
        """The URL for logs: credentials masked, a long query (200 streams) shortened."""
        url = mask_uri(self.url())
        return url if len(url) <= 120 else f"{url[:100]}... ({len(url)} chars)"

    async def on_open(self, ws: ClientConnection) -> None:
        """Called on every new connection before reading (send a subscription here)."""

    async def _connect(self) -> ClientConnection:
        ws = await connect(
            self.url(),
            max_size=self.max_size,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=2,
            compression=None,
            user_agent_header="lakeflow",
        )
        await self.on_open(ws)
        return ws

    async def stream(self, feed: Feed) -> None:
        ws = await self._connect()
        feed.connected(self.describe_url())
        try:
            while True:
                await self._read(ws, feed)
                ws = await self._roll_over(ws, feed)
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                raise ConnectionError(
                    f"server closed the connection (code {exc.rcvd.code}"
                    f"{', ' + exc.rcvd.reason if exc.rcvd.reason else ''})"
                ) from None
            raise ConnectionError(f"connection lost: {exc}") from None
        finally:
            await ws.close()

    async def _read(self, ws: ClientConnection, feed: Feed) -> None:
        """Read frames until ``max_age`` is reached (returns) or the connection ends (raises)."""
        recv, emit = ws.recv, feed.emit
        deadline = None
        if self.max_age is not None:
            deadline = asyncio.get_running_loop().time() + self.max_age
        # One timeout around the loop, not one per message; cancelling recv loses nothing.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while True:
                    emit(await recv(decode=False))
                    if feed.backlogged:
                        await feed.writable()

    async def _roll_over(self, old: ClientConnection, feed: Feed) -> ClientConnection:
        """Open a new connection, read both for ``overlap`` seconds, keep each event once."""
        new = await self._connect()
        seen: set[bytes] = set()
        pending: list[bytes] = []

        async def drain_old() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    payload = await old.recv(decode=False)
                    feed.emit(payload)
                    seen.add(payload)

        async def fill_new() -> None:
            while True:
                pending.append(await new.recv(decode=False))

        tasks = [asyncio.create_task(drain_old()), asyncio.create_task(fill_new())]
        try:
            done, _ = await asyncio.wait(tasks, timeout=self.overlap, return_when="FIRST_EXCEPTION")
            for task in done:
                if task is tasks[1] and task.exception() is not None:
                    await new.close()
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await old.close()
        for payload in pending:
            if payload not in seen:
                feed.emit(payload)
        self.log.info("rolled over to a new connection before the server's cut")
        return new
