"""The ``binance_prices`` polling source: Binance's 24 h ticker statistics over REST.

Every poll fetches one snapshot: all symbols in one request, or the configured symbols
in requests of at most :attr:`BinancePricesSource.symbols_per_request`. The source keeps
to Binance's rules: it reads the request weight the IP has used this minute from every
response and, past :attr:`~BinancePricesSource.weight_threshold` of the market's limit,
sends nothing more until the minute turns; it stops for the ban's length on 418 (through
:class:`lakeflow.SourcePaused`); it stops the source (:class:`lakeflow.SourceError`) when
Binance says the symbols are invalid. The rest (``Retry-After`` on 429, retries of 5xx,
timeouts and broken connections within the poll's interval, HTTP 451, the body cap) is
:class:`lakeflow.HttpPollingSource`'s.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import lakeflow
from lakeflow import Batch, Decoded
from lakeflow_binance_prices.config import BinancePricesConfig
from lakeflow_binance_prices.decode import decode_tickers

if TYPE_CHECKING:
    import aiohttp

# Binance error codes that mean "the symbols in your config are wrong": retrying cannot help.
SYMBOL_ERRORS = {-1121: "invalid symbol", -1100: "illegal characters in a parameter"}
#: How long Binance bans an IP at least; used when a 418 carries no Retry-After.
DEFAULT_BAN = 120.0
#: Symbols named in an error message, at most.
NAMED_SYMBOLS = 20

try:
    _USER_AGENT = f"lakeflow-binance-prices/{version('lakeflow-binance-prices')}"
except PackageNotFoundError:  # running from a source tree without metadata
    _USER_AGENT = "lakeflow-binance-prices"


class BinanceRequestError(lakeflow.RequestFailed):
    """A poll's request failed in a way that retrying within the poll could not fix.

    The runtime counts the poll as failed, records a gap and polls again at the next
    tick. ``status`` holds the HTTP status Binance answered, when it answered.
    """


class BinancePricesSource(lakeflow.HttpPollingSource):
    """Polls Binance's 24 h ticker statistics (spot, USD-M or COIN-M) every ``interval`` seconds.

    The transport (session, deadline, retries, 429, 451, body cap) is
    :class:`lakeflow.HttpPollingSource`'s; this class adds Binance's rules: the request
    weight header, the 418 ban and the error codes that mean the symbols are wrong.
    """

    type = "binance_prices"
    schema = "ticker_24h"
    description = (
        "Binance 24 h ticker statistics per symbol (spot, USD-M or COIN-M futures), over REST."
    )
    Config = BinancePricesConfig
    service = "Binance"
    user_agent = _USER_AGENT
    request_error = BinanceRequestError

    # Class attributes rather than config keys: they are Binance's rules, not choices.
    # Tests shorten the waits; the behaviour is the same.
    #: Symbols named in one ``symbols=[...]`` request, at most (keeps the URL short).
    symbols_per_request: int = 100
    #: Share of the market's weight limit past which the source waits for the next minute.
    weight_threshold: float = 0.8
    #: Length of Binance's weight window in seconds: the counter resets on the minute.
    weight_window: float = 60.0
    #: Extra seconds waited after the window turns, for clock skew between us and Binance.
    clock_slack: float = 1.0
    #: Largest response body accepted, in bytes (all spot symbols are about 1 MB).
    max_body = 64 * 1024 * 1024
    #: A 429 without Retry-After waits out Binance's one-minute weight window.
    default_retry_after = 60.0

    config: BinancePricesConfig

    def __init__(self, name: str, config: lakeflow.SourceConfig) -> None:
        super().__init__(name, config)
        assert isinstance(config, BinancePricesConfig)
        self.market = config.spec
        self.url = config.root + self.market.path
        self._symbols_checked = False
        self._queries = self._plan()
        #: Shared with every source of the process asking the same API (fapi + dapi).
        self._budget = (
            None
            if self.market.budget is None
            else lakeflow.Budget.named(self.market.budget, self.market.weight_limit)
        )

    def _plan(self) -> list[dict[str, str]]:
        """The query of each request of one poll."""
        symbols = self.config.symbols
        if not symbols or not self.market.takes_symbol_list:
            # The futures endpoints answer `symbol=` one at a time only: one request for
            # every symbol (weight 40) is cheaper and faster than one per configured
            # symbol, and the decoder keeps the configured ones.
            return [{}]
        size = self.symbols_per_request
        return [
            {"symbols": json.dumps(list(symbols[i : i + size]), separators=(",", ":"))}
            for i in range(0, len(symbols), size)
        ]

    def endpoints(self) -> list[str]:
        """The URL every poll requests (with ``symbols=[...]`` when symbols are named)."""
        return [self.url]

    async def poll(self) -> bytes | list[bytes]:
        """Fetch one snapshot: the body of each request, raw."""
        deadline = self.deadline()
        bodies = []
        for query in self._queries:
            if self._budget is not None:
                await self._budget.spend(self.market.weight)
            bodies.append(await self.get(self.url, query, deadline=deadline))
        if self.config.symbols and not self.market.takes_symbol_list:
            await self._check_listed(bodies[0])
        return bodies[0] if len(bodies) == 1 else bodies

    def decode(self, batch: Batch) -> Decoded:
        """Turn 24 h ticker bodies into ``ticker_24h`` rows (see :mod:`.decode`)."""
        return decode_tickers(batch, self.market.name, self.config.symbols)

    # -- Binance's rules on top of the HTTP transport ---------------------------------

    def error_detail(self, body: bytes) -> str:
        """Binance's ``{"code": ..., "msg": ...}``, as ``code -1121: Invalid symbol.``."""
        code, msg = _error_of(body)
        if code is None:
            return super().error_detail(body)
        return f"code {code}" + (f": {msg}" if msg else "")

    def check_answer(
        self, response: aiohttp.ClientResponse, body: bytes, params: dict[str, str]
    ) -> None:
        """A 418 is a ban (pause the source); symbol error codes stop it."""
        code, msg = _error_of(body)
        if response.status == 418:
            said = f"HTTP 418 {self.error_detail(body)}".rstrip()
            seconds = lakeflow.retry_after(response, DEFAULT_BAN)
            self.hold(asyncio.get_running_loop().time() + seconds, f"banned by Binance ({said})")
            raise lakeflow.SourcePaused(
                seconds=seconds,
                reason=f"Binance banned this IP for {seconds:g}s ({said}): too many requests "
                "after 429s; is another program using the same IP's limit?",
            )
        if code in SYMBOL_ERRORS and response.status < 500:
            raise lakeflow.SourceError(
                f"Binance refused the symbols ({SYMBOL_ERRORS[code]}): code {code}, "
                f"{msg!r}; symbols in the request: {_named(_symbols_of(params))}. "
                f"Fix `symbols` of [sources.{self.name}] (market {self.market.name!r})."
            )

    def hold(self, until: float, reason: str) -> bool:
        """Hold this source's requests, and the shared budget's: a 429, a ban or a
        weight past the threshold is the IP's, so every source spending from it waits."""
        if self._budget is not None:
            self._budget.hold(until - asyncio.get_running_loop().time(), reason)
        return super().hold(until, reason)

    def on_response(self, response: aiohttp.ClientResponse) -> None:
        """Read the weight used this minute; near the limit, hold requests until it resets."""
        try:
            used = int(response.headers["X-MBX-USED-WEIGHT-1M"])
        except (KeyError, ValueError):
            return
        limit = self.market.weight_limit
        if used <= self.weight_threshold * limit:
            return
        window = self.weight_window
        wait = window - time.time() % window + self.clock_slack
        loop = asyncio.get_running_loop()
        if self.hold(loop.time() + wait, f"request weight {used}/{limit} used this minute"):
            self.log.warning(
                "request weight %d of %d used this minute (over %.0f%%); "
                "no request before the minute turns, in %.1fs",
                used,
                limit,
                100 * self.weight_threshold,
                wait,
            )

    # -- futures symbol list ----------------------------------------------------------

    async def _check_listed(self, body: bytes) -> None:
        """Stop the source if a configured futures symbol is not in the market's list.

        Spot checks symbols itself (error -1121); USD-M and COIN-M are fetched whole and
        filtered, so a misspelt symbol would otherwise just never appear. Checked once, on
        the first body that parses; a symbol delisted later simply stops having rows.
        """
        if self._symbols_checked:
            return
        listed = await asyncio.to_thread(_listed_symbols, body)
        if not listed:
            return  # not a ticker list (a dead letter for the decoder), or an empty one
        self._symbols_checked = True
        missing = [s for s in self.config.symbols if s not in listed]
        if missing:
            raise lakeflow.SourceError(
                f"market {self.market.name!r} does not list {_named(missing)} "
                f"(configured symbols: {_named(self.config.symbols)}). "
                f"Fix `symbols` of [sources.{self.name}]."
            )


def _listed_symbols(body: bytes) -> set[str] | None:
    """The symbols in a ticker body, or None if it is not a list of tickers."""
    try:
        tickers = json.loads(body)
    except ValueError:
        return None
    if not isinstance(tickers, list):
        return None
    return {
        t["symbol"] for t in tickers if isinstance(t, dict) and isinstance(t.get("symbol"), str)
    }


def _error_of(body: bytes) -> tuple[int | None, str]:
    """Binance's ``{"code": ..., "msg": ...}`` from an error body, if it is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    code = data.get("code")
    return (code if isinstance(code, int) else None), str(data.get("msg", ""))


def _symbols_of(query: dict[str, str]) -> list[str]:
    try:
        return list(json.loads(query["symbols"]))
    except (KeyError, ValueError):
        return []


def _named(symbols: list[str]) -> str:
    """Symbols for an error message: the first few and how many more."""
    if not symbols:
        return "none (all symbols)"
    shown = ", ".join(symbols[:NAMED_SYMBOLS])
    more = len(symbols) - NAMED_SYMBOLS
    return shown + (f" and {more} more" if more > 0 else "")
