"""Test kit of the bybit_liquidations plugin: fixture frames, the rows they must become, and
``lakeflow.testing``'s stand-ins speaking Bybit v5 (``../shared/data/bybit/README.md``).

Everything here is offered as pytest fixtures (not imported by module name) so that the
test folders of several plugins can sit side by side in one pytest run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lakeflow_bybit_liquidations import BybitLiquidationsConfig, BybitLiquidationsSource

from lakeflow import TIMESTAMP, Batch, Decoded
from lakeflow.testing import Collected, Collector, ExchangeStandIn, HttpStandIn, Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE_TYPE = "bybit_liquidations"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: When a test's batch arrives: after every time of the fixture frames (the latest are of
#: 2025-11-25 00:00:00.250), for a time more than 2 days after its receipt is implausible
#: and a dead letter (``lakeflow.decode.PLAUSIBLE``).
RECEIVED = datetime(2025, 11, 25, 1, tzinfo=UTC)
INSTRUMENTS_PATH = "/v5/market/instruments-info"
#: Seconds a run may take before collect gives up (a hang, not a slow machine).
COLLECT_TIMEOUT = 20.0
#: Decimals of the table (DECIMAL's scale): a division rounds to this.
SCALE = Decimal("1e-18")
#: The connection id Bybit's replies carry (any opaque string).
CONN_ID = "d1f0c4a2-77e5-4b5e-9c0e-2f1c6b9a1e01"


def read_frames(name: str) -> list[bytes]:
    """The frames of a fixture file, one per line, byte for byte."""
    return (FIXTURES / name).read_bytes().splitlines()


def read_instruments(category: str) -> list[dict[str, Any]]:
    """The instruments-info entries of ``fixtures/instruments_<category>.json``."""
    return json.loads((FIXTURES / f"instruments_{category}.json").read_text())


def receipts(count: int) -> pl.Series:
    """The receipt times of a batch of ``count`` payloads: ``RECEIVED``, then 1 µs apart."""
    first = (RECEIVED - EPOCH) // timedelta(microseconds=1)
    return pl.Series("received_at", range(first, first + count), dtype=pl.Int64).cast(TIMESTAMP)


def utc_ms(ms: int) -> datetime:
    """A Bybit millisecond time as a UTC datetime (exact: no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


def expected_rows(
    frame: bytes | str, category: str = "linear", quote_coins: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The table rows an allLiquidation frame must become, worked out with the standard library.

    The mapping is the Bybit rows of lakeflow-market-schemas' README: ``S`` is the
    liquidated position (Buy: a long); linear sizes are base coin (notional ``v * p`` in
    the symbol's quote coin, null when the instrument list did not give it: see
    ``quote_coins``); inverse sizes are contracts of 1 USD (notional ``v`` USD).
    """
    message = json.loads(frame)
    rows = []
    for event in message["data"]:
        quantity, price = Decimal(event["v"]), Decimal(event["p"])
        if category == "linear":
            base, notional = quantity, quantity * price
            currency = (quote_coins or {}).get(event["s"])
        else:
            notional, currency = quantity, "USD"
            base = (notional / price).quantize(SCALE, rounding=ROUND_HALF_EVEN)
        trade_time = utc_ms(event["T"])
        rows.append(
            {
                "exchange": "bybit",
                "market": category,
                "symbol": event["s"],
                "pair": None,
                "side": event["S"],
                "position_side": {"Buy": "long", "Sell": "short"}[event["S"]],
                "order_type": None,
                "time_in_force": None,
                "quantity": quantity,
                "base_quantity": base,
                "price": price,
                "average_price": None,
                "notional": notional,
                "notional_currency": currency,
                "status": None,
                "last_filled_quantity": None,
                "filled_quantity": None,
                "trade_time": trade_time,
                "event_time": utc_ms(message["ts"]),
                "date": date(trade_time.year, trade_time.month, trade_time.day),
            }
        )
    return rows


def stored_rows(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Table rows without the receipt time, in event order (a table has no row order)."""
    return rows.drop("received_at").sort("trade_time", "symbol").to_dicts()


def in_order(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (row["trade_time"], row["symbol"]))


# -- Bybit's public WebSocket, as a conversation -------------------------------------------


def bybit_reply(request: Mapping[str, Any], success: bool, ret_msg: str) -> str:
    """A reply in Bybit's shape: ``{"success", "ret_msg", "conn_id", "req_id", "op"}``."""
    reply: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": CONN_ID}
    if "req_id" in request:
        reply["req_id"] = request["req_id"]
    reply["op"] = request.get("op")
    return json.dumps(reply, separators=(",", ":"))


@dataclass
class BybitProtocol:
    """Bybit v5's public wire format for an :class:`ExchangeStandIn`.

    ``{"op":"subscribe","args":[...],"req_id":"N"}`` subscribes the ``allLiquidation``
    topics of listed symbols and is acknowledged once, echoing ``req_id``; a topic of a
    symbol Bybit does not list is refused with ``error:handler not found,topic:...``
    (the listed topics of the same request are still subscribed). ``{"op":"ping"}`` is
    answered with a pong. ``requests`` keeps every subscribe request, parsed.
    """

    listed: set[str]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def subscribe(self, message: str) -> tuple[Sequence[str], Sequence[str]] | None:
        request = json.loads(message)
        if request.get("op") != "subscribe":
            return None
        self.requests.append(request)
        args = list(request.get("args", []))
        known = [topic for topic in args if topic.removeprefix("allLiquidation.") in self.listed]
        unknown = [topic for topic in args if topic not in known]
        if unknown:
            reply = bybit_reply(request, False, f"error:handler not found,topic:{unknown[0]}")
        else:
            reply = bybit_reply(request, True, "subscribe")
        return known, [reply]

    def answer(self, message: str) -> Sequence[str] | None:
        request = json.loads(message)
        if request.get("op") == "ping":
            return [bybit_reply(request, True, "pong")]
        return None


# -- Bybit's instruments-info, paged -------------------------------------------------------


@dataclass
class InstrumentsServer:
    """``GET /v5/market/instruments-info`` in Bybit's shape, ``page_size`` entries a page.

    Pages after the first are asked for with ``cursor``, as ``result.nextPageCursor``
    said (an opaque, percent-encoded string). The first ``fail_first`` requests are
    refused with HTTP 403 (the list unreachable); ``relisted``, when set, is the list
    served once one whole listing was served (a symbol listed meanwhile).
    """

    category: str
    listed: list[dict[str, Any]]
    page_size: int = 2
    fail_first: int = 0
    relisted: list[dict[str, Any]] | None = None
    server: HttpStandIn | None = None
    listings: int = 0
    failures: int = 0

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def requests(self) -> list[Request]:
        assert self.server is not None
        return self.server.requests

    def __call__(self, request: Request) -> Response:
        if self.failures < self.fail_first:
            self.failures += 1
            return Response(403, b"<html>403 Forbidden</html>")
        if request.query.get("category") != self.category or request.query.get("limit") != "1000":
            body = {"retCode": 10001, "retMsg": "params error", "result": {}, "time": 0}
            return Response(200, body)
        entries = self.listed if self.listings == 0 or self.relisted is None else self.relisted
        cursor = request.query.get("cursor", "")
        start = int(cursor.removeprefix("page%3D")) if cursor else 0
        end = start + self.page_size
        following = f"page%3D{end}" if end < len(entries) else ""
        if not following:
            self.listings += 1
        body = {
            "retCode": 0,
            "retMsg": "OK",
            "result": {
                "category": self.category,
                "list": entries[start:end],
                "nextPageCursor": following,
            },
            "retExtInfo": {},
            "time": 1764000000000,
        }
        return Response(200, body)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def frames() -> Callable[[str], list[bytes]]:
    """``frames(name)``: the frames of a file in ``tests/fixtures``, byte for byte."""
    return read_frames


@pytest.fixture
def instruments() -> Callable[[str], list[dict[str, Any]]]:
    """``instruments(category)``: the instruments-info entries of the fixture list."""
    return read_instruments


@pytest.fixture
def quote_coins() -> dict[str, str]:
    """The quote coin of each linear symbol of ``fixtures/instruments_linear.json``."""
    return {entry["symbol"]: entry["quoteCoin"] for entry in read_instruments("linear")}


@pytest.fixture
def expected() -> Callable[..., list[dict[str, Any]]]:
    """``expected(frame, category="linear", quote_coins=None)``: the rows a frame must become."""
    return expected_rows


@pytest.fixture
def stored() -> Callable[[pl.DataFrame], list[dict[str, Any]]]:
    """``stored(rows)``: a table's rows without ``received_at``, in trade-time order."""
    return stored_rows


@pytest.fixture
def ordered() -> Callable[[Iterable[dict[str, Any]]], list[dict[str, Any]]]:
    """``ordered(rows)``: expected rows in the order of :func:`stored`."""
    return in_order


@pytest.fixture(scope="session")
def received_at() -> Callable[[int], pl.Series]:
    """``received_at(n)``: the receipt times ``decode`` gives a batch of n payloads.

    ``RECEIVED`` (after every fixture frame's times, as a real receipt), then 1 µs apart.
    """
    return receipts


@pytest.fixture
def decode() -> Callable[..., Decoded]:
    """``decode(payloads, instruments=None, **config)``: the source's decode alone.

    No server, no runtime: a batch received at ``received_at(len(payloads))``, decoded by
    a source that knows ``instruments`` (a list of instruments-info entries; None: not read).
    """
    from lakeflow_bybit_liquidations import instrument_frame
    from lakeflow_bybit_liquidations.source import INSTRUMENTS

    def run(
        payloads: list[bytes], instruments: list[dict[str, Any]] | None = None, **config: Any
    ) -> Decoded:
        source = BybitLiquidationsSource("test", BybitLiquidationsConfig(**config))
        if instruments is not None:
            # As if the core had read it: decode reads the core's current copy.
            source.refs.put(INSTRUMENTS, instrument_frame(instruments))
        return source.decode(Batch(payloads=payloads, received_at=receipts(len(payloads))))

    return run


@pytest.fixture
def bybit_ws(exchange_standin: Callable[..., ExchangeStandIn]) -> Callable[..., ExchangeStandIn]:
    """``bybit_ws(topics, category="linear", listed=None, idle_timeout=None)``: Bybit's stream.

    A started :class:`ExchangeStandIn` serving only ``/v5/public/<category>`` and talking
    :class:`BybitProtocol`: ``topics`` maps ``allLiquidation.<symbol>`` to the frames a
    subscriber gets; ``listed`` are the symbols Bybit knows (default: the fixture
    list's). The protocol is at ``server.protocol`` (its subscribe requests, parsed).
    """

    def start(
        topics: Mapping[str, Sequence[bytes | str]] | None = None,
        *,
        category: str = "linear",
        listed: Iterable[str] | None = None,
        idle_timeout: float | None = None,
    ) -> ExchangeStandIn:
        if listed is None:
            listed = [entry["symbol"] for entry in read_instruments(category)]
        protocol = BybitProtocol(set(listed))
        server = exchange_standin(
            protocol.subscribe,
            answer=protocol.answer,
            topics=topics or {},
            path=f"/v5/public/{category}",
            idle_timeout=idle_timeout,
        )
        server.protocol = protocol  # type: ignore[attr-defined]
        return server

    return start


@pytest.fixture
def bybit_rest(http_standin: Callable[..., HttpStandIn]) -> Callable[..., InstrumentsServer]:
    """``bybit_rest(category="linear", listed=None, page_size=2, fail_first=0, relisted=None)``.

    A started :class:`HttpStandIn` serving only instruments-info, paged by cursor (see
    :class:`InstrumentsServer`); ``listed`` defaults to the fixture list of the category.
    """

    def start(
        category: str = "linear",
        listed: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> InstrumentsServer:
        pages = InstrumentsServer(category, listed or read_instruments(category), **options)
        pages.server = http_standin(then=pages, path=INSTRUMENTS_PATH)
        return pages

    return start


def _run_options(
    ws: ExchangeStandIn, rest: InstrumentsServer, config: Mapping[str, Any] | None, payloads: int
) -> dict[str, Any]:
    assert rest.server is not None
    return {
        "config": {**(config or {}), "ws_url": ws.url, "rest_url": rest.url},
        "payloads": payloads,
        "timeout": COLLECT_TIMEOUT,
        "standins": [ws, rest.server],
    }


@pytest.fixture
def collect(lakeflow_collect: Collector) -> Callable[..., Collected]:
    """``collect(ws, rest, config, payloads=n, source=SOURCE_TYPE)``: run the real source.

    ``lakeflow_collect`` (from ``lakeflow.testing``) runs the real runtime and Delta sink
    in ``tmp_path`` until ``n`` payloads arrived (acknowledgements and pongs count),
    then returns what was committed. ``ws_url`` and ``rest_url`` always point at the
    stand-ins, so no test can reach Bybit, and a request for a wrong path fails the test
    at once. ``source`` may be a source class (a subclass made for a test).
    """

    def run(
        ws: ExchangeStandIn,
        rest: InstrumentsServer,
        config: Mapping[str, Any] | None = None,
        *,
        payloads: int,
        source: Any = SOURCE_TYPE,
    ) -> Collected:
        return lakeflow_collect(source, **_run_options(ws, rest, config, payloads))

    return run


@pytest.fixture
def collect_async(lakeflow_collect: Collector) -> Callable[..., Awaitable[Collected]]:
    """``await collect_async(ws, rest, config, payloads=n)``: :func:`collect` in a running loop,
    for a test that acts on the stand-ins meanwhile (a drop)."""

    async def run(
        ws: ExchangeStandIn,
        rest: InstrumentsServer,
        config: Mapping[str, Any] | None = None,
        *,
        payloads: int,
        source: Any = SOURCE_TYPE,
    ) -> Collected:
        return await lakeflow_collect.run_async(source, **_run_options(ws, rest, config, payloads))

    return run


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
