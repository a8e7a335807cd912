"""Supervision of a streaming source: reconnect with backoff, record every gap."""

from __future__ import annotations

import asyncio
import contextlib
import time

from lakeflow.errors import SourceError
from lakeflow.runtime.backoff import Backoff
from lakeflow.runtime.committer import Committer
from lakeflow.sources import StreamingSource

#: A connection that lived this long counts as healthy: the next reconnect is immediate.
HEALTHY_AFTER = 30.0


class StreamFeed:
    """What a streaming source talks to. ``emit`` is the buffer's own method, for speed."""

    def __init__(self, committer: Committer) -> None:
        self._committer = committer
        buffer = committer.buffer
        self.emit = buffer.emit
        self.writable = buffer.writable
        self._buffer = buffer
        self.connected_at: float | None = None
        self.gap_since: float | None = None
        self.gap_reason = ""

    @property
    def backlogged(self) -> bool:
        return self._buffer.backlogged

    def connected(self, detail: str = "") -> None:
        now = time.time()
        stats = self._committer.stats
        if self.gap_since is not None:
            self._committer.add_gap(self.gap_since, now, self.gap_reason)
            self.gap_since = None
        stats.state = "connected"
        stats.connected_since = now
        self.connected_at = now
        self._committer.log.info("connected%s", f" to {detail}" if detail else "")

    def disconnected(self, reason: str) -> None:
        # What arrived before the drop is complete: commit it now, not at the deadline.
        self._buffer.ready.set()
        if self.gap_since is None:
            self.gap_since = time.time()
            self.gap_reason = reason
        self.connected_at = None
        self._committer.stats.state = "disconnected"
        self._committer.stats.connected_since = None


async def supervise_stream(
    source: StreamingSource, committer: Committer, stopping: asyncio.Event
) -> None:
    """Run ``source.stream`` until stopped, reconnecting after every end or error."""
    feed = StreamFeed(committer)
    backoff = Backoff(base=1.0, cap=30.0)
    log = committer.log
    stats = committer.stats
    while not stopping.is_set():
        try:
            await source.stream(feed)
            reason = "connection closed"
        except SourceError as exc:
            log.error("stopped: %s", exc)
            feed.disconnected(f"source stopped: {exc}")
            stats.state = "failed"
            raise
        except asyncio.CancelledError:
            feed.disconnected("stopped")
            raise
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
    # Still disconnected at stop: the uncovered time so far is a gap too.
    if feed.gap_since is not None and feed.gap_reason != "stopped":
        committer.add_gap(feed.gap_since, time.time(), feed.gap_reason)
        feed.gap_since = None
