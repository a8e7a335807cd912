"""Loopback WebSocket servers for the in-test ``test_websocket`` source, numbering every
event they send.

They run in a thread with their own event loop, so that they outlive the collectors a
test starts and kills. Event ``k`` is the test record with ``n = k``, so a row in the
table says exactly which event it was.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Self

from websockets.asyncio.server import ServerConnection, serve

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def event(k: int) -> str:
    """The ``k``-th event: a ``test_record`` frame (``test_websocket``) whose ``n`` is ``k``."""
    return f'{{"n": {k}, "value": "{k}.{k % 1_000_000:06d}"}}'


@dataclass
class Connection:
    """What one client connection was sent: event numbers and when each was sent."""

    sent: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


class StreamStandIn:
    """Streams numbered events at ``rate`` per second to every client, forever."""

    def __init__(self, rate: float = 1000.0, broadcast: bool = False) -> None:
        self.rate = rate
        # Broadcast: like an exchange's feed, every connection carries the same events while open
        # (event k is due at k / rate); otherwise each event goes to one connection.
        self.broadcast = broadcast
        self._t0 = time.monotonic()
        self.connections: list[Connection] = []
        self._next = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> StreamStandIn:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handle(self, ws: ServerConnection) -> None:
        record = Connection()
        self.connections.append(record)
        if self.broadcast:
            await self._broadcast(ws, record)
            return
        interval = 1 / self.rate
        start = time.monotonic()
        sent = 0
        try:
            while True:
                # Send in small bursts to hold the rate without a sleep per event.
                due = int((time.monotonic() - start) / interval) - sent
                for _ in range(max(due, 0)):
                    with self._lock:
                        k = self._next
                        self._next += 1
                    await ws.send(event(k))
                    record.sent.append(k)
                    record.times.append(time.monotonic())
                    sent += 1
                await asyncio.sleep(0.005)
        except Exception:
            return

    async def _broadcast(self, ws: ServerConnection, record: Connection) -> None:
        k = int((time.monotonic() - self._t0) * self.rate)
        try:
            while True:
                due = int((time.monotonic() - self._t0) * self.rate)
                while k < due:
                    await ws.send(event(k))
                    record.sent.append(k)
                    record.times.append(time.monotonic())
                    k += 1
                await asyncio.sleep(0.005)
        except Exception:
            return


class LoopbackServer:
    """A TCP server on 127.0.0.1 in a thread of its own; subclasses write ``_serve``.

    Sockets put in ``_held`` are closed with the server, so that a client left hanging
    sees its connection end when the test does.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
        for held in self._held:
            held.close()

    def _serve(self) -> None:
        raise NotImplementedError


def accept_websocket(client: socket.socket) -> None:
    """Read a client's WebSocket handshake request and answer it (101), by hand."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += client.recv(4096)
    key = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.IGNORECASE).group(1)
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    client.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


class SilentServer(LoopbackServer):
    """Completes the WebSocket handshake, sends one event, then never reads again.

    A peer that stops answering pings: only the client's keepalive can notice.
    """

    def __init__(self) -> None:
        super().__init__()
        self.accepted = 0

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._socket.accept()
            except OSError:
                return
            accept_websocket(client)
            payload = event(self.accepted).encode()
            client.sendall(bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload)
            self.accepted += 1
            self._held.append(client)  # never read: pings pile up unanswered
