"""Reference data: what a decoder needs beside the payloads, kept fresh by the core.

An exchange's instrument list says what a symbol is (its contract size, its quote coin,
its product) and which symbols exist. A source declares each list it needs as a
:class:`Reference` (where to fetch it, how to parse it, how often) from
:meth:`lakeflow.Source.reference_data`; the core's :class:`ReferenceData` then:

- fetches every list before the first decode (before a spool is replayed), and again on
  the source's own schedule, whatever its connections do;
- fetches early when a decode meets an instrument no list knows (at most once per
  ``early_every``), so a new listing is sized within a minute, not an hour;
- keeps the last good copy when a fetch fails, and tries again after ``retry_every``
  or the ``Retry-After`` the server asked for;
- spends from a shared :class:`~lakeflow.budgets.Budget` when the declaration names one,
  so every source of the process asking the same API stays within its limit.

Decoders read the current copy with :meth:`lakeflow.Source.reference` (a polars frame,
replaced whole by each refresh: a decoder thread reads whichever copy is current).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from lakeflow.budgets import Budget
from lakeflow.errors import LakeflowError
from lakeflow.fetch import MAX_BODY, unreachable_host

if TYPE_CHECKING:
    import aiohttp

#: ``fetch(url, params)``: GET through the core (budget, holds, retries), JSON parsed.
Fetch = Callable[[str, Mapping[str, str] | None], Awaitable[Any]]

#: Statuses that hold a reference's requests, with the seconds held when the answer
#: carries no ``Retry-After``: 429 (slow down) and 418 (Binance's ban after ignored 429s).
DEFAULT_HOLDS: Mapping[int, float] = {429: 60.0, 418: 120.0}


@dataclass(frozen=True)
class Reference:
    """One list a source's decoder reads (an instrument list), declared by the source.

    Give either ``url`` and ``parse`` (one GET, its JSON body parsed into a frame) or
    ``load`` (an async function given a ``fetch`` that does the GETs, for paged or
    several requests). ``key`` names the frame's column of instrument names: a decoded
    row's instrument (the source's ``instrument_column``) missing from every such
    column is unknown-instrument drift. None: the list names no instruments.

    ``every`` is the refresh period in seconds; ``retry_every`` the wait after a failed
    fetch; ``early_every`` the least time between two early fetches for unknown
    instruments. ``budget`` (``(name, capacity per minute)``) and ``weight`` say what one
    request costs against a limit shared with other sources; ``holds`` maps an HTTP
    status to the seconds every request waits after it (``Retry-After`` wins);
    ``within`` is the time one GET, its retries included, may take (a ``load`` that
    makes several bounds the whole itself). ``keep_delisted``
    keeps rows that left the list, so a late or replayed event is still sized.
    ``max_body`` is the largest answer accepted, in bytes (64 MiB): a larger one is
    refused while it streams, never read whole, and the fetch fails like a refused one
    (the last good copy stays; tried again after ``retry_every``). Raise it for a list
    known to be larger.
    """

    name: str
    url: str | None = None
    parse: Callable[[Any], pl.DataFrame] | None = None
    load: Callable[[Fetch], Awaitable[pl.DataFrame]] | None = None
    params: Mapping[str, str] | None = None
    key: str | None = "symbol"
    every: float = 3600.0
    retry_every: float = 60.0
    early_every: float = 60.0
    budget: tuple[str, float] | None = None
    weight: float = 1.0
    holds: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_HOLDS))
    within: float = 20.0
    keep_delisted: bool = False
    max_body: int = MAX_BODY

    def __post_init__(self) -> None:
        if (self.load is None) == (self.url is None or self.parse is None):
            raise ValueError(f"reference {self.name!r}: give url and parse, or load")

    async def fetch_with(self, fetch: Fetch) -> pl.DataFrame:
        """Fetch and parse the list with ``fetch``."""
        if self.load is not None:
            return await self.load(fetch)
        assert self.url is not None and self.parse is not None
        return self.parse(await fetch(self.url, self.params))


class ReferenceUnavailable(LakeflowError, RuntimeError):
    """No request may go now: the server asked for a pause (or banned), and it is not over."""


@dataclass
class _State:
    """What is known of one reference: its last good copy and its schedule."""

    frame: pl.DataFrame | None = None
    #: time.monotonic() of the last successful fetch (0: none yet).
    refreshed_at: float = 0.0
    #: time.monotonic() of the next fetch.
    due: float = 0.0
    #: time.monotonic() before which no request may go (a Retry-After, a ban).
    held_until: float = 0.0
    held_reason: str = ""
    #: time.monotonic() of the last early fetch (rate limit).
    early_at: float = float("-inf")
    failures: int = 0


class ReferenceData:
    """The reference lists of one source instance; see the module.

    Made by :meth:`lakeflow.Source.refs` from the source's declarations. The runtime
    calls :meth:`prepare` before the first decode and runs :meth:`run` for the life of
    the source; a plugin awaits :meth:`refresh` or :meth:`updated` where it needs the
    list itself (to subscribe to every symbol).
    """

    def __init__(
        self,
        declared: Sequence[Reference],
        *,
        log: logging.Logger | logging.LoggerAdapter,
        user_agent: str = "lakeflow",
    ) -> None:
        names = [r.name for r in declared]
        if len(set(names)) != len(names):
            raise ValueError(f"reference names repeat: {names}")
        self.declared = {r.name: r for r in declared}
        self.log = log
        self.user_agent = user_agent
        self._state = {name: _State() for name in self.declared}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._session: aiohttp.ClientSession | None = None
        #: Called after each successful refresh with the instruments now known (the
        #: runtime's drift watch settles the unknown instruments it was waiting on).
        self.on_refresh: Callable[[frozenset[str]], None] | None = None
        #: Called with a host a read could not reach (the runtime says once, for every
        #: source, that hosts are unreachable); such a failure is then logged at DEBUG.
        self.on_unreachable: Callable[[str], None] | None = None
        self._known: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.declared)

    # -- what decoders read ------------------------------------------------------------

    def frame(self, name: str) -> pl.DataFrame | None:
        """The last good copy of ``name`` (None before the first successful fetch)."""
        return self._state[name].frame

    def put(self, name: str, frame: pl.DataFrame) -> None:
        """Use ``frame`` as the current copy of ``name``, as if just read (tests, a saved list)."""
        state = self._state[name]
        state.frame = frame
        self._update_known()

    def refreshed_at(self, name: str) -> float:
        """time.monotonic() of ``name``'s last successful fetch (0: never)."""
        return self._state[name].refreshed_at

    def instruments(self) -> frozenset[str] | None:
        """Every instrument the lists with a ``key`` name, or None while none is read."""
        return self._known

    def _update_known(self) -> None:
        columns = [
            state.frame[ref.key].cast(pl.String)
            for ref, state in ((self.declared[n], s) for n, s in self._state.items())
            if ref.key is not None and state.frame is not None and ref.key in state.frame.columns
        ]
        # A set, made once per refresh: every batch's instruments are looked up in it.
        known = pl.concat(columns).drop_nulls().unique().to_list() if columns else None
        self._known = None if known is None else frozenset(known)

    # -- fetching ----------------------------------------------------------------------

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._wake = asyncio.Event()
            self._changed = asyncio.Condition()

    async def prepare(self) -> None:
        """Fetch every list once, before the first decode; failures are logged, not raised."""
        self._bind()
        if not self.declared:
            return
        try:
            await asyncio.gather(*(self._refresh_logged(name) for name in self.declared))
        finally:
            # run() opens its own when it starts; `lakeflow replay` never runs it.
            await self.close()

    async def refresh(self, name: str) -> pl.DataFrame:
        """Fetch ``name`` now and keep it; raises when it cannot (the old copy stays)."""
        self._bind()
        reference, state = self.declared[name], self._state[name]
        now = time.monotonic()
        if state.held_until > now:
            # Not before the hold ends: a schedule left due would spin run()'s loop.
            state.due = max(state.due, state.held_until)
            raise ReferenceUnavailable(
                f"{reference.name} is not asked for another "
                f"{state.held_until - now:.0f}s: {state.held_reason}"
            )
        try:
            fresh = await reference.fetch_with(self._fetcher(reference))
            if not isinstance(fresh, pl.DataFrame):
                raise TypeError(f"reference {name!r} parsed into {type(fresh).__name__}")
            if reference.key is not None and fresh.is_empty():
                raise ValueError(f"{name} lists no instruments")
        except BaseException:
            state.failures += 1
            state.due = time.monotonic() + max(reference.retry_every, state.held_until - now)
            raise
        if reference.keep_delisted and state.frame is not None and reference.key is not None:
            gone = state.frame.join(fresh, on=reference.key, how="anti")
            fresh = pl.concat([fresh, gone], how="diagonal_relaxed")
        state.frame = fresh
        state.refreshed_at = time.monotonic()
        state.due = state.refreshed_at + reference.every
        state.failures = 0
        self._update_known()
        if self.on_refresh is not None and self._known is not None:
            self.on_refresh(self._known)
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        return fresh

    async def _refresh_logged(self, name: str) -> bool:
        reference = self.declared[name]
        try:
            frame = await self.refresh(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state = self._state[name]
            kept = "keeping the last copy" if state.frame is not None else "none read yet"
            host = unreachable_host(exc)
            if host is not None and self.on_unreachable is not None:
                self.on_unreachable(host)
                say = self.log.debug
            else:
                say = self.log.warning
            say(
                "could not read reference list %s (%s); %s, trying again in %.0fs",
                _named(reference),
                exc,
                kept,
                max(0.0, state.due - time.monotonic()),
            )
            return False
        self.log.info("reference list %s read: %d rows", _named(reference), frame.height)
        return True

    def _fetcher(self, reference: Reference) -> Fetch:
        budget = None
        if reference.budget is not None:
            budget = Budget.named(reference.budget[0], reference.budget[1])

        async def fetch(url: str, params: Mapping[str, str] | None = None) -> Any:
            from lakeflow.fetch import fetch_json

            if budget is not None:
                await budget.spend(reference.weight)

            def refused(status: int, retry_after: float | None) -> None:
                self._held(reference, status, retry_after, budget)

            return await fetch_json(
                url,
                params,
                session=await self._open_session(),
                within=reference.within,
                log=self.log,
                on_refusal=refused,
                max_body=reference.max_body,
            )

        return fetch

    def _held(
        self,
        reference: Reference,
        status: int,
        retry_after: float | None,
        budget: Budget | None,
    ) -> None:
        """After a refusal that asks for a pause: hold this list (and its budget).

        Called for every non-200 answer, before ``fetch_json`` waits out a 429 itself, so
        that the sources sharing the budget wait too.
        """
        if status not in reference.holds:
            return
        seconds = retry_after if retry_after is not None else reference.holds[status]
        reason = f"HTTP {status}, asked to wait {seconds:g}s"
        state = self._state[reference.name]
        state.held_until = max(state.held_until, time.monotonic() + seconds)
        state.held_reason = reason
        if budget is not None and budget.hold(seconds, f"{reference.name}: {reason}"):
            self.log.warning(
                "%s: every request to budget %s waits %gs", reason, budget.name, seconds
            )

    async def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": self.user_agent})
        return self._session

    async def close(self) -> None:
        """Close the HTTP session the fetches used."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- the schedule ------------------------------------------------------------------

    def request_early(self, reason: str) -> None:
        """Ask for every instrument list now (a decode met an unknown instrument).

        Safe from any thread; at most one early fetch per list per ``early_every``.
        """
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        now = time.monotonic()
        for name, reference in self.declared.items():
            state = self._state[name]
            if reference.key is None or now - state.early_at < reference.early_every:
                continue
            state.early_at = now
            # Early, but never inside a hold the server asked for.
            state.due = min(state.due, max(now, state.held_until))
            self.log.info("reading %s early: %s", name, reason)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(wake.set)

    async def run(self) -> None:
        """Refresh each list when it is due, for as long as the source lives."""
        self._bind()
        assert self._wake is not None
        if not self.declared:
            return
        try:
            while True:
                now = time.monotonic()
                due = [name for name, state in self._state.items() if state.due <= now]
                for name in due:
                    await self._refresh_logged(name)
                wait = min(state.due for state in self._state.values()) - time.monotonic()
                if wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            await self.close()

    async def updated(self, name: str) -> pl.DataFrame:
        """Wait for the next successful refresh of ``name``; returns the new copy."""
        self._bind()
        assert self._changed is not None
        before = self._state[name].refreshed_at
        async with self._changed:
            await self._changed.wait_for(lambda: self._state[name].refreshed_at != before)
        frame = self._state[name].frame
        assert frame is not None
        return frame


def _named(reference: Reference) -> str:
    """A reference for messages: its name, and where it is read when that is one URL."""
    if reference.url is None:
        return reference.name
    from lakeflow.secrets import mask_uri

    return f"{reference.name} ({mask_uri(reference.url)})"
