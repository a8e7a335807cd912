"""A loopback stand-in for Binance's 24 h ticker endpoints, for the tests.

It is ``lakeflow.testing.HttpStandIn`` (a real aiohttp server on 127.0.0.1) taught
Binance's three endpoints: ``/api/v3/ticker/24hr`` (spot), ``/fapi/v1/ticker/24hr``
(USD-M) and ``/dapi/v1/ticker/24hr`` (COIN-M), answered from the fixture files. Tests
queue :class:`Reply` objects (status, headers, body, a stall, a drop) that are served in
order, one per request; with none queued, it answers like Binance: the whole fixture,
or the tickers ``symbols=[...]`` names (made up from the first fixture ticker for
symbols the fixture lacks). Every request is recorded in ``requests``;
:func:`market_of` and :func:`symbols_of` read them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from lakeflow.testing import HttpStandIn, Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
PATHS = {
    "spot": "/api/v3/ticker/24hr",
    "usdm": "/fapi/v1/ticker/24hr",
    "coinm": "/dapi/v1/ticker/24hr",
}
MARKET_OF_PATH = {path: market for market, path in PATHS.items()}


def fixture(market: str, variant: str = "") -> bytes:
    """The fixture body of ``market``'s endpoint (all symbols).

    ``variant`` picks another body of the same endpoint: ``"halted"`` (spot with halted
    and delisted symbols), ``"sorted"`` (USD-M with its keys in alphabetical order).
    """
    suffix = f"_{variant}" if variant else ""
    return (FIXTURES / f"{market}_ticker_24hr{suffix}.json").read_bytes()


def tickers(market: str, variant: str = "") -> list[dict]:
    """The fixture's tickers of ``market``, parsed."""
    return json.loads(fixture(market, variant))


def market_of(request: Request) -> str | None:
    """Which market's endpoint a request asked for (None: none of them)."""
    return MARKET_OF_PATH.get(request.path)


def symbols_of(request: Request) -> list[str] | None:
    """The ``symbols=[...]`` list of a request, parsed, if it had one."""
    return json.loads(request.query["symbols"]) if "symbols" in request.query else None


def answer(request: Request) -> Response:
    """What Binance would send: all tickers, or those ``symbols=[...]`` names."""
    market = market_of(request)
    if market is None:
        return Response(404, {"code": -1, "msg": f"no endpoint {request.path}"})
    if "symbols" not in request.query:
        return Response(body=fixture(market))
    known = {t["symbol"]: t for t in tickers(market)}
    template = tickers(market)[0]
    found = []
    for symbol in json.loads(request.query["symbols"]):
        ticker = copy.deepcopy(known.get(symbol, template))
        ticker["symbol"] = symbol
        found.append(ticker)
    return Response(body=json.dumps(found, separators=(",", ":")).encode())


@dataclass
class Reply:
    """One programmed answer. ``body=None`` means the normal answer for the request."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (longer than the client's timeout: a stall).
    stall: float = 0.0
    #: Close the connection without answering (a broken connection).
    drop: bool = False

    def __call__(self, request: Request) -> Response:
        """The response to ``request`` (HttpStandIn calls a queued function with it)."""
        body = answer(request).body if self.body is None else self.body
        return Response(self.status, body, self.headers, delay=self.stall, drop=self.drop)


class StandIn(HttpStandIn):
    """The server: ``async with StandIn() as server`` on this loop, ``with`` on a thread."""

    def __init__(self) -> None:
        super().__init__(
            then=answer,
            headers={"X-MBX-USED-WEIGHT-1M": "80", "Content-Type": "application/json"},
        )
