"""The drift-free timer of a polling source: polls never overlap and never drift."""

from __future__ import annotations

import asyncio
import math

from lakeflow.errors import SourceError, SourcePaused
from lakeflow.fetch import unreachable_host
from lakeflow.runtime.lane import Lane
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
    lane: Lane,
    stopping: asyncio.Event,
    max_polls: int | None = None,
) -> None:
    """Call ``source.poll`` at ``start + k * interval`` for k = 0, 1, 2, ...

    A slow poll does not shift the schedule: the next one starts at its own tick, and
    ticks that passed while a poll ran are skipped (and recorded as a gap), never run
    late or concurrently. A failed poll is a gap from its tick to the next success; the
    source's lane records them.

    With ``max_polls`` (``--once``) the source makes that many attempts, not successes:
    a one-off run must end, and a failed attempt then fails the source.
    """
    loop = asyncio.get_running_loop()
    interval = source.interval
    log = lane.log
    start = loop.time()
    tick = 0
    attempts = 0
    fatal: SourceError | None = None
    last_failure = ""
    lane.polls_started()
    try:
        while max_polls is None or attempts < max_polls:
            if not await _sleep_until(start + tick * interval, stopping):
                break
            attempts += 1
            paused = False
            last_failure = ""
            lane.polling()
            try:
                # A poll may retry inside its interval but must end before the next tick.
                result = await asyncio.wait_for(source.poll(), timeout=interval)
            except asyncio.CancelledError:
                lane.poll_interrupted()
                raise
            except SourcePaused as exc:
                log.error("PAUSED for %.0fs: %s", exc.seconds, exc.reason)
                last_failure = f"paused: {exc.reason}"
                lane.poll_failed(last_failure, paused=True)
                paused = True
                if max_polls is None and not await _sleep_until(
                    loop.time() + exc.seconds, stopping
                ):
                    break
            except SourceError as exc:
                log.error("stopped: %s", exc)
                lane.failed(str(exc))
                fatal = exc
                break
            except TimeoutError:
                log.warning("poll did not finish within the %.0fs interval", interval)
                last_failure = "poll timed out"
                lane.poll_failed(last_failure)
            except Exception as exc:
                host = unreachable_host(exc)
                if host is not None:
                    lane.unreachable(host)
                # An unreachable host is said once a minute for every source (the runner).
                say = log.debug if host is not None else log.warning
                say("poll failed: %s: %s", type(exc).__name__, exc)
                last_failure = f"poll failed: {type(exc).__name__}: {exc}"
                lane.poll_failed(last_failure)
            else:
                payloads = [result] if isinstance(result, bytes | bytearray) else list(result)
                lane.polled([bytes(p) for p in payloads])
            if max_polls is not None and attempts >= max_polls:
                break
            # The next tick strictly after now: ticks missed while polling are skipped.
            elapsed = loop.time() - start
            following = max(tick + 1, math.floor(elapsed / interval) + 1)
            if following > tick + 1 and not paused:
                log.warning("poll overran its interval; %d poll(s) skipped", following - tick - 1)
                lane.polls_skipped()
            tick = following
    finally:
        # Whatever was open (failed polls, a stop mid-poll) is recorded until now.
        lane.stopped()
    if fatal is not None:
        raise fatal
    if max_polls is not None and last_failure:
        raise SourceError(f"the last of {attempts} poll(s) failed: {last_failure}")
