"""What bounds a collector's memory: the buffer's byte limit and the HTTP body caps.

A payload count alone bounds nothing when frames are large (25,000 frames of 1 MiB are
25 GB), and an answer read whole before its size is checked can be any size. The buffer
tests drive a real :class:`PayloadBuffer`; the reader test runs the real WebSocket
source against a real aiohttp server on 127.0.0.1; the HTTP tests serve the answers
from a real aiohttp server that counts what it managed to send. What a flood costs in
megabytes is measured in ``bench/flood.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import polars as pl
import pydantic
import pytest
from aiohttp import web
from lakeflow_testsource.sources import UrlConfig, WebSocketTestSource

import lakeflow
from harness import wait_until
from lakeflow import Reference, ReferenceData, RequestFailed
from lakeflow.config import SinkConfig
from lakeflow.runtime.buffer import PayloadBuffer

KIB = 1024
MIB = 1 << 20
#: What the servers below would send in all: far more than any cap, never all read.
ENDLESS = 256 * MIB
LOG = logging.getLogger("test_memory_bounds")


def filled(buffer: PayloadBuffer, count: int, size: int) -> PayloadBuffer:
    """``buffer`` after ``count`` payloads of ``size`` bytes were emitted."""
    for _ in range(count):
        buffer.emit(b"x" * size)
    return buffer


# -- the buffer ---------------------------------------------------------------------------


def test_the_buffer_holds_readers_back_at_the_byte_limit_while_under_the_count_limit():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=4 * KIB), 3, KIB)
    assert not buffer.backlogged

    buffer.emit(b"x" * KIB)

    assert buffer.backlogged
    assert len(buffer) == 4  # far below the 1000 payloads the count limit allows


def test_the_buffer_still_holds_readers_back_at_the_count_limit():
    buffer = filled(PayloadBuffer(10, 10, limit_bytes=64 * MIB), 10, 1)

    assert buffer.backlogged


def test_ready_is_set_when_the_bytes_reach_half_the_byte_limit():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=8 * KIB), 3, KIB)
    assert not buffer.ready.is_set()

    buffer.emit(b"x" * KIB)

    assert buffer.ready.is_set()


def test_take_returns_at_most_half_the_byte_limit_at_once():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=8 * KIB), 8, KIB)

    first, batch = buffer.take()

    assert (first, len(batch)) == (1, 4)
    assert buffer.nbytes == 4 * KIB
    assert buffer.first == 5


def test_take_by_count_also_stops_at_the_byte_budget():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=8 * KIB), 8, KIB)

    _, batch = buffer.take(6)

    assert len(batch) == 4


def test_take_returns_a_payload_larger_than_the_byte_budget_alone():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=2 * KIB), 2, 3 * KIB)

    _, batch = buffer.take()

    assert len(batch) == 1
    assert len(buffer) == 1


def test_a_take_below_the_byte_limit_lets_the_readers_go_on():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=8 * KIB), 8, KIB)
    assert buffer.backlogged

    buffer.take()

    assert not buffer.backlogged


def test_the_buffer_is_due_once_half_the_byte_limit_waits():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=8 * KIB), 3, KIB)
    assert not buffer.due

    buffer.emit(b"x" * KIB)

    assert buffer.due


def test_a_take_that_leaves_half_the_byte_limit_keeps_ready_set():
    buffer = filled(PayloadBuffer(1000, 1000, limit_bytes=8 * KIB), 8, KIB)

    buffer.take()

    assert buffer.ready.is_set()  # 4 KiB left: the next flush is due at once


# -- the configuration --------------------------------------------------------------------


def test_max_buffered_bytes_is_64_mib_by_default():
    assert SinkConfig().max_buffered_bytes == 64 * MIB


def test_max_buffered_bytes_takes_a_size_with_a_unit():
    assert SinkConfig(max_buffered_bytes="256MiB").max_buffered_bytes == 256 * MIB


def test_max_buffered_bytes_below_one_mib_is_refused():
    with pytest.raises(pydantic.ValidationError, match="max_buffered_bytes"):
        SinkConfig(max_buffered_bytes=1000)


# -- a WebSocket reader at the byte limit -------------------------------------------------


class BufferFeed:
    """The runtime's side of a stream, without a committer: the buffer and nothing else."""

    def __init__(self, buffer: PayloadBuffer) -> None:
        self.emit = buffer.emit
        self.writable = buffer.writable
        self._buffer = buffer

    @property
    def backlogged(self) -> bool:
        return self._buffer.backlogged

    def connecting(self, what: str) -> None:
        """Nothing to note: no gaps are recorded here."""

    def connected(self, detail: str = "") -> None:
        """Nothing to note: no gaps are recorded here."""


@dataclass
class Sent:
    """What a flooding server sent: frames and bytes."""

    frames: int = 0
    bytes: int = 0


@contextlib.asynccontextmanager
async def flooding(frame: bytes) -> AsyncIterator[tuple[str, Sent]]:
    """A WebSocket server on 127.0.0.1 that sends ``frame`` flat out to every client."""
    sent = Sent()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        async def flood() -> None:
            with contextlib.suppress(ConnectionError):
                while not ws.closed:
                    await ws.send_bytes(frame)
                    sent.frames += 1
                    sent.bytes += len(frame)

        # Read beside the flood, as an exchange does: the client's close is answered
        # (the client reads until it is, whatever else arrives).
        flooder = asyncio.create_task(flood())
        async for _ in ws:
            pass
        flooder.cancel()
        await asyncio.gather(flooder, return_exceptions=True)
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/", sent
    finally:
        await runner.cleanup()


def test_a_websocket_reader_stops_reading_at_the_byte_limit():
    frame = b'{"n": 1, "value": "1.5", "pad": "' + b"x" * (64 * KIB) + b'"}'
    limit = MIB

    async def scenario() -> tuple[PayloadBuffer, Sent]:
        buffer = PayloadBuffer(25_000, 25_000, limit_bytes=limit)
        async with flooding(frame) as (url, sent):
            source = WebSocketTestSource("flood", UrlConfig(url=url))
            reader = asyncio.create_task(source.stream(BufferFeed(buffer)))
            try:
                await wait_until(lambda: buffer.backlogged, "a full buffer")
                # Whatever the reader would read, the server has sent by now: several
                # times the limit is in the socket and aiohttp's queue, waiting.
                # More than the reader holds is on its way (in the socket, in aiohttp's
                # queue): a reader that ignored the limit would read it on.
                await wait_until(
                    lambda: sent.bytes >= buffer.nbytes + limit // 2,
                    "more sent than the reader holds",
                )
                for _ in range(20):
                    await asyncio.sleep(0.01)  # every chance to read on, if it would
                return buffer, sent
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await source.close()

    buffer, sent = asyncio.run(scenario())

    assert limit <= buffer.nbytes < limit + len(frame)
    assert sent.frames > len(buffer)


# -- HTTP answers past their cap ----------------------------------------------------------


@dataclass
class Served:
    """What the server of one test did: requests, bytes sent, whether it sent them all."""

    requests: int = 0
    sent: int = 0
    finished: bool = False
    done: asyncio.Event | None = None


Handler = Callable[[web.Request, Served], Awaitable[web.StreamResponse]]


def endless(*, declared: bool) -> Handler:
    """An answer of ``ENDLESS`` bytes of a JSON string, with or without Content-Length."""

    async def handle(request: web.Request, served: Served) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declared:
            response.content_length = ENDLESS
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b" " * (64 * KIB)
        with contextlib.suppress(ConnectionError):
            while served.sent < ENDLESS:
                await response.write(chunk)
                served.sent += len(chunk)
            served.finished = True
        return response

    return handle


def small(body: bytes) -> Handler:
    """An answer of ``body`` with its Content-Length."""

    async def handle(request: web.Request, served: Served) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    return handle


@contextlib.asynccontextmanager
async def serving(handler: Handler, path: str = "/list") -> AsyncIterator[tuple[str, Served]]:
    """``handler`` on 127.0.0.1 at ``path``; yields the URL and what the server did."""
    served = Served(done=asyncio.Event())

    async def handle(request: web.Request) -> web.StreamResponse:
        served.requests += 1
        try:
            return await handler(request, served)
        finally:
            assert served.done is not None
            served.done.set()

    app = web.Application()
    app.router.add_get(path, handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{path}", served
    finally:
        await runner.cleanup()


def fetch_refused(handler: Handler, max_body: int = MIB, user: str = "") -> tuple[str, Served]:
    """``lakeflow.fetch_json`` against ``handler``: the refusal's message and the server's
    account, once its handler has ended."""

    async def scenario() -> tuple[str, Served]:
        async with serving(handler) as (url, served):
            if user:
                url = url.replace("://", f"://{user}@")
            with pytest.raises(RequestFailed) as refused:
                await lakeflow.fetch_json(url, max_body=max_body, within=30.0)
            assert served.done is not None
            await asyncio.wait_for(served.done.wait(), 30.0)
            return str(refused.value), served

    return asyncio.run(scenario())


def test_fetch_json_refuses_an_answer_whose_content_length_passes_the_cap():
    message, served = fetch_refused(endless(declared=True))

    assert message.startswith("answer from http://127.0.0.1:")
    assert "/list is larger than 1.0 MiB; refused" in message
    assert f"Content-Length of {ENDLESS} bytes exceeds the {MIB}-byte limit" in message
    assert not served.finished


def test_fetch_json_refuses_a_chunked_answer_past_the_cap_without_reading_it_all():
    message, served = fetch_refused(endless(declared=False))

    assert "/list is larger than 1.0 MiB; refused (reading stopped at" in message
    assert f"which exceeds the {MIB}-byte limit" in message
    assert not served.finished


def test_fetch_json_does_not_retry_an_answer_past_the_cap():
    _, served = fetch_refused(small(b'"' + b"x" * (2 * KIB) + b'"'), max_body=KIB)

    assert served.requests == 1


def test_fetch_json_masks_the_credentials_of_the_url_it_refuses():
    message, _ = fetch_refused(endless(declared=True), user="alice:s3cret")

    assert "s3cret" not in message
    assert "answer from http://***@127.0.0.1:" in message


def test_fetch_json_reads_an_answer_within_the_cap():
    async def scenario() -> object:
        async with serving(small(b'{"symbols": ["BTCUSDT"]}')) as (url, _):
            return await lakeflow.fetch_json(url, max_body=64)

    assert asyncio.run(scenario()) == {"symbols": ["BTCUSDT"]}


def test_a_reference_list_past_its_max_body_keeps_the_last_good_copy():
    async def scenario() -> tuple[pl.DataFrame | None, str]:
        async with serving(endless(declared=False)) as (url, _):
            listed = Reference("instruments", url=url, parse=symbols, max_body=MIB)
            refs = ReferenceData([listed], log=LOG)
            refs.put("instruments", pl.DataFrame({"symbol": ["BTCUSDT"]}))
            try:
                with pytest.raises(RequestFailed) as refused:
                    await refs.refresh("instruments")
            finally:
                await refs.close()
            return refs.frame("instruments"), str(refused.value)

    frame, message = asyncio.run(scenario())

    assert frame is not None and frame["symbol"].to_list() == ["BTCUSDT"]
    assert "is larger than 1.0 MiB; refused" in message


def symbols(body: dict[str, list[str]]) -> pl.DataFrame:
    """An instrument list's frame, from its JSON body."""
    return pl.DataFrame({"symbol": body["symbols"]})


class Capped(lakeflow.HttpPollingSource):
    """GETs ``url`` once per poll, refusing answers past 1 MiB; the decode is not tested."""

    type = "test_capped_poll"
    schema = "test_record"
    max_body = MIB
    retry_base = 0.01

    async def poll(self) -> bytes:
        return await self.get(self.config.url)  # type: ignore[attr-defined]

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        raise NotImplementedError


class CappedConfig(lakeflow.PollingConfig):
    """The URL to poll."""

    url: str


def test_a_polled_chunked_answer_past_max_body_fails_the_poll_without_reading_it_all():
    async def scenario() -> tuple[str, Served]:
        async with serving(endless(declared=False)) as (url, served):
            source = Capped("capped", CappedConfig(url=url, interval=30.0, timeout=30.0))
            await source.open()
            try:
                with pytest.raises(RequestFailed) as refused:
                    await source.poll()
            finally:
                await source.close()
            assert served.done is not None
            await asyncio.wait_for(served.done.wait(), 30.0)
            return str(refused.value), served

    message, served = asyncio.run(scenario())

    assert "/list is larger than 1.0 MiB; refused (reading stopped at" in message
    assert "raise the source's max_body to accept it" in message
    assert served.requests == 1
    assert not served.finished
