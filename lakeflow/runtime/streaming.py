"""Supervision of a streaming source: reconnect with backoff, notice silence, record gaps.

Gaps in ``_gaps`` tile the time a source did not cover, without overlaps:

- a disconnection, from the drop to the next connection (reason: how it ended);
- a run whose first connection attempt fails, from the start of the stream to the first
  connection (reason: ``not connected yet: `` and how the attempt failed);
- whatever is open when the run stops (in a handshake, in the backoff before a
  reconnect), until the stop, with the reason it began; a first attempt the stop
  interrupts says what it was doing (``not connected yet: waiting for ...``). The
  next run's "lakeflow was not running" gap then starts at the stop;
- a *silent* stretch: connected, but no data for longer than the source's
  ``silence_timeout``. It starts at the last payload (or at the connection, if that is
  later: the stream may have stopped forwarding right after it) and ends when the
  runtime gives up on the connection; its reason starts with ``silent:``. A quiet
  connection within ``silence_timeout`` is coverage, not a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from lakeflow.errors import LakeflowError, SourceError
from lakeflow.runtime.backoff import Backoff
from lakeflow.runtime.committer import Committer
from lakeflow.runtime.stats import SourceState
from lakeflow.sources import StreamingSource

#: A connection that lived this long counts as healthy: the next reconnect is immediate.
HEALTHY_AFTER = 30.0
#: The silence watchdog looks this often at most (and at a fifth of the timeout at least).
WATCH_EVERY = 1.0
#: What a silent stream most likely means, for the warning.
LIKELY_CAUSES = (
    "the exchange moved or retired the stream (it keeps the connection open and sends "
    "nothing), a `symbols` entry is wrong or delisted, or the exchange blocks this region"
)


class StreamSilent(LakeflowError):
    """The connection stayed open but carried no data past ``silence_timeout``."""


class StreamFeed:
    """What a streaming source talks to. ``emit`` is the buffer's own method, for speed.

    It also keeps the source's coverage: from its creation (the supervisor's start) the
    source covers nothing until a connection is up, and ``gap_since`` is where the open
    gap began. The run's first attempt that connects closes it without a gap (the moment
    a handshake takes is not an outage); one that fails makes it a gap from the start.
    """

    def __init__(self, committer: Committer) -> None:
        self._committer = committer
        buffer = committer.buffer
        self.emit = buffer.emit
        self.writable = buffer.writable
        self._buffer = buffer
        self.connected_at: float | None = None
        #: Start of the stretch the source does not cover; None while connected.
        self.gap_since: float | None = time.time()
        #: Why: how the outage began. Empty while the run's first attempt is under way.
        self.gap_reason = ""
        #: What the connection attempt under way is doing (``connecting``), for a stop.
        self.attempt = ""
        #: Epoch seconds of the last payload when the current silence was noticed.
        self.silent_after: float | None = None
        committer.stats.uncovered_since = self.gap_since

    @property
    def backlogged(self) -> bool:
        return self._buffer.backlogged

    def connecting(self, what: str) -> None:
        """Say what the connection attempt is doing ("waiting for the handshake's answer").

        Optional for a source: should the run stop before the first connection is up,
        the gap's reason says what the attempt was doing then.
        """
        self.attempt = what

    def connected(self, detail: str = "") -> None:
        now = time.time()
        stats = self._committer.stats
        if self.gap_since is not None and self.gap_reason:
            self._committer.add_gap(self.gap_since, now, self.gap_reason)
        self.gap_since = None
        self.gap_reason = self.attempt = ""
        if self.silent_after is not None:
            # Still silent since the last payload: this connection has to prove itself.
            stats.state = SourceState.SILENT
            stats.uncovered_since = now
        else:
            stats.state = SourceState.CONNECTED
            stats.uncovered_since = None
        stats.connected_since = now
        if detail:
            stats.url = detail
        self.connected_at = now
        self._committer.log.info("connected%s", f" to {detail}" if detail else "")

    def disconnected(self, reason: str) -> None:
        # What arrived before the drop is complete: commit it now, not at the deadline.
        self._committer.request_drain()
        now = time.time()
        if self.gap_since is None:
            self.gap_since = now
            self.gap_reason = reason
        elif not self.gap_reason:
            # The run's first attempt failed: uncovered since the start, for this reason.
            self.gap_reason = f"not connected yet: {reason}"
        self.connected_at = None
        stats = self._committer.stats
        stats.state = SourceState.DISCONNECTED
        stats.connected_since = None
        if stats.uncovered_since is None:
            stats.uncovered_since = now

    def stopped(self) -> None:
        """The supervisor ends (a stop, a failure): record what was not covered, until now.

        Wherever the stop finds the source: in a handshake, in the backoff before a
        reconnect, on a silent connection. The source covers nothing after now either,
        so the status's ``covered_until`` becomes now: the next run's "lakeflow was not
        running" gap starts where this one's last gap ended.
        """
        now = time.time()
        committer = self._committer
        quiet_since = self.quiet_since()
        if self.silent_after is not None and quiet_since is not None:
            # A connection that was still silent was not covering.
            committer.add_gap(
                quiet_since,
                now,
                f"silent: connected to {committer.stats.url or 'the stream'} but no data "
                f"for {now - quiet_since:.0f}s, until the stop",
            )
        elif self.gap_since is not None:
            reason = self.gap_reason or (
                f"not connected yet: {self.attempt or 'connecting'}, until the stop"
            )
            committer.add_gap(self.gap_since, max(self.gap_since, now), reason)
        self.gap_since = self.connected_at = None
        self.gap_reason = self.attempt = ""
        stats = committer.stats
        stats.uncovered_since = now
        stats.connected_since = None
        if stats.state in (SourceState.CONNECTED, SourceState.SILENT):
            stats.state = SourceState.DISCONNECTED

    def quiet_since(self) -> float | None:
        """Since when the current connection has carried no data (None: not connected).

        Data is a payload that decoded into rows: a stream that sends only pongs and
        acknowledgements is quiet. While payloads wait to be decoded, it cannot be told
        yet whether they are data, so the newest payload counts instead.
        """
        if self.connected_at is None:
            return None
        stats = self._committer.stats
        last = stats.last_data if stats.backlog == 0 else stats.last_payload
        return self.connected_at if last is None else max(last, self.connected_at)


async def supervise_stream(
    source: StreamingSource,
    committer: Committer,
    stopping: asyncio.Event,
    silence_timeout: float | None = None,
) -> None:
    """Run ``source.stream`` until stopped, reconnecting after every end, error or silence."""
    feed = StreamFeed(committer)
    backoff = Backoff(base=1.0, cap=30.0)
    log = committer.log
    stats = committer.stats
    stats.silence_timeout = silence_timeout
    try:
        while not stopping.is_set():
            try:
                await _connection(source, feed, committer, silence_timeout)
                reason = "connection closed"
            except SourceError as exc:
                log.error("stopped: %s", exc)
                feed.disconnected(f"source stopped: {exc}")
                stats.state = SourceState.FAILED
                raise
            except StreamSilent as exc:
                reason = str(exc)
                backoff.reset()  # the connection itself was fine: no reason to wait long
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            lived = time.time() - feed.connected_at if feed.connected_at else 0.0
            feed.disconnected(reason)
            if stopping.is_set():
                break
            if lived >= HEALTHY_AFTER:
                backoff.reset()
            delay = backoff.next()
            stats.reconnects += 1
            log.warning("disconnected (%s); reconnecting in %.1fs", reason, delay)
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
    finally:
        # A stop cancels this task wherever it waits (a handshake, the backoff's sleep):
        # the open gap is recorded here, with the reason it began, whatever ended it.
        feed.stopped()


async def _connection(
    source: StreamingSource,
    feed: StreamFeed,
    committer: Committer,
    silence_timeout: float | None,
) -> None:
    """One connection: ``source.stream`` under a silence watchdog. Raises StreamSilent."""
    if silence_timeout is None:
        await source.stream(feed)
        return
    task = asyncio.ensure_future(source.stream(feed))
    every = min(WATCH_EVERY, silence_timeout / 5)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                task.result()
                return
            _watch(source, feed, committer, silence_timeout)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _watch(
    source: StreamingSource, feed: StreamFeed, committer: Committer, silence_timeout: float
) -> None:
    """One look at the connection: note recovery, or give up on a silent one."""
    stats = committer.stats
    quiet_since = feed.quiet_since()
    if quiet_since is None:
        return  # connecting
    last = stats.last_data
    if feed.silent_after is not None and last is not None and last > feed.silent_after:
        committer.log.info(
            "data arrives again on %s, after %.0fs of silence",
            stats.url or "the stream",
            last - feed.silent_after,
        )
        feed.silent_after = None
        stats.state = SourceState.CONNECTED
        stats.uncovered_since = None
        return
    now = time.time()
    quiet = now - quiet_since
    if quiet <= silence_timeout:
        return
    url = stats.url or "the stream"
    committer.add_gap(
        quiet_since,
        now,
        f"silent: connected to {url} but no data for {quiet:.0f}s "
        f"(more than the {silence_timeout:g}s that is normal for this source)",
    )
    if feed.silent_after is None:
        feed.silent_after = last if last is not None else quiet_since
    stats.state = SourceState.SILENT
    following = source.fall_over()
    committer.log.warning(
        "SILENT: connected to %s but no data for %.0fs (more than the %gs that is normal "
        "for this source). Likely: %s. Reconnecting%s.",
        url,
        quiet,
        silence_timeout,
        LIKELY_CAUSES,
        f" to the next known endpoint, {following}" if following else "",
    )
    raise StreamSilent(f"silent for {quiet:.0f}s")
