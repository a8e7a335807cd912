"""Test kit of the okx_liquidations plugin: OKX's protocol for ``lakeflow.testing``'s
stand-ins, fixture frames and instrument lists, and the rows they must become.

Everything here is offered as pytest fixtures (not imported by module name) so that the
test folders of several plugins can sit side by side in one pytest run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lakeflow_okx_liquidations import (
    LIQUIDATION,
    OkxLiquidationsConfig,
    OkxLiquidationsSource,
    instrument_table,
)
from lakeflow_okx_liquidations.source import INSTRUMENTS

from lakeflow import Batch
from lakeflow.testing import Collected, Collector, ExchangeStandIn, HttpStandIn, Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE_TYPE = "okx_liquidations"
WS_PATH = "/ws/v5/public"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
CHANNEL = "liquidation-orders"
#: The connection id OKX's acks carry (any id; the README's).
CONN_ID = "a4d3ae55"
#: Seconds a run may take before it gives up (a hang, not a slow machine).
COLLECT_TIMEOUT = 20.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Decimals of the table (DECIMAL's scale): a division rounds to this.
SCALE = Decimal("1e-18")
#: A closed loopback port: a REST host that refuses every connection.
NOWHERE = "http://127.0.0.1:9"


def read_frames(name: str) -> list[bytes]:
    """The frames of a fixture file, one per line, byte for byte."""
    return (FIXTURES / name).read_bytes().splitlines()


def read_instruments() -> dict[str, dict[str, Any]]:
    """The ``/api/v5/public/instruments`` body of each type, as in ``fixtures/``."""
    return {
        inst_type: json.loads((FIXTURES / f"instruments_{inst_type.lower()}.json").read_text())
        for inst_type in ("SWAP", "FUTURES")
    }


def listed_instruments() -> dict[str, dict[str, Any]]:
    """Every instrument the fixture lists name, by ``instId``."""
    return {i["instId"]: i for body in read_instruments().values() for i in body["data"]}


def utc_ms(ms: int) -> datetime:
    """An OKX millisecond time as a UTC datetime (exact: no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


def expected_rows(
    frames: Iterable[bytes], listed: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The rows OKX frames must become, worked out with the standard library.

    By the OKX rows of lakeflow-market-schemas' mapping table; ``listed`` are the
    instruments the source knew (an instrument not in it: unsized). Sorted as
    :func:`stored_rows` sorts, ``received_at`` left out.
    """
    rows = []
    for frame in frames:
        for element in json.loads(frame)["data"]:
            instrument = listed.get(element["instId"])
            for detail in element["details"]:
                rows.append(_expected_row(element, detail, instrument))
    return sorted(rows, key=_order)


def _expected_row(
    element: Mapping[str, Any], detail: Mapping[str, Any], instrument: Mapping[str, Any] | None
) -> dict[str, Any]:
    size, price = Decimal(detail["sz"]), Decimal(detail["bkPx"])
    base = notional = currency = None
    if instrument is not None:
        value = size * Decimal(instrument["ctVal"])
        if instrument["ctType"] == "linear":
            base, notional, currency = value, value * price, instrument["settleCcy"]
        else:
            with localcontext() as exact:
                exact.prec = 60
                base = (value / price).quantize(SCALE, rounding=ROUND_HALF_EVEN)
            notional, currency = value, instrument["ctValCcy"]
    position = detail["posSide"]
    if position == "net":  # one-way mode: the liquidation order sells to close a long
        position = {"sell": "long", "buy": "short"}[detail["side"]]
    trade_time = utc_ms(int(detail["ts"]))
    row = dict.fromkeys(LIQUIDATION.columns)
    row.update(
        exchange="okx",
        market=element["instType"].lower(),
        symbol=element["instId"],
        side=detail["side"],
        position_side=position,
        quantity=size,
        base_quantity=base,
        price=price,
        notional=notional,
        notional_currency=currency,
        trade_time=trade_time,
        date=date(trade_time.year, trade_time.month, trade_time.day),
    )
    del row["received_at"]
    return row


def _order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["trade_time"], row["symbol"], row["quantity"])


def stored_rows(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """A table's rows without the receipt time, in a stable order."""
    return sorted(rows.drop("received_at").to_dicts(), key=_order)


def okx_subscribe(message: str, refuse: Sequence[str] = ()) -> tuple[list[str], list[str]] | None:
    """OKX's side of a subscription: an ack echoing each ``arg``, or an error event.

    The topics are instrument types: a type's frames go only to its subscribers.
    ``refuse`` names types this server does not serve (it answers them with an error).
    """
    try:
        request = json.loads(message)
    except ValueError:
        return None
    if not isinstance(request, dict) or request.get("op") != "subscribe":
        return None
    topics, replies = [], []
    for arg in request.get("args") or [None]:
        if (
            isinstance(arg, dict)
            and arg.get("channel") == CHANNEL
            and arg.get("instType") in ("SWAP", "FUTURES", "MARGIN", "OPTION")
            and arg["instType"] not in refuse
        ):
            topics.append(arg["instType"])
            replies.append(json.dumps({"event": "subscribe", "arg": arg, "connId": CONN_ID}))
        else:
            replies.append(okx_error(message))
    return topics, replies


def okx_answer(message: str) -> list[str]:
    """OKX's answer to anything that is not a subscription: ``pong`` to ``ping``, else an error."""
    return ["pong"] if message == "ping" else [okx_error(message)]


def okx_error(message: str) -> str:
    """OKX's error event for a request it cannot take."""
    return json.dumps(
        {"event": "error", "code": "60012", "msg": f"Invalid request: {message}", "connId": CONN_ID}
    )


def instruments_answer(
    bodies: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
) -> Callable[[Request], Response]:
    """The instrument endpoint: each ``instType``'s body; an unknown one refused as OKX does."""

    def answer(request: Request) -> Response:
        current = bodies() if callable(bodies) else bodies
        body = current.get(request.query.get("instType", ""))
        if body is None:
            return Response(400, {"code": "51000", "msg": "Parameter instType error", "data": []})
        return Response(body=body)

    return answer


@pytest.fixture
def okx_frames() -> Callable[[str], list[bytes]]:
    """``okx_frames(name)``: the frames of a file in ``tests/fixtures``."""
    return read_frames


@pytest.fixture
def okx_instrument_bodies() -> dict[str, dict[str, Any]]:
    """The instrument list bodies of ``fixtures/``, by ``instType`` (a fresh copy)."""
    return read_instruments()


@pytest.fixture
def okx_listed() -> dict[str, dict[str, Any]]:
    """Every instrument of the fixture lists, by ``instId``."""
    return listed_instruments()


@pytest.fixture
def okx_expected() -> Callable[..., list[dict[str, Any]]]:
    """``okx_expected(frames, listed)``: the rows the frames must become (see expected_rows)."""
    return expected_rows


@pytest.fixture
def okx_stored() -> Callable[[pl.DataFrame], list[dict[str, Any]]]:
    """``okx_stored(rows)``: a table's rows, comparable to ``okx_expected``'s."""
    return stored_rows


@pytest.fixture
def okx_exchange(
    exchange_standin: Callable[..., ExchangeStandIn],
) -> Callable[..., ExchangeStandIn]:
    """``okx_exchange({"SWAP": frames, ...}, refuse=(), idle_timeout=None)``: OKX on 127.0.0.1.

    An :class:`~lakeflow.testing.ExchangeStandIn` (on its own thread) that serves only
    ``/ws/v5/public`` and speaks OKX: subscription acks echoing the ``arg`` with a
    ``connId``, an error event for a bad request (or a ``refuse``\\ d type), ``pong`` to
    ``ping``, each type's frames only to its subscribers (sent on subscribing, more with
    ``publish(type, ...)``), and a client silent for ``idle_timeout`` s dropped.
    """

    def make(
        topics: Mapping[str, Sequence[bytes]] | None = None,
        *,
        refuse: Sequence[str] = (),
        idle_timeout: float | None = None,
    ) -> ExchangeStandIn:
        return exchange_standin(
            lambda message: okx_subscribe(message, refuse),
            answer=okx_answer,
            topics=topics or {},
            path=WS_PATH,
            idle_timeout=idle_timeout,
        )

    return make


@pytest.fixture
def okx_rest(http_standin: Callable[..., HttpStandIn]) -> Callable[..., HttpStandIn]:
    """``okx_rest(bodies=None, fail_after=None)``: OKX's instrument endpoint on 127.0.0.1.

    An :class:`~lakeflow.testing.HttpStandIn` (on its own thread) serving only
    ``/api/v5/public/instruments``. ``bodies`` maps ``instType`` to a body (default:
    ``fixtures/``'s), or is a function returning that map, read at every request (to
    list an instrument later). After ``fail_after`` requests, every answer is a 503.
    """

    def make(
        bodies: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        fail_after: int | None = None,
    ) -> HttpStandIn:
        answer = instruments_answer(read_instruments() if bodies is None else bodies)
        if fail_after is None:
            return http_standin(path=INSTRUMENTS_PATH, then=answer)
        unavailable = Response(503, {"code": "50001", "msg": "Service temporarily unavailable"})
        return http_standin([answer] * fail_after, path=INSTRUMENTS_PATH, then=unavailable)

    return make


@pytest.fixture
def okx_collect(
    lakeflow_collect: Collector, okx_rest: Callable[..., HttpStandIn]
) -> Callable[..., Awaitable[Collected]]:
    """``await okx_collect(server, config, payloads=n, rest=None)``: run the real source.

    ``lakeflow_collect`` (from ``lakeflow.testing``) runs the real runtime and Delta sink
    in ``tmp_path`` until ``n`` payloads arrived, then returns what was committed.
    ``ws_url`` always points at the stand-in and ``rest_url`` at ``rest`` (a stand-in, by
    default one serving ``fixtures/``'s instrument lists, or a URL), so no test can reach
    OKX; a request for a wrong path fails the test at once.
    """

    async def run(
        server: ExchangeStandIn,
        config: Mapping[str, Any] | None = None,
        *,
        payloads: int,
        rest: HttpStandIn | str | None = None,
    ) -> Collected:
        if rest is None:
            rest = okx_rest()
        standins: list[Any] = [server]
        if isinstance(rest, HttpStandIn):
            standins.append(rest)
        rest_url = rest if isinstance(rest, str) else rest.url
        return await lakeflow_collect.run_async(
            SOURCE_TYPE,
            {**(config or {}), "rest_url": rest_url, "ws_url": server.url},
            payloads=payloads,
            timeout=COLLECT_TIMEOUT,
            standins=standins,
        )

    return run


@pytest.fixture
def okx_batch() -> Callable[[Sequence[bytes]], Batch]:
    """``okx_batch(payloads)``: a Batch of those payloads, all received now."""

    def make(payloads: Sequence[bytes]) -> Batch:
        now = datetime.now(UTC)
        received = pl.Series([now] * len(payloads), dtype=pl.Datetime("us", "UTC"))
        return Batch(payloads=list(payloads), received_at=received)

    return make


@pytest.fixture
def okx_decoder() -> Callable[..., OkxLiquidationsSource]:
    """``okx_decoder(sized=True, **config)``: a source to call ``decode`` on, no server.

    With ``sized``, it knows the fixture's instrument lists (as after the core read them).
    """

    def make(sized: bool = True, **config: Any) -> OkxLiquidationsSource:
        source = OkxLiquidationsSource("source", OkxLiquidationsConfig(**config))
        if sized:
            # As if the core had read it: decode reads the core's current copy.
            source.refs.put(
                INSTRUMENTS, pl.concat([instrument_table(b) for b in read_instruments().values()])
            )
        return source

    return make


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(condition, what)``: poll until true; fail after ``within`` s."""

    async def wait(
        condition: Callable[[], bool], what: str, within: float = COLLECT_TIMEOUT
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    return wait


@pytest.fixture
def nowhere() -> str:
    """A REST URL on a closed loopback port: every connection refused."""
    return NOWHERE
