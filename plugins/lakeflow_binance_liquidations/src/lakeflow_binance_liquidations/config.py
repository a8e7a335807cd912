"""The config of a ``binance_liquidations`` source, and the stream URL it implies."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lakeflow import StreamingConfig, base_url

#: Hosts of Binance's futures WebSocket streams. Since the 2026-06-30 merge both carry
#: the same all-market content (USDⓈ-M and COIN-M events, each marked by ``st``); a
#: source of both products reads fstream's, whose routing Binance documents.
HOSTS: dict[str, str] = {
    "usdm": "wss://fstream.binance.com",
    "coinm": "wss://dstream.binance.com",
    "all": "wss://fstream.binance.com",
}
#: The products a ``market`` keeps.
PRODUCTS: dict[str, tuple[str, ...]] = {
    "usdm": ("usdm",),
    "coinm": ("coinm",),
    "all": ("usdm", "coinm"),
}
#: Each product's REST host and instrument list (``exchangeInfo``): USDⓈ-M's names its
#: symbols, COIN-M's also their contract sizes (contracts → a USD notional).
REST_HOSTS: dict[str, str] = {
    "usdm": "https://fapi.binance.com",
    "coinm": "https://dapi.binance.com",
}
EXCHANGE_INFO: dict[str, str] = {
    "usdm": "/fapi/v1/exchangeInfo",
    "coinm": "/dapi/v1/exchangeInfo",
}
#: Seconds between refreshes of the instrument lists (a new listing is known within
#: this, or within a minute when an event names it first).
CONTRACTS_REFRESH = 3600.0
#: Since 2026-06-30 USDⓈ-M and COIN-M REST share one budget of 2400 request weight per
#: minute per IP (before: 2400 each): every source asking fapi or dapi spends from it.
FUTURES_BUDGET = ("binance-futures", 2400.0)
#: Where a stream sits under a host. Since 2026-04-23 Binance serves USDⓈ-M ``forceOrder``
#: (a "market" stream) only under the routed base ``/market``; the root paths of before
#: (``/ws/...``, ``/stream?...``) still accept connections, answer pings and
#: subscriptions, and forward no events. COIN-M's pages still document the root paths,
#: and no primary source retires them, so for COIN-M they come first.
ROUTES: dict[str, str] = {"market": "/market", "legacy": ""}
#: The route order when ``routes`` is not set: what each product's docs say first.
DEFAULT_ROUTES: dict[str, list[Literal["market", "legacy"]]] = {
    "usdm": ["market", "legacy"],
    "coinm": ["legacy", "market"],
    "all": ["market", "legacy"],
}


#: Binance refuses a futures connection that carries more streams than this (USD-M's
#: current page says 1024, COIN-M's 200; a combined URL of 1024 streams is also ~20 kB,
#: past what many gateways take in a request line: 200 is safe on both).
MAX_STREAMS = 200
ALL_MARKET_STREAM = "!forceOrder@arr"
#: How long silence is normal on an all-market stream, per market. The merged stream
#: carries liquidations of every perpetual of both products, minutes apart on the
#: quietest days; COIN-M's own (on a host that did not merge) far fewer. A combined
#: stream of named symbols is not judged by default: one symbol may go hours without one.
ALL_MARKET_SILENCE: dict[str, float] = {"usdm": 300.0, "coinm": 3600.0, "all": 300.0}

_SYMBOL = re.compile(r"[A-Z0-9_]+")
#: Path parts the source appends itself: a ``ws_url`` ending in one is a URL from before
#: the routing (``.../ws``) or a routed base, and would double them.
_ROUTE_WORDS = frozenset({"ws", "stream", "market", "public", "private"})


class LiquidationsConfig(StreamingConfig):
    """``[sources.NAME]`` keys of a ``binance_liquidations`` source."""

    market: Literal["usdm", "coinm", "all"] = Field(
        default="usdm",
        description=(
            'Which products to keep: "usdm" (USD-M futures), "coinm" (COIN-M futures) or '
            '"all" (both, from one connection). Since 2026-06-30 the all-market stream of '
            "either host carries both, each event marked by its product; each row is sized "
            "by its own product's rules, and two sources of different products never "
            "store an event twice."
        ),
    )
    symbols: list[str] = Field(
        default_factory=list,
        description=(
            "Symbols to follow, as Binance writes them (BTCUSDT, BTCUSD_PERP), at most 200, "
            "all of the one market. Empty: every symbol, through the all-market stream."
        ),
    )
    ws_url: str | None = Field(
        default=None,
        description=(
            "Replaces the scheme and host, wss://fstream.binance.com (usdm, all) or "
            "wss://dstream.binance.com (coinm), with a testnet, a proxy or a test server; "
            "the route and stream path are appended to it (see routes)."
        ),
    )
    rest_url: str | None = Field(
        default=None,
        description=(
            "Replaces https://dapi.binance.com, where COIN-M's instrument list (its "
            "contract sizes, which turn contracts into a notional) is read."
        ),
    )
    usdm_rest_url: str | None = Field(
        default=None,
        description=(
            "Replaces https://fapi.binance.com, where USD-M's instrument list is read "
            "(the symbols an event may name)."
        ),
    )
    routes: list[Literal["market", "legacy"]] | None = Field(
        default=None,
        min_length=1,
        description=(
            'Where under the host the stream is, tried in order: "market" (/market/ws/..., '
            "Binance's USD-M routing since 2026-04-23) and \"legacy\" (/ws/..., what COIN-M's "
            "pages still document). Default: market first, legacy first for coinm. The "
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
            appended=EXCHANGE_INFO["coinm"],
            reserved=("dapi",),
        )

    @field_validator("usdm_rest_url")
    @classmethod
    def _check_usdm_rest_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return base_url(
            url,
            schemes=("http", "https"),
            example="https://fapi.binance.com",
            appended=EXCHANGE_INFO["usdm"],
            reserved=("fapi",),
        )

    @model_validator(mode="after")
    def _one_market_per_symbol_stream(self) -> LiquidationsConfig:
        if self.symbols and self.market == "all":
            raise ValueError(
                'market = "all" reads the all-market stream; a per-symbol stream carries '
                "one product only (USD-M on fstream, COIN-M on dstream): leave symbols "
                'empty, or use one source per market ("usdm", "coinm") for named symbols'
            )
        return self

    @property
    def products(self) -> tuple[str, ...]:
        """The products this source keeps."""
        return PRODUCTS[self.market]

    def exchange_info_url(self, product: str) -> str:
        """Where ``product``'s instrument list is read."""
        host = self.usdm_rest_url if product == "usdm" else self.rest_url
        return f"{host or REST_HOSTS[product]}{EXCHANGE_INFO[product]}"

    @property
    def route_order(self) -> list[Literal["market", "legacy"]]:
        """``routes``, or the market's documented order."""
        return list(self.routes) if self.routes is not None else DEFAULT_ROUTES[self.market]

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, routes: list[str] | None) -> list[str] | None:
        if routes is not None and len(set(routes)) != len(routes):
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
        return [f"{host}{ROUTES[route]}{path}" for route in self.route_order]

    def stream_url(self) -> str:
        """The preferred URL: the first of :meth:`stream_urls`."""
        return self.stream_urls()[0]

    def default_silence_timeout(self) -> float | None:
        """Seconds without an event that are normal for this stream (None: not judged)."""
        return None if self.combined else ALL_MARKET_SILENCE[self.market]
