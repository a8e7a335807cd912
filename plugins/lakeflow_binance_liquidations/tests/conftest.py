"""Test kit of the binance_liquidations plugin: fixture frames, expected rows, and
``lakeflow.testing``'s WebSocket stand-in and collector bound to this source.

Everything here is offered as pytest fixtures (not imported by module name) so that the
test folders of several plugins can sit side by side in one pytest run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lakeflow import TIMESTAMP
from lakeflow.testing import Collected, Collector, WebSocketStandIn

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE_TYPE = "binance_liquidations"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: When a test's batch arrives: after every time of the fixture frames (the latest, the
#: merged stream's, are of 2026-12-05), for a time more than 2 days after its receipt is
#: implausible and a dead letter (``lakeflow.decode.PLAUSIBLE``).
RECEIVED = datetime(2026, 12, 6, tzinfo=UTC)
#: Seconds a run may take before collect_async gives up (a hang, not a slow machine).
COLLECT_TIMEOUT = 20.0


def read_frames(name: str) -> list[bytes]:
    """The frames of a fixture file, one per line, byte for byte."""
    return (FIXTURES / name).read_bytes().splitlines()


def receipts(count: int) -> pl.Series:
    """The receipt times of a batch of ``count`` payloads: ``RECEIVED``, then 1 µs apart."""
    first = (RECEIVED - EPOCH) // timedelta(microseconds=1)
    return pl.Series("received_at", range(first, first + count), dtype=pl.Int64).cast(TIMESTAMP)


def utc_ms(ms: int) -> datetime:
    """A Binance millisecond time as a UTC datetime (exact: no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


#: Contract sizes of ``fixtures/coinm_exchangeInfo.json`` (BNBUSD_PERP is not listed in it).
CONTRACT_SIZES = {"BTCUSD_PERP": Decimal(100), "ETHUSD_250627": Decimal(10)}
#: Decimals of the table (DECIMAL's scale): a division rounds to this.
SCALE = Decimal("1e-18")


def sizes(order: dict[str, Any], market: str, contracts: dict[str, Decimal]) -> dict[str, Any]:
    """The normalized sizes of one order, by the mapping in lakeflow-market-schemas' README."""
    quantity, average = Decimal(order["z"]), Decimal(order["ap"])  # filled: what executed
    if market == "usdm":
        quote = next(q for q in ("USDT", "USDC", "FDUSD", "BUSD") if q in order["s"])
        return {"base_quantity": quantity, "notional": quantity * average, "currency": quote}
    size = contracts.get(order["s"])
    if size is None:  # not in the instrument list: unsized, never guessed
        return {"base_quantity": None, "notional": None, "currency": None}
    notional = quantity * size
    base = (notional / average).quantize(SCALE, rounding=ROUND_HALF_EVEN)
    return {"base_quantity": base, "notional": notional, "currency": "USD"}


def expected_row(
    frame: bytes, market: str = "usdm", contracts: dict[str, Decimal] | None = None
) -> dict[str, Any]:
    """The table row a forceOrder frame must become, worked out with the standard library.

    ``contracts`` are the COIN-M contract sizes the source knew (none: unsized rows).
    """
    event = json.loads(frame)
    event = event.get("data", event)
    order = event["o"]
    # Since the 2026 merge each event names its product (inside o, or at the top level).
    marked = order.get("st", event.get("st"))
    market = {1: "usdm", 2: "coinm"}.get(marked, market) if marked is not None else market
    trade_time = utc_ms(order["T"])
    size = sizes(order, market, contracts or {})
    return {
        "exchange": "binance",
        "market": market,
        "symbol": order["s"],
        "pair": order.get("ps", event.get("ps")),
        "side": order["S"],
        "position_side": {"SELL": "long", "BUY": "short"}[order["S"]],
        "order_type": order["o"],
        "time_in_force": order["f"],
        "quantity": Decimal(order["q"]),
        "base_quantity": size["base_quantity"],
        "price": Decimal(order["p"]),
        "average_price": Decimal(order["ap"]),
        "notional": size["notional"],
        "notional_currency": size["currency"],
        "status": order["X"],
        "last_filled_quantity": Decimal(order["l"]),
        "filled_quantity": Decimal(order["z"]),
        "trade_time": trade_time,
        "event_time": utc_ms(event["E"]),
        "date": date(trade_time.year, trade_time.month, trade_time.day),
    }


@pytest.fixture
def frames() -> Callable[[str], list[bytes]]:
    """``frames(name)``: the frames of a file in ``tests/fixtures``."""
    return read_frames


@pytest.fixture(scope="session")
def received_at() -> Callable[[int], pl.Series]:
    """``received_at(n)``: the receipt times of a batch of n payloads, 1 µs apart.

    They follow every fixture frame's times, as a real receipt would (a time more than 2
    days after its receipt is a dead letter). Session-scoped, for property tests too.
    """
    return receipts


@pytest.fixture
def coinm_contracts() -> dict[str, Decimal]:
    """The contract sizes that ``fixtures/coinm_exchangeInfo.json`` lists, by symbol."""
    return CONTRACT_SIZES


@pytest.fixture
def exchange_info() -> bytes:
    """A ``GET /dapi/v1/exchangeInfo`` body in Binance's shape (two COIN-M symbols)."""
    return (FIXTURES / "coinm_exchangeInfo.json").read_bytes()


@pytest.fixture
def expected() -> Callable[..., dict[str, Any]]:
    """``expected(frame, market="usdm", contracts=None)``: the row a valid frame must become."""
    return expected_row


@pytest.fixture
def stand_in() -> Callable[..., WebSocketStandIn]:
    """``async with stand_in(path, frames, ...) as server``: Binance on 127.0.0.1.

    A :class:`lakeflow.testing.WebSocketStandIn` that serves only ``path``. Connection
    *k* receives the *k*-th list of frames; every connection but the last is then
    closed with ``close`` (code, reason), like Binance dropping a client.
    """

    def make(
        path: str,
        *connections: Sequence[bytes],
        close: tuple[int, str] = (1001, "going away"),
    ) -> WebSocketStandIn:
        return WebSocketStandIn(*connections, path=path, close=close)

    return make


@pytest.fixture
def collect(lakeflow_collect: Collector) -> Callable[..., Awaitable[Collected]]:
    """``await collect(server, config, payloads=n)``: run the real source against the stand-in.

    ``lakeflow_collect`` (from ``lakeflow.testing``) runs the real runtime and Delta sink
    in ``tmp_path`` until ``n`` payloads arrived, then returns what was committed.
    ``ws_url`` always points at the stand-in, so no test can reach Binance, and a request
    for the wrong stream path fails the test at once.
    """

    async def run(server: WebSocketStandIn, config: dict[str, Any], *, payloads: int) -> Collected:
        return await lakeflow_collect.run_async(
            SOURCE_TYPE,
            # The instrument lists' hosts too: a closed loopback port unless a test serves it.
            {
                "rest_url": "http://127.0.0.1:9",
                "usdm_rest_url": "http://127.0.0.1:9",
                **config,
                "ws_url": server.url,
            },
            payloads=payloads,
            timeout=COLLECT_TIMEOUT,
            standins=[server],
        )

    return run
