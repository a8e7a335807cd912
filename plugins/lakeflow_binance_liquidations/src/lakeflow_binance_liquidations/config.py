"""The config of a ``binance_liquidations`` source, and the stream URL it implies."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from lakeflow import SourceConfig, base_url

#: Hosts of Binance's futures WebSocket streams.
HOSTS: dict[str, str] = {
    "usdm": "wss://fstream.binance.com",
    "coinm": "wss://dstream.binance.com",
}
#: Where COIN-M's instrument list is served: its contract sizes turn contracts into
#: a notional (``GET /dapi/v1/exchangeInfo``, ``symbols[].contractSize``).
REST_HOSTS: dict[str, str] = {"coinm": "https://dapi.binance.com"}
EXCHANGE_INFO = "/dapi/v1/exchangeInfo"
#: Seconds between refreshes of the contract sizes (a new listing is sized within this).
CONTRACTS_REFRESH = 3600.0
#: Where a stream sits under a host. Since 2026-04-23 Binance serves ``forceOrder`` (a
#: "market" stream) only under the routed base ``/market``; the root paths of before
#: (``/ws/...``, ``/stream?...``) still accept connections, answer pings and
#: subscriptions, and forward no events. COIN-M follows the same routing.
ROUTES: dict[str, str] = {"market": "/market", "legacy": ""}


def _all_routes() -> list[Literal["market", "legacy"]]:
    """Every route, the preferred first: the default of ``routes``."""
    return ["market", "legacy"]


#: Binance refuses a futures connection that carries more streams than this (USD-M's
#: current page says 1024, COIN-M's 200; a combined URL of 1024 streams is also ~20 kB,
#: past what many gateways take in a request line: 200 is safe on both).
MAX_STREAMS = 200
ALL_MARKET_STREAM = "!forceOrder@arr"
#: How long silence is normal on an all-market stream, per market. USD-M's carries
#: liquidations of every perpetual, minutes apart on the quietest days; COIN-M's far
#: fewer. A combined stream of named symbols is not judged by default: one symbol may
#: go hours without a liquidation.
ALL_MARKET_SILENCE: dict[str, float] = {"usdm": 300.0, "coinm": 3600.0}

_SYMBOL = re.compile(r"[A-Z0-9_]+")
#: Path parts the source appends itself: a ``ws_url`` ending in one is a URL from before
#: the routing (``.../ws``) or a routed base, and would double them.
_ROUTE_WORDS = frozenset({"ws", "stream", "market", "public", "private"})


class LiquidationsConfig(SourceConfig):
    """``[sources.NAME]`` keys of a ``binance_liquidations`` source."""

    market: Literal["usdm", "coinm"] = Field(
        default="usdm",
        description='"usdm" (USD-M futures, fstream) or "coinm" (COIN-M futures, dstream).',
    )
    symbols: list[str] = Field(
        default_factory=list,
        description=(
            "Symbols to follow, as Binance writes them (BTCUSDT, BTCUSD_PERP), at most 200. "
            "Empty: every symbol of the market, through the all-market stream."
        ),
    )
    ws_url: str | None = Field(
        default=None,
        description=(
            "Replaces the scheme and host, wss://fstream.binance.com (usdm) or "
            "wss://dstream.binance.com (coinm), with a testnet, a proxy or a test server; "
            "the route and stream path are appended to it (see routes)."
        ),
    )
    rest_url: str | None = Field(
        default=None,
        description=(
            "Replaces https://dapi.binance.com, where a coinm source reads the contract "
            "sizes that turn contracts into a notional (a test server, a proxy)."
        ),
    )
    routes: list[Literal["market", "legacy"]] = Field(
        default_factory=_all_routes,
        min_length=1,
        description=(
            'Where under the host the stream is, tried in order: "market" (/market/ws/..., '
            'Binance\'s routing since 2026-04-23) and "legacy" (/ws/..., before). The '
            "source falls over to the next after a silent connection or a refused handshake."
        ),
    )

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, symbols: list[str]) -> list[str]:
        bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
        if bad:
            raise ValueError(
                f"not Binance symbols: {', '.join(map(repr, bad))}; write each as Binance "
                "lists it: upper-case letters, digits and '_' (BTCUSDT, BTCUSD_PERP)"
            )
        unique = list(dict.fromkeys(symbols))
        if len(unique) > MAX_STREAMS:
            raise ValueError(
                f"{len(unique)} symbols, but Binance carries at most {MAX_STREAMS} streams on "
                "one connection; leave symbols empty to follow every symbol through one "
                "all-market stream, or split them across several sources"
            )
        return unique

    @field_validator("ws_url")
    @classmethod
    def _check_ws_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return base_url(
            url,
            schemes=("ws", "wss"),
            example="wss://fstream.binance.com",
            appended="the stream path",
            reserved=_ROUTE_WORDS,
            hint="choose the Binance route with `routes`",
        )

    @field_validator("rest_url")
    @classmethod
    def _check_rest_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return base_url(
            url,
            schemes=("http", "https"),
            example="https://dapi.binance.com",
            appended=EXCHANGE_INFO,
            reserved=("dapi",),
        )

    def exchange_info_url(self) -> str | None:
        """Where the contract sizes are (COIN-M), or None (USD-M quantities are base units)."""
        if self.market != "coinm":
            return None
        return f"{self.rest_url or REST_HOSTS['coinm']}{EXCHANGE_INFO}"

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, routes: list[str]) -> list[str]:
        if len(set(routes)) != len(routes):
            raise ValueError("lists a route twice")
        return routes

    @property
    def combined(self) -> bool:
        """True when the source reads named symbols on a combined stream (payloads wrapped)."""
        return bool(self.symbols)

    def stream_urls(self) -> list[str]:
        """The URLs to connect to, one per route, preferred first.

        The all-market stream ``<host><route>/ws/!forceOrder@arr``, or one combined stream
        of the symbols ``<host><route>/stream?streams=btcusdt@forceOrder/...``.
        """
        host = self.ws_url or HOSTS[self.market]
        if self.combined:
            streams = "/".join(f"{symbol.lower()}@forceOrder" for symbol in self.symbols)
            path = f"/stream?streams={streams}"
        else:
            path = f"/ws/{ALL_MARKET_STREAM}"
        return [f"{host}{ROUTES[route]}{path}" for route in self.routes]

    def stream_url(self) -> str:
        """The preferred URL: the first of :meth:`stream_urls`."""
        return self.stream_urls()[0]

    @property
    def silence_timeout(self) -> float | None:
        """Seconds without an event that are normal for this stream (None: not judged)."""
        return None if self.combined else ALL_MARKET_SILENCE[self.market]
