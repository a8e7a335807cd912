"""The test-only sources and their record schema (imported by the hooks in ``__init__``)."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import polars as pl
from pydantic import Field as ConfigField

import lakeflow
from lakeflow import DECIMAL, TIMESTAMP, Batch, Decoded, Field, TableSchema

if TYPE_CHECKING:  # imported where used: this plugin loads in every `lakeflow` command
    import aiohttp

RECORD = TableSchema(
    name="test_record",
    table="test_records",
    columns={
        "source": pl.String(),
        "n": pl.Int64(),
        "value": DECIMAL,
        "received_at": TIMESTAMP,
        "date": pl.Date(),
    },
    description="Numbered test records.",
)

FIELDS = {"n": Field("n", pl.Int64()), "value": Field("value", DECIMAL)}


def _decode(name: str, batch: Batch) -> Decoded:
    decoded = lakeflow.decode_json(batch, FIELDS, constants={"source": name})
    decoded.rows = decoded.rows.with_columns(date=pl.col("received_at").dt.date())
    return decoded


class SequenceConfig(lakeflow.StreamingConfig):
    count: int = ConfigField(default=100, ge=0, description="Payloads to emit, then idle.")
    rate: float = ConfigField(default=0.0, ge=0, description="Payloads per second; 0 = flat out.")
    bad_every: int = ConfigField(default=0, ge=0, description="Every k-th payload is broken JSON.")


class SequenceSource(lakeflow.StreamingSource):
    """Streams numbered payloads, then stays connected and silent."""

    type = "test_sequence"
    schema = "test_record"
    description = "Test fixture: streams numbered payloads (no network)."
    Config = SequenceConfig

    async def stream(self, feed: lakeflow.Feed) -> None:
        config: SequenceConfig = self.config  # type: ignore[assignment]
        feed.connected("memory")
        delay = 1 / config.rate if config.rate else 0.0
        for i in range(1, config.count + 1):
            if config.bad_every and i % config.bad_every == 0:
                feed.emit(b'{"n": ' + str(i).encode())
            else:
                feed.emit(b'{"n": %d, "value": "%d.%06d"}' % (i, i, i))
            if feed.backlogged:
                await feed.writable()
            if delay:
                await asyncio.sleep(delay)
            elif i % 1000 == 0:
                await asyncio.sleep(0)
        await asyncio.Event().wait()

    def decode(self, batch: Batch) -> Decoded:
        return _decode(self.name, batch)


class ClockSource(lakeflow.PollingSource):
    """Returns one numbered payload per poll."""

    type = "test_clock"
    schema = "test_record"
    description = "Test fixture: one numbered payload per poll (no network)."

    def __init__(self, name: str, config: lakeflow.SourceConfig) -> None:
        super().__init__(name, config)
        self._counter = itertools.count(1)

    async def poll(self) -> bytes:
        n = next(self._counter)
        return b'{"n": %d, "value": "%d"}' % (n, n)

    def decode(self, batch: Batch) -> Decoded:
        return _decode(self.name, batch)


class UrlConfig(lakeflow.StreamingConfig):
    url: str = ConfigField(description="Where to read from (a loopback stand-in).")
    subscribe: str | None = ConfigField(default=None, description="Sent once per connection.")


class WebSocketTestSource(lakeflow.WebSocketSource):
    """Reads every frame of ``url``: payloads shaped like ``{"n": 1, "value": "1.5"}``."""

    type = "test_websocket"
    schema = "test_record"
    description = "Test fixture: reads {n, value} frames from a WebSocket URL."
    Config = UrlConfig

    def url(self) -> str:
        return self.config.url  # type: ignore[attr-defined]

    async def on_open(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self.config.subscribe is not None:  # type: ignore[attr-defined]
            await ws.send_str(self.config.subscribe)  # type: ignore[attr-defined]

    def decode(self, batch: Batch) -> Decoded:
        return _decode(self.name, batch)


class HttpPollConfig(lakeflow.PollingConfig):
    url: str = ConfigField(description="The URL to GET on every poll.")


class HttpTestSource(lakeflow.PollingSource):
    """GETs ``url`` every interval; a 200 body is one payload, anything else loses the poll."""

    type = "test_http"
    schema = "test_record"
    description = "Test fixture: GETs a URL every interval, one {n, value} body per poll."
    Config = HttpPollConfig

    async def open(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self._session.close()

    async def poll(self) -> bytes:
        async with self._session.get(self.config.url) as response:  # type: ignore[attr-defined]
            body = await response.read()
            if response.status != 200:
                raise ConnectionError(f"HTTP {response.status}: {body[:100]!r}")
            return body

    def decode(self, batch: Batch) -> Decoded:
        return _decode(self.name, batch)
