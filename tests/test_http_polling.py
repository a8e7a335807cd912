"""lakeflow.HttpPollingSource: the HTTP transport a REST plugin builds its polls on.

Each test runs a real aiohttp server on loopback that answers a scripted sequence of
responses, and one poll of a minimal subclass against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

import lakeflow
from harness import free_port


class Config(lakeflow.PollingConfig):
    """A URL to poll."""

    url: str


class Quotes(lakeflow.HttpPollingSource):
    """Polls one URL; the decode is not under test here."""

    type = "test_http_quotes"
    schema = "quotes"
    Config = Config
    service = "Example"
    retry_base = 0.01
    config: Config

    async def poll(self) -> bytes:
        return await self.get(self.config.url, {"symbol": "X"})

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        raise NotImplementedError


Answer = Callable[[web.Request], web.StreamResponse]


class Served:
    """What one poll against a scripted server did: its result and the requests seen."""

    def __init__(self) -> None:
        self.seen: list[web.Request] = []
        self.elapsed = 0.0


def poll_once(
    *answers: Answer, cls: type[Quotes] = Quotes, interval: float = 5.0, url: str = ""
) -> tuple[bytes, Served]:
    """Serve ``answers`` in order (the last repeats) and run one poll of ``cls`` against them."""
    served = Served()

    async def scenario() -> bytes:
        queue = list(answers)

        async def handle(request: web.Request) -> web.StreamResponse:
            served.seen.append(request)
            return (queue.pop(0) if len(queue) > 1 else queue[0])(request)

        app = web.Application()
        app.router.add_get("/quotes", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        target = url or f"http://127.0.0.1:{runner.addresses[0][1]}/quotes"
        source = cls("quotes", Config(url=target, interval=interval, timeout=2.0))
        await source.open()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await source.poll()
        finally:
            served.elapsed = loop.time() - started
            await source.close()
            await runner.cleanup()

    return asyncio.run(scenario()), served


def status(code: int, body: bytes = b"", **headers: str) -> Answer:
    """An answer with ``code``, ``body`` and ``headers`` (``Retry_After`` is Retry-After)."""
    named = {key.replace("_", "-"): value for key, value in headers.items()}
    return lambda _request: web.Response(status=code, body=body, headers=named)


def test_a_200_answer_is_returned_as_the_raw_body():
    body, served = poll_once(status(200, b'{"p":"1.50"}'))
    assert body == b'{"p":"1.50"}'
    assert served.seen[0].query["symbol"] == "X"
    assert served.seen[0].headers["User-Agent"].startswith("lakeflow")


def test_a_5xx_answer_is_retried_with_backoff_within_the_poll():
    body, served = poll_once(status(503), status(502), status(200, b"ok"))
    assert body == b"ok"
    assert len(served.seen) == 3


def test_a_429_waits_as_long_as_retry_after_says_then_retries():
    body, served = poll_once(status(429, Retry_After="1"), status(200, b"ok"))
    assert body == b"ok"
    assert served.elapsed >= 0.95


def test_a_429_whose_wait_passes_the_interval_fails_the_poll_with_its_reason():
    with pytest.raises(lakeflow.RequestFailed, match="Retry-After 30s"):
        poll_once(status(429, Retry_After="30"), interval=2.0)


def test_a_451_stops_the_source_naming_the_refused_location():
    with pytest.raises(lakeflow.SourceError, match="Example refuses requests from this machine"):
        poll_once(status(451, b"restricted location"))


def test_another_4xx_fails_the_poll_once_with_the_status_and_the_body():
    with pytest.raises(lakeflow.RequestFailed, match="HTTP 404 body 'no such page'") as failed:
        poll_once(status(404, b"no such page"))
    assert failed.value.status == 404


def test_a_body_past_max_body_fails_the_poll():
    class Capped(Quotes):
        max_body = 100

    with pytest.raises(lakeflow.RequestFailed, match="exceeds the 100-byte limit"):
        poll_once(status(200, b"x" * 1000), cls=Capped)


def test_a_refused_connection_is_retried_until_the_attempts_run_out():
    class Brief(Quotes):
        max_attempts = 3

    with socket_closed() as url, pytest.raises(lakeflow.RequestFailed, match="after 3 attempt"):
        poll_once(status(200), cls=Brief, url=url)


def test_check_answer_gives_an_answer_the_services_own_meaning():
    class Banned(Quotes):
        def check_answer(self, response, body, params):
            if response.status == 418:
                raise lakeflow.SourcePaused(120, "banned")

    with pytest.raises(lakeflow.SourcePaused, match="banned"):
        poll_once(status(418), cls=Banned)


def test_a_hold_set_from_on_response_delays_the_next_request():
    class Limited(Quotes):
        async def poll(self) -> bytes:
            await self.get(self.config.url)
            return await self.get(self.config.url)

        def on_response(self, response: aiohttp.ClientResponse) -> None:
            if "X-Used" in response.headers:
                self.hold(asyncio.get_running_loop().time() + 0.5, "limit near")

    body, served = poll_once(status(200, b"a", X_Used="99"), status(200, b"b"), cls=Limited)
    assert body == b"b"
    assert served.elapsed >= 0.45


class socket_closed:
    """A loopback URL where nothing listens (the port was bound, then released)."""

    def __enter__(self) -> str:
        return f"http://127.0.0.1:{free_port()}/quotes"

    def __exit__(self, *exc: object) -> None:
        return None
