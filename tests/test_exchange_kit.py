"""What the core gives every exchange plugin: the keepalive, the per-connection companion,
subscribe-after-connect, prepare() before the first decode, fetch_json, and the
interactive ExchangeStandIn. In-test sources against real loopback servers and tables.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import polars as pl
import pytest

import lakeflow
from lakeflow import DECIMAL, TIMESTAMP, Batch, Decoded, Field, TableSchema
from lakeflow.testing import ExchangeStandIn, Response

TICKS = TableSchema(
    name="exchange_kit_tick",
    table="ticks",
    columns={"topic": pl.String(), "price": DECIMAL, "received_at": TIMESTAMP},
    partition_by=(),
)
FIELDS = {"topic": Field("topic", pl.String()), "price": Field("data.p", DECIMAL)}


def tick(topic: str, price: str) -> str:
    return json.dumps({"topic": topic, "data": [{"p": price}]})


def subscribe(message: str) -> tuple[Sequence[str], Sequence[str]] | None:
    """The wire format of the stand-in exchange: Bybit-like op/args requests."""
    request = json.loads(message)
    if request.get("op") != "subscribe":
        return None
    acks = [json.dumps({"op": "subscribe", "success": True, "req_id": request.get("req_id")})]
    return request["args"], acks


def answer(message: str) -> Sequence[str] | None:
    return (
        [json.dumps({"op": "ping", "success": True, "ret_msg": "pong"})]
        if "ping" in message
        else None
    )


class Config(lakeflow.StreamingConfig):
    url: str
    topics: list[str] = ["a", "b"]


class KitSource(lakeflow.WebSocketSource):
    """Subscribes in on_open, pings every 0.2 s, counts its companions' lives."""

    type = "exchange_kit"
    schema = TICKS.name
    Config = Config
    keepalive_interval: ClassVar[float | None] = 0.2
    opened: ClassVar[int] = 0
    closed: ClassVar[int] = 0
    prepared: ClassVar[list[float]] = []

    config: Config

    def url(self) -> str:
        return self.config.url

    def keepalive(self) -> str:
        return '{"op":"ping"}'

    async def prepare(self) -> None:
        type(self).prepared.append(time.monotonic())

    async def on_open(self, ws: Any) -> None:
        await ws.send_str(
            json.dumps({"op": "subscribe", "args": self.config.topics, "req_id": "1"})
        )

    async def while_open(self, ws: Any) -> None:
        type(self).opened += 1
        try:
            await asyncio.Event().wait()
        finally:
            type(self).closed += 1

    def decode(self, batch: Batch) -> Decoded:
        return lakeflow.decode_json(
            batch,
            FIELDS,
            explode="data",
            ignore=pl.col("op").is_not_null(),
            ignore_keys=("op",),
        )


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    KitSource.opened = KitSource.closed = 0
    KitSource.prepared = []


def collect(lakeflow_collect, server: ExchangeStandIn, payloads: int, **config: Any):
    return lakeflow_collect(
        KitSource,
        {"url": server.url, **config},
        payloads=payloads,
        schemas=[TICKS],
        standins=[server],
    )


def test_the_stand_in_sends_a_topic_only_to_connections_subscribed_to_it(
    exchange_standin, lakeflow_collect
):
    server = exchange_standin(
        subscribe, answer=answer, topics={"a": [tick("a", "1.5")], "z": [tick("z", "9")]}
    )

    result = collect(lakeflow_collect, server, payloads=2, topics=["a"])

    assert result.rows["topic"].to_list() == ["a"]
    assert server.subscribed == ["a"]
    assert result.result.stats["source"].ignored == 1  # the acknowledgement


def test_the_keepalive_keeps_a_connection_the_stand_in_would_drop_for_silence(
    exchange_standin, lakeflow_collect
):
    server = exchange_standin(
        subscribe, answer=answer, topics={"a": [tick("a", "1")]}, idle_timeout=1.0
    )

    # Ack + tick, then six pongs: 1.2 s of pings every 0.2 s, past the 1 s idle limit.
    result = collect(lakeflow_collect, server, payloads=8)

    assert len(server.connections) == 1
    assert not server.connections[0].dropped_for_silence
    assert server.connections[0].received.count('{"op":"ping"}') >= 6
    assert result.gaps.height <= 1  # the opening gap only


def test_after_a_drop_the_source_subscribes_again_on_the_new_connection(
    exchange_standin, lakeflow_collect
):
    server = exchange_standin(subscribe, topics={"a": [tick("a", "1")], "b": [tick("b", "2")]})

    async def drop_once_subscribed() -> None:
        while len(server.subscribed) < 2:  # noqa: ASYNC110 - the stand-in has its own thread
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(server.drop)

    async def main():
        dropper = asyncio.ensure_future(drop_once_subscribed())
        result = await lakeflow_collect.run_async(
            KitSource,
            {"url": server.url},
            payloads=6,
            schemas=[TICKS],
            standins=[server],
        )
        await dropper
        return result

    result = asyncio.run(main())

    assert [c.topics for c in server.connections] == [["a", "b"], ["a", "b"]]
    assert sorted(result.rows["topic"]) == ["a", "a", "b", "b"]
    assert KitSource.opened == 2


def test_while_open_is_cancelled_when_its_connection_ends(exchange_standin, lakeflow_collect):
    server = exchange_standin(subscribe, topics={"a": [tick("a", "1")]})

    collect(lakeflow_collect, server, payloads=2)

    assert KitSource.opened == KitSource.closed == 1


def test_prepare_runs_once_before_the_source_connects(exchange_standin, lakeflow_collect):
    server = exchange_standin(subscribe, topics={"a": [tick("a", "1")]})

    collect(lakeflow_collect, server, payloads=2)

    assert len(KitSource.prepared) == 1


class FailingPrepare(KitSource):
    type = "exchange_kit_failing_prepare"

    async def prepare(self) -> None:
        raise ConnectionError("instrument list unreachable")


def test_a_failing_prepare_is_a_warning_and_the_source_still_runs(
    exchange_standin, lakeflow_collect, caplog
):
    server = exchange_standin(subscribe, topics={"a": [tick("a", "1")]})

    result = lakeflow_collect(
        FailingPrepare, {"url": server.url}, payloads=2, schemas=[TICKS], standins=[server]
    )

    assert result.rows.height == 1
    assert "prepare() failed (instrument list unreachable)" in caplog.text


class FailingCompanion(KitSource):
    type = "exchange_kit_failing_companion"

    async def while_open(self, ws: Any) -> None:
        await asyncio.sleep(0.1)
        raise ValueError("symbol list refused")


def test_a_failing_while_open_ends_the_connection_and_says_why(exchange_standin, lakeflow_collect):
    server = exchange_standin(subscribe, topics={"a": [tick("a", "1")]})

    result = lakeflow_collect(
        FailingCompanion, {"url": server.url}, payloads=4, schemas=[TICKS], standins=[server]
    )

    assert len(server.connections) >= 2
    reasons = " ".join(result.gaps["reason"].to_list())
    assert "closed by the source: symbol list refused" in reasons


def test_fetch_json_returns_the_parsed_body(http_standin):
    server = http_standin([b'{"list": [1, 2]}'])

    assert asyncio.run(lakeflow.fetch_json(server.url)) == {"list": [1, 2]}


def test_fetch_json_retries_a_5xx_and_waits_out_a_429(http_standin):
    server = http_standin(
        [Response(503, b"busy"), Response(429, b"", {"Retry-After": "0"}), b'{"ok": true}']
    )

    assert asyncio.run(lakeflow.fetch_json(server.url, retry_base=0.01)) == {"ok": True}
    assert len(server.requests) == 3


def test_fetch_json_says_the_status_and_the_body_of_a_refusal(http_standin):
    server = http_standin([Response(400, b'{"msg": "bad category"}')])

    with pytest.raises(
        lakeflow.RequestFailed, match=r"HTTP 400 body '\{\"msg\": \"bad category\"\}'"
    ):
        asyncio.run(lakeflow.fetch_json(server.url))


def test_fetch_json_gives_up_on_a_server_that_is_down_saying_the_last_error():
    with pytest.raises(lakeflow.RequestFailed, match=r"failed within 1s; last: Client"):
        asyncio.run(lakeflow.fetch_json("http://127.0.0.1:9/", within=1.0, retry_base=0.1))


class QuietConfig(Config):
    silence_timeout: float | None = 0.6


class QuietFeed(KitSource):
    type = "exchange_kit_quiet"
    Config = QuietConfig


def test_a_stream_that_answers_its_keepalive_but_carries_no_data_falls_silent(
    exchange_standin, lakeflow_collect
):
    # The stand-in acknowledges and pongs, and sends no event: payloads, but no data.
    server = exchange_standin(subscribe, answer=answer)

    result = lakeflow_collect(
        QuietFeed, {"url": server.url}, payloads=12, schemas=[TICKS], standins=[server]
    )

    assert result.rows.is_empty()
    silent = [r for r in result.gaps["reason"].to_list() if r.startswith("silent:")]
    assert silent and "but no data for" in silent[0]


def test_fetch_json_says_how_long_a_ban_asks_to_wait(http_standin):
    server = http_standin([Response(418, b'{"code":-1003}', {"Retry-After": "120"})])

    with pytest.raises(lakeflow.RequestFailed) as refused:
        asyncio.run(lakeflow.fetch_json(server.url))

    assert (refused.value.status, refused.value.retry_after) == (418, 120.0)
