"""The drift-free timer of a polling source: polls never overlap and never drift."""

from __future__ import annotations

import asyncio
import math
import time

from lakeflow.errors import SourceError, SourcePaused
from lakeflow.runtime.committer import Committer
from lakeflow.runtime.stats import SourceState
from lakeflow.sources import PollingSource


async def _sleep_until(deadline: float, stopping: asyncio.Event) -> bool:
    """Sleep until the loop-clock ``deadline``; False if stopped first."""
    delay = deadline - asyncio.get_running_loop().time()
    if delay <= 0:
        return not stopping.is_set()
    try:
        await asyncio.wait_for(stopping.wait(), timeout=delay)
    except TimeoutError:
        return True
    return False


async def run_polls(
    source: PollingSource,
    committer: Committer,
    stopping: asyncio.Event,
    max_polls: int | None = None,
) -> None:
    """Call ``source.poll`` at ``start + k * interval`` for k = 0, 1, 2, ...

    A slow poll does not shift the schedule: the next one starts at its own tick, and
    ticks that passed while a poll ran are skipped (and recorded as a gap), never run
    late or concurrently. A failed poll is a gap from its tick to the next success.

    With ``max_polls`` (``--once``) the source makes that many attempts, not successes:
    a one-off run must end, and a failed attempt then fails the source.
    """
    loop = asyncio.get_running_loop()
    interval = source.interval
    log, stats = committer.log, committer.stats
    start = loop.time()
    tick = 0
    gap_since: float | None = None
    gap_reason = ""
    attempts = 0
    fatal: SourceError | None = None
    last_failure = ""

    def open_gap(reason: str) -> None:
        nonlocal gap_since, gap_reason
        if gap_since is None:
            gap_since, gap_reason = time.time(), reason

    while max_polls is None or attempts < max_polls:
        if not await _sleep_until(start + tick * interval, stopping):
            break
        attempts += 1
        paused = False
        last_failure = ""
        stats.state = SourceState.POLLING
        try:
            # A poll may retry inside its interval but must end before the next tick.
            result = await asyncio.wait_for(source.poll(), timeout=interval)
        except asyncio.CancelledError:
            # Stopped in the middle of a poll: that tick's snapshot was not taken.
            open_gap("stopped before the poll finished")
            committer.add_gap(gap_since or time.time(), time.time(), gap_reason)
            raise
        except SourcePaused as exc:
            stats.failed_polls += 1
            log.error("PAUSED for %.0fs: %s", exc.seconds, exc.reason)
            open_gap(f"paused: {exc.reason}")
            last_failure = f"paused: {exc.reason}"
            stats.state = SourceState.PAUSED
            paused = True
            if max_polls is None and not await _sleep_until(loop.time() + exc.seconds, stopping):
                break
        except SourceError as exc:
            log.error("stopped: %s", exc)
            stats.state = SourceState.FAILED
            open_gap(f"source stopped: {exc}")
            fatal = exc
            break
        except TimeoutError:
            stats.failed_polls += 1
            log.warning("poll did not finish within the %.0fs interval", interval)
            open_gap("poll timed out")
            last_failure = "poll timed out"
        except Exception as exc:
            stats.failed_polls += 1
            log.warning("poll failed: %s: %s", type(exc).__name__, exc)
            open_gap(f"poll failed: {type(exc).__name__}: {exc}")
            last_failure = f"poll failed: {type(exc).__name__}: {exc}"
        else:
            payloads = [result] if isinstance(result, bytes | bytearray) else list(result)
            # One receipt time per poll: its bodies share one polled_at.
            committer.buffer.extend([bytes(p) for p in payloads], time.time_ns())
            stats.polls += 1
            stats.last_poll = time.time()
            stats.state = SourceState.IDLE
            if gap_since is not None:
                committer.add_gap(gap_since, time.time(), gap_reason)
                gap_since = None
        if max_polls is not None and attempts >= max_polls:
            break
        # The next tick strictly after now: ticks missed while polling are skipped.
        elapsed = loop.time() - start
        following = max(tick + 1, math.floor(elapsed / interval) + 1)
        if following > tick + 1 and not paused:
            log.warning("poll overran its interval; %d poll(s) skipped", following - tick - 1)
            open_gap("poll overran the interval")
        tick = following
    if gap_since is not None:
        committer.add_gap(gap_since, time.time(), gap_reason)
    if fatal is not None:
        raise fatal
    if max_polls is not None and last_failure:
        raise SourceError(f"the last of {attempts} poll(s) failed: {last_failure}")
