"""The ``binance_prices`` polling source: Binance's 24 h ticker statistics over REST.

Every poll fetches one snapshot: all symbols in one request, or the configured symbols
in requests of at most :attr:`BinancePricesSource.symbols_per_request`. The source keeps
to Binance's rules: it reads the request weight the IP has used this minute from every
response and, past :attr:`~BinancePricesSource.weight_threshold` of the market's limit,
sends nothing more until the minute turns; it honours ``Retry-After`` on 429; it stops
for the ban's length on 418 (through :class:`lakeflow.SourcePaused`); it retries 5xx,
timeouts and broken connections with backoff within the poll's interval; it stops the
source (:class:`lakeflow.SourceError`) when Binance says the symbols are invalid, or
refuses the client's location (HTTP 451).
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
    # Imported where a request is made: `lakeflow validate` and `list-sources` load this
    # module but never poll, and aiohttp is ~0.3 s of their start-up.
    import aiohttp

# Binance error codes that mean "the symbols in your config are wrong": retrying cannot help.
SYMBOL_ERRORS = {-1121: "invalid symbol", -1100: "illegal characters in a parameter"}
#: How long Binance bans an IP at least; used when a 418 carries no Retry-After.
DEFAULT_BAN = 120.0
#: Error bodies are small JSON; more than this is not worth reading.
ERROR_BODY_LIMIT = 64 * 1024
#: Symbols named in an error message, at most.
NAMED_SYMBOLS = 20
#: Binance's answer to a client in a region it does not serve ("restricted location").
RESTRICTED_LOCATION = 451

try:
    _USER_AGENT = f"lakeflow-binance-prices/{version('lakeflow-binance-prices')}"
except PackageNotFoundError:  # running from a source tree without metadata
    _USER_AGENT = "lakeflow-binance-prices"


class BinanceRequestError(Exception):
    """A poll's request failed in a way that retrying within the poll could not fix.

    The runtime counts the poll as failed, records a gap and polls again at the next
    tick. ``status``, ``code`` and ``msg`` hold what Binance answered, when it answered.
    """

    def __init__(
        self, message: str, status: int | None = None, code: int | None = None, msg: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.msg = msg


class _Retry(Exception):
    """A transient failure of one attempt: try again if the poll has time left."""

    def __init__(self, reason: str, backoff: bool = True) -> None:
        super().__init__(reason)
        self.backoff = backoff


class BinancePricesSource(lakeflow.PollingSource):
    """Polls Binance's 24 h ticker statistics (spot, USD-M or COIN-M) every ``interval`` seconds."""

    type = "binance_prices"
    schema = "ticker_24h"
    description = (
        "Binance 24 h ticker statistics per symbol (spot, USD-M or COIN-M futures), over REST."
    )
    Config = BinancePricesConfig

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
    #: First retry delay after a 5xx, a timeout or a broken connection; doubles each time.
    retry_base: float = 0.5
    #: Longest retry delay.
    retry_cap: float = 8.0
    #: Attempts per request before the poll is given up.
    max_attempts: int = 6
    #: Largest response body accepted, in bytes (all spot symbols are about 1 MB).
    max_body: int = 64 * 1024 * 1024

    config: BinancePricesConfig

    def __init__(self, name: str, config: lakeflow.SourceConfig) -> None:
        super().__init__(name, config)
        assert isinstance(config, BinancePricesConfig)
        self.market = config.spec
        self.url = config.root + self.market.path
        self._session: aiohttp.ClientSession | None = None
        # Loop time before which no request may be sent, and why (429, weight, ban).
        self._not_before = 0.0
        self._not_before_reason = ""
        self._symbols_checked = False
        self._queries = self._plan()

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

    async def open(self) -> None:
        """Create the one HTTP session every poll reuses (its connections stay open)."""
        import aiohttp

        await self.close()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            headers={"User-Agent": _USER_AGENT},
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def poll(self) -> bytes | list[bytes]:
        """Fetch one snapshot: the body of each request, raw."""
        loop = asyncio.get_running_loop()
        # End a little before the runtime's own deadline (the interval), so that a poll
        # that cannot succeed fails with its real reason rather than being cancelled.
        deadline = loop.time() + self.interval - min(1.0, 0.1 * self.interval)
        bodies = [await self._fetch(query, deadline) for query in self._queries]
        if self.config.symbols and not self.market.takes_symbol_list:
            await self._check_listed(bodies[0])
        return bodies[0] if len(bodies) == 1 else bodies

    def decode(self, batch: Batch) -> Decoded:
        """Turn 24 h ticker bodies into ``ticker_24h`` rows (see :mod:`.decode`)."""
        return decode_tickers(batch, self.market.name, self.config.symbols)

    # -- one request, with retries ------------------------------------------------------

    async def _fetch(self, query: dict[str, str], deadline: float) -> bytes:
        """GET the endpoint with ``query`` until it answers 200 or the poll runs out of time."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            await self._wait_for_limits(deadline)
            try:
                return await self._attempt(query, deadline - loop.time())
            except _Retry as retry:
                reason, backoff = str(retry), retry.backoff
            delay = min(self.retry_cap, self.retry_base * 2 ** (attempt - 1)) if backoff else 0.0
            # A 429 sets `_not_before` instead of a backoff; count it against the deadline too.
            resume = max(loop.time() + delay, self._not_before)
            if attempt >= self.max_attempts or resume >= deadline:
                raise BinanceRequestError(
                    f"GET {self.market.path} failed after {attempt} attempt(s) within the "
                    f"poll's interval; last: {reason}"
                )
            self.log.warning(
                "GET %s attempt %d failed: %s; retrying in %.1fs",
                self.market.path,
                attempt,
                reason,
                resume - loop.time(),
            )
            await asyncio.sleep(delay)

    async def _attempt(self, query: dict[str, str], budget: float) -> bytes:
        """One request. Returns the 200 body; raises :class:`_Retry` for what may pass."""
        import aiohttp

        if self._session is None:
            raise RuntimeError("poll() called before open()")
        timeout = aiohttp.ClientTimeout(total=max(0.001, min(self.config.timeout, budget)))
        try:
            async with self._session.get(self.url, params=query, timeout=timeout) as response:
                self._note_weight(response)
                if response.status == 200:
                    return await self._read(response, self.max_body)
                body = await self._read(response, ERROR_BODY_LIMIT, truncate=True)
                self._refuse(response, body, query)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A timeout, a refused or dropped connection, a body cut short: all transient.
            text = str(exc) or "no detail"
            if isinstance(exc, TimeoutError):
                text = f"no complete answer within {timeout.total:.1f}s"
            raise _Retry(f"{type(exc).__name__}: {text}") from None
        raise AssertionError("unreachable: _refuse always raises")

    async def _read(
        self, response: aiohttp.ClientResponse, limit: int, *, truncate: bool = False
    ) -> bytes:
        """Read the body, refusing (or, for error bodies, cutting) one past ``limit`` bytes."""
        declared = response.content_length
        if declared is not None and declared > limit and not truncate:
            raise BinanceRequestError(
                f"response body of {declared} bytes exceeds the {limit}-byte limit",
                status=response.status,
            )
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                raise BinanceRequestError(
                    f"response body exceeds the {limit}-byte limit", status=response.status
                )
        return bytes(body)

    def _refuse(self, response: aiohttp.ClientResponse, body: bytes, query: dict[str, str]) -> None:
        """Turn a non-200 answer into the exception that says what to do next."""
        status = response.status
        loop = asyncio.get_running_loop()
        code, msg = _error_of(body)
        said = f"HTTP {status}" + (f" code {code}" if code is not None else "")
        said += f": {msg}" if msg else ""
        if status == 418:
            seconds = _retry_after(response, DEFAULT_BAN)
            self._hold(loop.time() + seconds, f"banned by Binance ({said})")
            raise lakeflow.SourcePaused(
                seconds=seconds,
                reason=f"Binance banned this IP for {seconds:g}s ({said}): too many requests "
                "after 429s; is another program using the same IP's limit?",
            )
        if status == RESTRICTED_LOCATION:
            raise lakeflow.SourceError(
                f"Binance refuses requests from this machine's location (HTTP 451 from "
                f"{self.config.root}: {msg or 'no message'}). It judges by the IP address, "
                f"so retrying cannot change that: [sources.{self.name}] stops. Run lakeflow "
                "from a host in a location Binance serves."
            )
        if status == 429:
            seconds = _retry_after(response, self.weight_window)
            self._hold(loop.time() + seconds, f"rate limited ({said}), Retry-After {seconds:g}s")
            self.log.warning("rate limited (%s); waiting %gs as Binance asks", said, seconds)
            raise _Retry(f"{said} (Retry-After {seconds:g}s)", backoff=False)
        if status >= 500:
            raise _Retry(said if msg else f"HTTP {status} from Binance")
        if code in SYMBOL_ERRORS:
            raise lakeflow.SourceError(
                f"Binance refused the symbols ({SYMBOL_ERRORS[code]}): code {code}, "
                f"{msg!r}; symbols in the request: {_named(_symbols_of(query))}. "
                f"Fix `symbols` of [sources.{self.name}] (market {self.market.name!r})."
            )
        raise BinanceRequestError(
            f"GET {self.market.path} refused: {said or f'HTTP {status}'}"
            + ("" if code is not None else f" (body: {body[:200]!r})"),
            status=status,
            code=code,
            msg=msg,
        )

    # -- request weight ---------------------------------------------------------------

    def _note_weight(self, response: aiohttp.ClientResponse) -> None:
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
        if self._hold(loop.time() + wait, f"request weight {used}/{limit} used this minute"):
            self.log.warning(
                "request weight %d of %d used this minute (over %.0f%%); "
                "no request before the minute turns, in %.1fs",
                used,
                limit,
                100 * self.weight_threshold,
                wait,
            )

    def _hold(self, until: float, reason: str) -> bool:
        """Send no request before loop time ``until``; True if that is later than before."""
        if until <= self._not_before:
            return False
        self._not_before, self._not_before_reason = until, reason
        return True

    async def _wait_for_limits(self, deadline: float) -> None:
        """Sleep until requests may be sent again, or fail the poll if that is past ``deadline``."""
        wait = self._not_before - asyncio.get_running_loop().time()
        if wait <= 0:
            return
        if wait >= deadline - asyncio.get_running_loop().time():
            raise BinanceRequestError(
                f"poll skipped: {self._not_before_reason}; the next request may go in "
                f"{wait:.1f}s, after this poll's interval"
            )
        # Already logged as a warning when the hold was set; this is the wait itself.
        self.log.debug("waiting %.1fs before the next request: %s", wait, self._not_before_reason)
        await asyncio.sleep(wait)

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


def _retry_after(response: aiohttp.ClientResponse, default: float) -> float:
    """The ``Retry-After`` header in seconds (Binance sends an integer), else ``default``."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return default


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
