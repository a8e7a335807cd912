"""A streaming source base for WebSocket feeds: subclasses say where, the core reads.

It reads with aiohttp, whose frame parser is several times cheaper per message than
the alternatives measured in ``bench/`` (the reader is the hot path of a busy feed),
and asks it for text frames as raw bytes, never decoded to ``str``. It answers server
pings and sends its own (autoping and heartbeat), caps the frame size, waits on the
runtime when the sink is behind, and can roll over to a fresh connection before a
server's scheduled cut (exchanges close connections after 24 h): the new connection
opens while the old one is still read, and events that arrive on both during the
overlap are kept once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeAlias

from lakeflow.errors import LakeflowError, SourceError
from lakeflow.secrets import mask_uri
from lakeflow.sources import Feed, StreamingSource

if TYPE_CHECKING:
    # aiohttp is imported where a connection is made, not with the module: plugins
    # subclass WebSocketSource, and `lakeflow validate` or `list-sources` never connect
    # (aiohttp costs ~0.3 s of their start-up; bench/README.md, "startup.py").
    import aiohttp

    #: The connection itself: aiohttp's, whose text frames arrive as raw bytes
    #: (``decode_text=False``). Plugins see it as a :class:`WebSocket`.
    Connection: TypeAlias = aiohttp.ClientWebSocketResponse[Literal[False]]
    #: What such a connection's ``receive()`` returns.
    Message: TypeAlias = aiohttp.WSMessage | aiohttp.http.WSMessageTextBytes

#: Handshake statuses that say this endpoint does not serve the stream (it moved, or
#: never existed here): worth trying the next known endpoint at once.
WRONG_ENDPOINT = frozenset({400, 403, 404, 410})
#: 451 Unavailable For Legal Reasons: the server refuses the client's location.
#: Retrying, or another endpoint of the same service, cannot fix that.
REFUSED_LOCATION = 451
#: Seconds a closing handshake may take as a whole before the socket is dropped.
CLOSE_TIMEOUT = 5.0


class WebSocket(Protocol):
    """One open connection, as :class:`WebSocketSource` hands it to a subclass's hooks.

    :meth:`~WebSocketSource.on_open`, :meth:`~WebSocketSource.while_open` and
    :meth:`~WebSocketSource.on_close` get one: send the subscriptions (or any request)
    with it, see whether it is still open, close it. Frames are read by the source, never
    by a hook: replies arrive as payloads like any other, for ``decode``. At run time it
    is aiohttp's client connection; this protocol is the part plugins may rely on, and
    it is defined here, not under ``TYPE_CHECKING``, so that ``lakeflow.WebSocket``
    imports without aiohttp.
    """

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed."""
        ...

    async def send_str(self, data: str) -> None:
        """Send ``data`` as one text frame."""
        ...

    async def send_bytes(self, data: bytes) -> None:
        """Send ``data`` as one binary frame."""
        ...

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        """Close the connection (the source then reconnects); False if it already was."""
        ...


class OpenTimeout(LakeflowError, TimeoutError):
    """A connection did not open within ``open_timeout``; the message says which step hung.

    A server that accepts the TCP connection and never answers the handshake (overloaded,
    or a proxy in the way), or an ``on_open`` that waits for a reply that does not come.
    """


class WebSocketSource(StreamingSource):
    """Reads every frame of ``self.url()`` into the runtime as a raw payload.

    Override :meth:`url` (or :meth:`urls`, when the stream is served at several
    endpoints), and :meth:`on_open` if the feed needs a subscribe message. After a
    silent connection or a handshake refused with 400/403/404/410, the source falls over
    to the next of :meth:`urls` and logs which one delivers. A handshake refused with
    451 (the server refuses this location) stops the source with
    :class:`~lakeflow.SourceError`: retrying cannot fix it.

    ``max_age`` (seconds) rolls to a new connection before the server's cut;
    ``max_size`` caps one frame (a larger one drops the connection, not the process);
    ``open_timeout`` (seconds) bounds the handshake and :meth:`on_open` together, and a
    connection that does not open within it is an :class:`OpenTimeout` saying which hung.
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
    #: The exchange's own keepalive, on top of the protocol ping: :meth:`keepalive` is
    #: sent every ``keepalive_interval`` seconds while a connection is open (Bybit wants
    #: ``{"op":"ping"}`` every 20 s, OKX a text ``ping``). None: the exchange needs none.
    keepalive_interval: ClassVar[float | None] = None

    _session: aiohttp.ClientSession | None = None
    #: Per open connection: the task running its keepalive and :meth:`while_open`.
    _companions: dict[Connection, asyncio.Task[None]] | None = None
    #: Why a companion task ended its connection, for the reconnect's message.
    _companion_error: BaseException | None = None
    _successor: Connection | None = None
    _seen: set[bytes] | None = None
    #: Index into :meth:`urls` of the endpoint in use.
    _endpoint: int = 0
    #: True after a fall-over, until a frame arrives: then the working endpoint is logged.
    _searching: bool = False

    def url(self) -> str:
        """The WebSocket URL to connect to."""
        raise NotImplementedError

    def urls(self) -> list[str]:
        """Every URL the stream is served at, preferred first. Default: ``[self.url()]``.

        Override it when the exchange serves the stream at more than one endpoint (a
        routed one and a legacy one): the source falls over to the next after a silent
        connection or a refused handshake, round and round.
        """
        return [self.url()]

    def endpoints(self) -> list[str]:
        """The URLs of :meth:`urls`, for ``lakeflow validate``."""
        return self.urls()

    def current_url(self) -> str:
        """The endpoint the next connection goes to."""
        urls = self.urls()
        return urls[self._endpoint % len(urls)]

    def describe_url(self, url: str | None = None) -> str:
        """A URL for logs: credentials masked, a long query (200 streams) shortened."""
        url = mask_uri(self.current_url() if url is None else url)
        return url if len(url) <= 120 else f"{url[:100]}... ({len(url)} chars)"

    def fall_over(self) -> str | None:
        """Move to the next of :meth:`urls`; returns it (for logs), or None if there is one."""
        urls = self.urls()
        if len(urls) < 2:
            return None
        self._endpoint = (self._endpoint + 1) % len(urls)
        self._searching = True
        return self.describe_url()

    async def on_open(self, ws: WebSocket) -> None:
        """Called on every new connection before reading: send the subscriptions here.

        It runs again after every reconnect and roll-over, so a source that subscribes
        here re-subscribes everything without further code. Replies arrive as frames
        like any other; have :meth:`~lakeflow.Source.decode` ignore the acknowledgements
        (and reject a refusal, so that it shows as a dead letter). Raising here fails
        the connection: the runtime records a gap and reconnects with backoff.
        """

    def keepalive(self) -> str | bytes | None:
        """The keepalive message sent every ``keepalive_interval`` seconds (default: none)."""
        return None

    async def while_open(self, ws: WebSocket) -> None:
        """Runs beside the reader for the life of one connection (default: nothing).

        Started after :meth:`on_open` and cancelled when the connection closes, so it
        needs no clean-up of its own: refresh a symbol list and subscribe what is new
        here. If it raises, the connection is closed and the runtime reconnects, saying
        why.
        """

    async def on_close(self, ws: WebSocket) -> None:
        """Called when a connection ends, after its :meth:`while_open` is cancelled."""

    async def fetch_json(
        self, url: str, params: Mapping[str, str] | None = None, *, within: float = 10.0
    ) -> Any:
        """GET reference data (an instrument list) beside the stream: :func:`lakeflow.fetch_json`.

        Reuses the source's HTTP session when it is open (from :meth:`prepare`, before
        :meth:`open`, a session is made for the call).
        """
        from lakeflow.fetch import fetch_json

        return await fetch_json(url, params, session=self._session, within=within, log=self.log)

    async def open(self) -> None:
        """One HTTP session for the life of the source; every connection reuses it."""
        import aiohttp

        self._session = aiohttp.ClientSession(headers={"User-Agent": "lakeflow"})

    async def close(self) -> None:
        """Close the session (and with it any connection still open)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _connect(self, step: Callable[[str], None] | None = None) -> Connection:
        """Open a connection and run :meth:`on_open`, both within ``open_timeout``.

        ``step`` is told what the attempt is doing, as it goes. A timeout raises
        :class:`OpenTimeout` naming the step that hung and the endpoint (masked).
        """
        import aiohttp

        if self._session is None:
            await self.open()
        assert self._session is not None
        url = self.describe_url()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.open_timeout
        if step is not None:
            step(f"waiting for the answer to the WebSocket handshake with {url}")
        try:
            async with asyncio.timeout_at(deadline) as limit:
                ws = await self._session.ws_connect(
                    self.current_url(),
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                    autoping=True,
                    heartbeat=self.ping_interval,
                    max_msg_size=self.max_size,
                    decode_text=False,
                )
        except TimeoutError:
            if not limit.expired():
                raise  # aiohttp's own (a socket timeout): its message says it
            raise OpenTimeout(
                f"no answer to the handshake within {self.open_timeout:g} s from {url}"
            ) from None
        if step is not None:
            step(f"connected to {url}, waiting for on_open (the subscription) to finish")
        try:
            async with asyncio.timeout_at(deadline) as limit:
                await self.on_open(ws)
        except BaseException as exc:
            await ws.close()
            if isinstance(exc, TimeoutError) and limit.expired():
                raise OpenTimeout(
                    f"connected to {url}, but on_open (the subscription) did not finish "
                    f"within {self.open_timeout:g} s of the connection attempt"
                ) from None
            raise
        if self._companions is None:
            self._companions = {}
        self._companions[ws] = asyncio.ensure_future(self._accompany(ws))
        return ws

    async def _accompany(self, ws: Connection) -> None:
        """The keepalive and :meth:`while_open` of one connection; a failure ends it."""
        try:
            if self.keepalive_interval is not None and self.keepalive() is not None:
                await asyncio.gather(self._keep_alive(ws), self.while_open(ws))
            else:
                await self.while_open(ws)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._companion_error = exc
            self.log.warning("closing the connection: %s", exc)
            await ws.close()

    async def _keep_alive(self, ws: WebSocket) -> None:
        assert self.keepalive_interval is not None
        message = self.keepalive()
        while not ws.closed:
            await asyncio.sleep(self.keepalive_interval)
            if ws.closed:
                return
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                elif message is not None:
                    await ws.send_str(message)
            except ConnectionError:
                return  # the reader sees the connection end and says why

    async def _disconnect(self, ws: Connection) -> None:
        """End one connection: its companion task first, then :meth:`on_close`, then it."""
        task = (self._companions or {}).pop(ws, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        try:
            await self.on_close(ws)
        finally:
            # aiohttp's close reads until the server answers it, its timeout applying to
            # each read: a server that keeps sending and never answers would hold a stop
            # forever. The whole close gets CLOSE_TIMEOUT, then the socket is dropped.
            try:
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                transport = ws.get_extra_info("transport")
                if transport is not None:
                    transport.abort()

    async def stream(self, feed: Feed) -> None:
        import aiohttp

        try:
            # Should a stop come before the connection is up, the gap says what hung.
            ws = await self._connect(feed.connecting)
        except aiohttp.WSServerHandshakeError as exc:
            raise self._refused(exc) from None
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
                    failure, self._companion_error = self._companion_error, None
                    if failure is not None:
                        raise ConnectionError(f"closed by the source: {failure}") from failure
                    raise _closed_error(ws, message)
                dedup, self._seen = self._seen, None
                await self._disconnect(ws)
                ws = successor
                self.log.info("rolled over to a new connection before the server's cut")
        finally:
            await self._disconnect(ws)

    async def _read(self, ws: Connection, feed: Feed, dedup: set[bytes] | None) -> Message:
        """Emit every data frame until the connection ends; returns the ending message."""
        from aiohttp import WSMsgType

        receive, emit = ws.receive, feed.emit
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        # After a roll-over, the new connection first repeats what the old one carried
        # during the overlap; drop those. After a fall-over, the first frame tells which
        # endpoint works. Then read at full speed, looking at neither again.
        while dedup or self._searching:
            message = await receive()
            if message.type is not text and message.type is not binary:
                return message
            if dedup and message.data in dedup:
                continue
            dedup = None
            if self._searching:
                self._searching = False
                self.log.info(
                    "receiving on %s (endpoint %d of %d)",
                    self.describe_url(),
                    self._endpoint % len(self.urls()) + 1,
                    len(self.urls()),
                )
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

    def _refused(self, exc: aiohttp.WSServerHandshakeError) -> Exception:
        """The error for a refused handshake: fatal (451), or a reconnect, maybe elsewhere."""
        url = self.describe_url()
        said = f"HTTP {exc.status} {exc.message}".rstrip()
        if exc.status == REFUSED_LOCATION:
            return SourceError(
                f"{url} refused the connection with {said}: the server refuses clients "
                "from this location (a region block). Retrying cannot fix it; run the "
                "collector from a location the exchange serves."
            )
        if exc.status in WRONG_ENDPOINT:
            following = self.fall_over()
            if following is not None:
                self.log.warning(
                    "handshake refused at %s (%s); trying the next endpoint, %s",
                    url,
                    said,
                    following,
                )
        return ConnectionError(f"handshake refused at {url}: {said}")

    def _start_roll_over(self, old: Connection) -> None:
        task = asyncio.ensure_future(self._roll_over(old))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _roll_over(self, old: Connection) -> None:
        """Open the next connection, keep reading the old one ``overlap`` s, then close it."""
        try:
            new = await self._connect()
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
            await self._disconnect(old)


def _closed_error(ws: Connection, message: Message) -> Exception:
    """A ConnectionError that says how the connection ended."""
    from aiohttp import WSMsgType

    if message.type is WSMsgType.ERROR:
        return ConnectionError(f"connection lost: {message.data}")
    code = ws.close_code
    reason = f", {message.extra}" if message.type is WSMsgType.CLOSE and message.extra else ""
    return ConnectionError(f"server closed the connection (code {code}{reason})")
