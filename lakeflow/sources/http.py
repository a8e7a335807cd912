"""A polling source over HTTP GET: the transport every REST plugin would otherwise rewrite.

:class:`HttpPollingSource` keeps one ``aiohttp`` session per source, ends every poll
before the next tick (a poll that cannot succeed fails with its real reason instead of
being cancelled), and applies the rules every HTTP API shares:

=================================  ==================================================
the answer                          what the source does
=================================  ==================================================
200                                 returns the body, refusing one past ``max_body``
429                                 waits ``Retry-After`` (or ``default_retry_after``),
                                    then retries, within the poll's time
5xx, timeout, broken connection     retries with capped exponential backoff
451 (refused for legal reasons)     stops the source: the location is refused, and
                                    retrying from the same IP cannot change it
anything else                       fails the poll (:class:`lakeflow.RequestFailed`)
=================================  ==================================================

A plugin adds its service's rules through two methods: :meth:`~HttpPollingSource.
on_response` sees every answer first (to read a rate-limit header and :meth:`~
HttpPollingSource.hold` requests), and :meth:`~HttpPollingSource.check_answer` sees
every non-200 answer before the table above applies (to raise
:class:`lakeflow.SourceError` for an error code that means the config is wrong, or
:class:`lakeflow.SourcePaused` for a ban).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from lakeflow.errors import LakeflowError, RequestFailed, SourceError
from lakeflow.fetch import (
    ERROR_BODY_LIMIT,
    MAX_BODY,
    REFUSED_LOCATION,
    USER_AGENT,
    read_body,
    retry_after,
    unreachable_host,
    url_origin,
    url_path,
)
from lakeflow.sources.base import PollingSource, SourceConfig

if TYPE_CHECKING:
    # Imported where a request is made: `lakeflow validate` and `list-sources` load the
    # plugins' modules but never poll, and aiohttp is ~0.3 s of their start-up.
    import aiohttp


class RetryRequest(LakeflowError):
    """Raised by :meth:`HttpPollingSource.check_answer` for an answer that may pass.

    The request is tried again if the poll has time and attempts left; with
    ``backoff=False`` at once (after any :meth:`~HttpPollingSource.hold`).
    """

    def __init__(self, reason: str, *, backoff: bool = True) -> None:
        super().__init__(reason)
        self.backoff = backoff


class HttpPollingSource(PollingSource):
    """A :class:`~lakeflow.PollingSource` whose polls are HTTP GETs; see the module's table.

    A subclass implements :meth:`~lakeflow.PollingSource.poll` with :meth:`get` (one or
    several requests) and :meth:`~lakeflow.Source.decode`. The class attributes are the
    transport's limits; a subclass sets them to its service's rules, and tests shorten
    the waits.
    """

    #: The remote's name in messages ("the server refuses ..."); say the service's name.
    service: ClassVar[str] = "the server"
    #: Sent with every request; say which plugin and version asks.
    user_agent: ClassVar[str] = USER_AGENT
    #: First retry delay after a 5xx, a timeout or a broken connection; doubles each time.
    retry_base: ClassVar[float] = 0.5
    #: Longest retry delay.
    retry_cap: ClassVar[float] = 8.0
    #: Attempts per request before the poll is given up.
    max_attempts: ClassVar[int] = 6
    #: Largest response body accepted, in bytes; a larger one fails the poll, refused
    #: from its Content-Length or, without one, as soon as the body passes it.
    max_body: ClassVar[int] = MAX_BODY
    #: Error bodies are small; more than this is cut, not read.
    error_body_limit: ClassVar[int] = ERROR_BODY_LIMIT
    #: Seconds to wait after a 429 that carries no ``Retry-After``.
    default_retry_after: ClassVar[float] = 60.0
    #: The exception a failed poll raises; a plugin may name a subclass of its own.
    request_error: ClassVar[type[RequestFailed]] = RequestFailed

    def __init__(self, name: str, config: SourceConfig) -> None:
        super().__init__(name, config)
        self._session: aiohttp.ClientSession | None = None
        # Loop time before which no request may be sent, and why (a 429, a limit, a ban).
        self._not_before = 0.0
        self._not_before_reason = ""

    @property
    def timeout(self) -> float:
        """Seconds before one request is abandoned, from the config (``timeout``)."""
        return float(getattr(self.config, "timeout", 10.0))

    async def open(self) -> None:
        """Create the one HTTP session every poll reuses (its connections stay open)."""
        import aiohttp

        await self.close()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": self.user_agent},
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def deadline(self) -> float:
        """The loop time by which this poll's requests must be done.

        A little before the runtime's own deadline (the interval), so that a poll that
        cannot succeed fails with its real reason rather than being cancelled.
        """
        interval = self.interval
        return asyncio.get_running_loop().time() + interval - min(1.0, 0.1 * interval)

    async def get(
        self, url: str, params: dict[str, str] | None = None, *, deadline: float | None = None
    ) -> bytes:
        """GET ``url`` until it answers 200, and return the body as received.

        Retries what may pass (see the module's table) until ``deadline`` (by default
        :meth:`deadline`) or ``max_attempts``; then raises :attr:`request_error`.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = self.deadline()
        params = params or {}
        attempt = 0
        while True:
            attempt += 1
            await self._wait_for_holds(deadline)
            try:
                return await self._attempt(url, params, deadline - loop.time())
            except RetryRequest as retry:
                reason, backoff, last = str(retry), retry.backoff, retry
            delay = min(self.retry_cap, self.retry_base * 2 ** (attempt - 1)) if backoff else 0.0
            # A 429 holds requests instead of backing off; count the hold against the deadline.
            resume = max(loop.time() + delay, self._not_before)
            if attempt >= self.max_attempts or resume >= deadline:
                raise self.request_error(
                    f"GET {url_path(url)} failed after {attempt} attempt(s) within the poll's "
                    f"interval; last: {reason}"
                ) from last
            # An unreachable host is summarised by the runtime for every source at once.
            log = self.log.debug if unreachable_host(last) else self.log.warning
            log(
                "GET %s attempt %d failed: %s; retrying in %.1fs",
                url_path(url),
                attempt,
                reason,
                resume - loop.time(),
            )
            await asyncio.sleep(delay)

    def hold(self, until: float, reason: str) -> bool:
        """Send no request before loop time ``until``; True if that is later than before.

        For a service's own limits: a rate-limit header read in :meth:`on_response`, a ban.
        A poll whose deadline comes first fails at once, saying ``reason``.
        """
        if until <= self._not_before:
            return False
        self._not_before, self._not_before_reason = until, reason
        return True

    def on_response(self, response: aiohttp.ClientResponse) -> None:
        """See every answer, 200 or not, before anything else (default: nothing).

        Read a rate-limit header here and call :meth:`hold` near the limit.
        """

    def check_answer(
        self, response: aiohttp.ClientResponse, body: bytes, params: dict[str, str]
    ) -> None:
        """Give a non-200 answer the service's meaning, before the generic rules apply.

        Raise :class:`lakeflow.SourceError` for an error that means the config is wrong,
        :class:`lakeflow.SourcePaused` for a ban, :class:`RetryRequest` for one that may
        pass, or :attr:`request_error` to fail the poll; return to let the module's table
        decide. ``body`` is at most ``error_body_limit`` bytes.
        """

    def error_detail(self, body: bytes) -> str:
        """What an error body says, for messages: they read ``HTTP <status> <detail>``.

        The default quotes the body's first 200 characters; a service with structured
        errors says its code and message (``code -1121: Invalid symbol.``). Empty: nothing.
        """
        text = body[:200].decode("utf-8", "replace").strip()
        return f"body {text!r}" if text else ""

    # -- one request ------------------------------------------------------------------

    async def _attempt(self, url: str, params: dict[str, str], budget: float) -> bytes:
        """One request. Returns the 200 body; raises :class:`RetryRequest` for what may pass."""
        import aiohttp

        if self._session is None:
            raise RuntimeError("poll() called before open()")
        timeout = aiohttp.ClientTimeout(total=max(0.001, min(self.timeout, budget)))
        try:
            async with self._session.get(url, params=params, timeout=timeout) as response:
                self.on_response(response)
                if response.status == 200:
                    return await self._read(response, self.max_body, url)
                body = await self._read(response, self.error_body_limit, url, truncate=True)
                self.check_answer(response, body, params)
                self._refuse(response, body, url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A timeout, a refused or dropped connection, a body cut short: all transient.
            text = str(exc) or "no detail"
            if isinstance(exc, TimeoutError):
                text = f"no complete answer within {timeout.total:.1f}s"
            # The cause is kept: a host that cannot be reached is said once for all
            # sources (the runtime finds it in the chain), not once per attempt.
            raise RetryRequest(f"{type(exc).__name__}: {text}") from exc
        raise AssertionError("unreachable: _refuse always raises")

    async def _read(
        self, response: aiohttp.ClientResponse, limit: int, url: str, *, truncate: bool = False
    ) -> bytes:
        """Read the body, refusing (or, for error bodies, cutting) one past ``limit`` bytes."""
        return await read_body(
            response,
            limit,
            url,
            truncate=truncate,
            error=self.request_error,
            remedy="raise the source's max_body to accept it",
        )

    def _refuse(self, response: aiohttp.ClientResponse, body: bytes, url: str) -> None:
        """The generic rules for a non-200 answer: always raises."""
        status = response.status
        detail = self.error_detail(body)
        said = f"HTTP {status}" + (f" {detail}" if detail else "")
        if status == REFUSED_LOCATION:
            service = self.service[:1].upper() + self.service[1:]
            raise SourceError(
                f"{service} refuses requests from this machine's location (HTTP 451 from "
                f"{url_origin(url)}: {detail or 'no message'}). It judges by the IP address, "
                f"so retrying cannot change that: [sources.{self.name}] stops. Run lakeflow "
                f"from a host in a location {self.service} serves."
            )
        if status == 429:
            seconds = retry_after(response, self.default_retry_after)
            loop = asyncio.get_running_loop()
            self.hold(loop.time() + seconds, f"rate limited ({said}), Retry-After {seconds:g}s")
            self.log.warning("rate limited (%s); waiting %gs as asked", said, seconds)
            raise RetryRequest(f"{said} (Retry-After {seconds:g}s)", backoff=False)
        if status >= 500:
            raise RetryRequest(said if detail else f"HTTP {status} from {self.service}")
        raise self.request_error(f"GET {url_path(url)} refused: {said}", status=status)

    async def _wait_for_holds(self, deadline: float) -> None:
        """Sleep until requests may be sent again, or fail the poll if that is past ``deadline``."""
        loop = asyncio.get_running_loop()
        wait = self._not_before - loop.time()
        if wait <= 0:
            return
        if wait >= deadline - loop.time():
            raise self.request_error(
                f"poll skipped: {self._not_before_reason}; the next request may go in "
                f"{wait:.1f}s, after this poll's interval"
            )
        # Logged as a warning when the hold was set; this is the wait itself.
        self.log.debug("waiting %.1fs before the next request: %s", wait, self._not_before_reason)
        await asyncio.sleep(wait)
