"""An interactive WebSocket stand-in: it answers as an exchange does.

:class:`~lakeflow.testing.WebSocketStandIn` plays a fixed list of frames. Most exchange
feeds are a conversation instead: the client subscribes after connecting, the server
acknowledges (or refuses an unknown topic), sends each topic's events only to the
connections subscribed to it, answers the exchange's own ``ping`` and drops a client
that stays silent too long. :class:`ExchangeStandIn` does that, with the exchange's
wire format given as two small functions, so a plugin's tests state the protocol
once and every test talks to it::

    def subscribe(message):           # the client's text -> (topics, replies), or None
        request = json.loads(message)
        if request.get("op") != "subscribe":
            return None
        return request["args"], [json.dumps({"success": True, "op": "subscribe"})]

    def answer(message):              # replies to anything else (a ping), or None
        return ['{"op":"pong"}'] if message == '{"op":"ping"}' else None

    server = ExchangeStandIn(subscribe, answer=answer, topics={"trades.BTC": [frame]})

A topic's frames go to a connection when it subscribes; :meth:`ExchangeStandIn.publish`
sends more while connections are open; :meth:`ExchangeStandIn.drop` closes them all
(a reconnect the source must re-subscribe after). It runs like the other stand-ins:
``with`` (its own thread) or ``async with`` (this loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve

from lakeflow.testing.standins import _StandIn

#: A frame as sent: text (``str``, or ``bytes`` sent as text).
Frame = bytes | str
#: ``subscribe(message)``: the topics a client message subscribes to and the replies to
#: send (acknowledgements, refusals), or None when the message is not a subscription.
Subscribe = Callable[[str], "tuple[Sequence[str], Sequence[Frame]] | None"]
#: ``answer(message)``: the replies to a message that is not a subscription (a ping),
#: or None to ignore it.
Answer = Callable[[str], "Sequence[Frame] | None"]


@dataclass
class Connection:
    """One client connection, as the stand-in saw it."""

    path: str
    #: Every text message the client sent, in order.
    received: list[str] = field(default_factory=list)
    #: Topics subscribed to, in order.
    topics: list[str] = field(default_factory=list)
    #: True once the stand-in closed it for silence (``idle_timeout``).
    dropped_for_silence: bool = False


class ExchangeStandIn(_StandIn):
    """A WebSocket server that converses like an exchange; see the module's docstring.

    ``topics`` maps a topic to the frames a subscriber receives when it subscribes
    (``delay`` seconds apart). ``idle_timeout`` closes a connection on which the client
    sent nothing for that long (code 1006-like: ``close``), as exchanges drop clients
    that do not send their keepalive. ``path`` restricts the path served (others are
    refused and recorded in ``unexpected``, which :func:`~lakeflow.testing.collect`
    turns into a failure). ``url`` is ``ws://127.0.0.1:PORT``.
    """

    def __init__(
        self,
        subscribe: Subscribe,
        *,
        answer: Answer | None = None,
        topics: Mapping[str, Iterable[Frame]] | None = None,
        path: str | None = None,
        idle_timeout: float | None = None,
        close: tuple[int, str] = (1000, "idle"),
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.subscribe = subscribe
        self.answer = answer
        self.topics = {topic: list(frames) for topic, frames in (topics or {}).items()}
        self.path = path
        self.idle_timeout = idle_timeout
        self.close = close
        self.delay = delay
        self.connections: list[Connection] = []
        self.unexpected: list[str] = []
        self._open: dict[ServerConnection, Connection] = {}
        self._server: Server | None = None

    # -- what tests call -----------------------------------------------------------------

    @property
    def subscribed(self) -> list[str]:
        """Every topic any connection subscribed to, in order (repeats after reconnects)."""
        return [topic for connection in self.connections for topic in connection.topics]

    def publish(self, topic: str, *frames: Frame) -> int:
        """Send frames to every open connection subscribed to ``topic``; returns how many.

        Blocks until sent: from async code, ``await asyncio.to_thread(server.publish, ...)``.
        """
        return self._call(self._publish(topic, frames))

    def drop(self, code: int = 1001, reason: str = "going away") -> int:
        """Close every open connection (the source reconnects); returns how many."""
        return self._call(self._drop(code, reason))

    # -- the server ----------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[object, object, int]) -> int:
        if self._loop is not None:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10.0)
        coroutine.close()
        raise RuntimeError("publish()/drop() from the stand-in's own loop: await _publish()")

    async def _publish(self, topic: str, frames: Sequence[Frame]) -> int:
        receivers = [ws for ws, seen in self._open.items() if topic in seen.topics]
        for ws in receivers:
            await self._send(ws, frames)
        return len(receivers)

    async def _drop(self, code: int, reason: str) -> int:
        open_now = list(self._open)
        for ws in open_now:
            with contextlib.suppress(Exception):
                await ws.close(code, reason)
        return len(open_now)

    async def _start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"ws://{host}:{port}"

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _send(self, ws: ServerConnection, frames: Iterable[Frame]) -> None:
        for frame in frames:
            await ws.send(frame.decode() if isinstance(frame, bytes) else frame)
            if self.delay:
                await asyncio.sleep(self.delay)

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        seen = Connection(path)
        self.connections.append(seen)
        if self.path is not None and path != self.path:
            self.unexpected.append(path)
            await ws.close(1008, f"unexpected path; this stand-in serves {self.path}")
            return
        self._open[ws] = seen
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.idle_timeout)
                except TimeoutError:
                    seen.dropped_for_silence = True
                    await ws.close(*self.close)
                    return
                text = message.decode() if isinstance(message, bytes) else message
                seen.received.append(text)
                subscription = self.subscribe(text)
                if subscription is not None:
                    topics, replies = subscription
                    await self._send(ws, replies)
                    for topic in topics:
                        seen.topics.append(topic)
                        await self._send(ws, self.topics.get(topic, ()))
                    continue
                answered = self.answer(text) if self.answer is not None else None
                if answered:
                    await self._send(ws, answered)
        except Exception:
            return  # the client left
        finally:
            self._open.pop(ws, None)
