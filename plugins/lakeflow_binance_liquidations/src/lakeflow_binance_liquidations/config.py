"""The config of a ``binance_liquidations`` source, and the stream URL it implies."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from lakeflow import SourceConfig

#: Public WebSocket bases of Binance's futures markets.
BASE_URLS: dict[str, str] = {
    "usdm": "wss://fstream.binance.com",
    "coinm": "wss://dstream.binance.com",
}
#: Binance refuses a futures connection that carries more streams than this.
MAX_STREAMS = 200
ALL_MARKET_STREAM = "!forceOrder@arr"

_SYMBOL = re.compile(r"[A-Z0-9_]+")


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
            "WebSocket base URL instead of Binance's (a testnet, a proxy, a test server); "
            "the stream path is appended to it."
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
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError("must be a ws:// or wss:// URL such as wss://fstream.binance.com")
        if parts.query or parts.fragment:
            raise ValueError(
                "give the base URL only, without '?' or '#': the stream path is appended to it"
            )
        return url.rstrip("/")

    @property
    def combined(self) -> bool:
        """True when the source reads named symbols on a combined stream (payloads wrapped)."""
        return bool(self.symbols)

    def stream_url(self) -> str:
        """The URL to connect to: the all-market stream, or one combined stream of the symbols."""
        base = self.ws_url or BASE_URLS[self.market]
        if not self.combined:
            return f"{base}/ws/{ALL_MARKET_STREAM}"
        streams = "/".join(f"{symbol.lower()}@forceOrder" for symbol in self.symbols)
        return f"{base}/stream?streams={streams}"
