"""The ``binance_prices`` config keys and what each Binance market's endpoint looks like."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

import lakeflow

# Binance's own rule for a symbol inside `symbols=[...]` (its -1100 error quotes it).
SYMBOL = re.compile(r"^[A-Z0-9_.-]{1,20}$")


@dataclass(frozen=True)
class Market:
    """One Binance market's 24 h ticker endpoint and its request-weight budget."""

    name: str
    base_url: str
    path: str
    #: Request weight the IP may use per minute (the ``rateLimits`` of ``exchangeInfo``).
    weight_limit: int
    #: Whether the endpoint accepts ``symbols=[...]`` (the futures ones take one ``symbol``).
    takes_symbol_list: bool
    #: The process-wide weight budget this market's requests spend from (None: the
    #: server's header alone guards it), and what one request of every symbol weighs.
    budget: str | None = None
    weight: int = 1


#: Since 2026-06-30 USDⓈ-M and COIN-M share one budget of 2400 weight per minute per IP
#: (the CM-UM integration): the liquidation sources' instrument lists spend from it too.
FUTURES_BUDGET = "binance-futures"

MARKETS: dict[str, Market] = {
    "spot": Market("spot", "https://api.binance.com", "/api/v3/ticker/24hr", 6000, True),
    "usdm": Market(
        "usdm", "https://fapi.binance.com", "/fapi/v1/ticker/24hr", 2400, False, FUTURES_BUDGET, 40
    ),
    # COIN-M takes one `symbol` or one `pair` (every contract of that pair), never a list.
    "coinm": Market(
        "coinm", "https://dapi.binance.com", "/dapi/v1/ticker/24hr", 2400, False, FUTURES_BUDGET, 40
    ),
}


class BinancePricesConfig(lakeflow.PollingConfig):
    """The keys of a ``binance_prices`` source's section (and the inherited ``interval``,
    ``timeout`` and ``table``)."""

    market: Literal["spot", "usdm", "coinm"] = Field(
        default="spot",
        description=(
            'Which market: "spot" (api.binance.com /api/v3/ticker/24hr), "usdm" '
            '(USD-M futures, fapi.binance.com /fapi/v1/ticker/24hr) or "coinm" '
            "(COIN-M futures, dapi.binance.com /dapi/v1/ticker/24hr)."
        ),
    )
    symbols: list[str] = Field(
        default_factory=list,
        description=(
            'Symbols to collect, as Binance writes them ("BTCUSDT", "BTCUSD_PERP"). Empty: '
            "every symbol of the market, in one request."
        ),
    )
    base_url: str | None = Field(
        default=None,
        description="Override the market's API root (a mirror, or a local stand-in in tests).",
    )

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if not SYMBOL.match(symbol):
                hint = " (Binance symbols are upper case)" if SYMBOL.match(symbol.upper()) else ""
                raise ValueError(
                    f"{symbol!r} is not a Binance symbol: 1 to 20 of A-Z, 0-9, '-', '_', '.'{hint}"
                )
        seen: set[str] = set()
        for symbol in symbols:
            if symbol in seen:
                # Binance refuses a request that names a symbol twice.
                raise ValueError(f"{symbol!r} is listed twice")
            seen.add(symbol)
        return symbols

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} must start with http:// or https://")
        return url.rstrip("/")

    @property
    def spec(self) -> Market:
        """The market this config selects."""
        return MARKETS[self.market]

    @property
    def root(self) -> str:
        """The API root requests go to: ``base_url`` or the market's own."""
        return self.base_url or self.spec.base_url
