"""Supervision of a streaming source: reconnect with backoff, notice silence.

What each connection covered, and the gaps between, are the source's lane's
(:mod:`lakeflow.runtime.lane`): the supervisor tells it what happens. A quiet connection
within the source's silence timeout is coverage; past it, the connection is given up,
the lane records the silent stretch, and the source falls over to its next endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from lakeflow.errors import LakeflowError, SourceError
from lakeflow.fetch import unreachable_host
from lakeflow.runtime.backoff import Backoff
from lakeflow.runtime.lane import Lane
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


async def supervise_stream(
    source: StreamingSource,
    lane: Lane,
    stopping: asyncio.Event,
    silence_timeout: float | None = None,
) -> None:
    """Run ``source.stream`` until stopped, reconnecting after every end, error or silence."""
    backoff = Backoff(base=1.0, cap=30.0)
    log, stats = lane.log, lane.stats
    lane.stream_started(silence_timeout)
    try:
        while not stopping.is_set():
            host: str | None = None  # the host this attempt could not reach, if that is why
            try:
                await _connection(source, lane, silence_timeout)
                reason = "connection closed"
            except SourceError as exc:
                log.error("stopped: %s", exc)
                lane.disconnected(f"source stopped: {exc}")
                stats.state = SourceState.FAILED
                raise
            except StreamSilent as exc:
                reason = str(exc)
                backoff.reset()  # the connection itself was fine: no reason to wait long
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                host = unreachable_host(exc)
                if host is not None:
                    lane.unreachable(host)
            lived = time.time() - lane.connected_at if lane.connected_at else 0.0
            lane.disconnected(reason)
            if stopping.is_set():
                break
            if lived >= HEALTHY_AFTER:
                backoff.reset()
            delay = backoff.next()
            stats.reconnects += 1
            # An unreachable host is said once a minute for every source (the runner).
            say = log.debug if host is not None else log.warning
            say("disconnected (%s); reconnecting in %.1fs", reason, delay)
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
    finally:
        # A stop cancels this task wherever it waits (a handshake, the backoff's sleep):
        # the open gap is recorded here, with the reason it began, whatever ended it.
        lane.stopped()


async def _connection(source: StreamingSource, lane: Lane, silence_timeout: float | None) -> None:
    """One connection: ``source.stream`` under a silence watchdog. Raises StreamSilent."""
    if silence_timeout is None:
        await source.stream(lane)
        return
    task = asyncio.ensure_future(source.stream(lane))
    every = min(WATCH_EVERY, silence_timeout / 5)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                task.result()
                return
            _watch(source, lane, silence_timeout)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _watch(source: StreamingSource, lane: Lane, silence_timeout: float) -> None:
    """One look at the connection: note recovery, or give up on a silent one."""
    quiet_since = lane.quiet_since()
    if quiet_since is None:
        return  # connecting
    url = lane.stats.url or "the stream"
    lasted = lane.data_again()
    if lasted is not None:
        lane.log.info("data arrives again on %s, after %.0fs of silence", url, lasted)
        return
    quiet = time.time() - quiet_since
    if quiet <= silence_timeout:
        return
    lane.silent(
        quiet_since,
        f"connected to {url} but no data for {quiet:.0f}s "
        f"(more than the {silence_timeout:g}s that is normal for this source)",
    )
    following = source.fall_over()
    lane.log.warning(
        "SILENT: connected to %s but no data for %.0fs (more than the %gs that is normal "
        "for this source). Likely: %s. Reconnecting%s.",
        url,
        quiet,
        silence_timeout,
        LIKELY_CAUSES,
        f" to the next known endpoint, {following}" if following else "",
    )
    raise StreamSilent(f"silent for {quiet:.0f}s")
