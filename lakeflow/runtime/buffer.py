"""The per-source buffer of raw payloads: the only thing the hot path touches."""

from __future__ import annotations

import asyncio
import time
from array import array
from bisect import bisect_right
from itertools import accumulate, islice

import polars as pl

from lakeflow.config.models import DEFAULT_BUFFERED_BYTES
from lakeflow.runtime.spool import RETRY_SECONDS, Spool
from lakeflow.schema import TIMESTAMP
from lakeflow.sources import Batch


class PayloadBuffer:
    """Raw payloads and their receipt times, waiting for the next flush.

    :meth:`emit` is called once per message, so it only appends and adds the payload's
    length to :attr:`nbytes` (and, the first time in an event-loop tick, schedules the
    spool write for the end of that tick). The flusher wakes when ``ready`` is set
    (``flush_rows`` payloads or ``flush_bytes`` bytes wait) or on its timer. Past
    ``limit`` payloads or ``limit_bytes`` bytes, whichever comes first, the buffer
    reports ``backlogged`` and readers await :meth:`writable`. Payload ``i`` of the
    buffer has sequence ``first + i``.

    Both limits are needed: a count bounds nothing when frames are large (25,000 frames
    of 1 MiB are 25 GB), and bytes alone would let a stream of tiny messages build
    batches far larger than ``flush_rows``.
    """

    def __init__(
        self,
        flush_rows: int,
        limit: int,
        spool: Spool | None = None,
        *,
        limit_bytes: int = DEFAULT_BUFFERED_BYTES,
    ) -> None:
        self.flush_rows = flush_rows
        self.limit = max(limit, flush_rows)
        self.limit_bytes = max(1, limit_bytes)
        #: Bytes that wake the flusher early, and the most one :meth:`take` returns by
        #: default: half the limit, so that a batch commits while the other half fills.
        self.flush_bytes = max(1, self.limit_bytes // 2)
        #: Bytes of the payloads held (their lengths summed).
        self.nbytes = 0
        self.payloads: list[bytes] = []
        self.times = array("q")
        self.ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.taken = 0  # payloads handed to flushes so far
        self.first = 1  # sequence of payloads[0]
        self.spool = spool
        self._spooled = 0  # payloads[:_spooled] are in the spool
        #: Of the payloads the latest :meth:`take` returned, how many never reached the
        #: spool (its disk was full): lost if their commit does not land before exit.
        self.taken_unspooled = 0
        self._retry: asyncio.TimerHandle | None = None  # the next spool write, disk full
        self._last_taken: int | None = None  # receipt time (ns) of the newest payload taken
        self._scheduled = False
        if spool is not None:
            self.emit = self._emit_spooled  # type: ignore[method-assign]

    def emit(self, payload: bytes) -> None:
        """Append one payload (called per message: keep it this small)."""
        self.payloads.append(payload)
        self.times.append(time.time_ns())
        # The sum kept in a local: one attribute read fewer, on the hottest line there is.
        self.nbytes = nbytes = self.nbytes + len(payload)
        if nbytes >= self.flush_bytes or len(self.payloads) >= self.flush_rows:
            self._full()

    def _emit_spooled(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self.times.append(time.time_ns())
        self.nbytes = nbytes = self.nbytes + len(payload)
        if not self._scheduled:
            # Once per tick, not per message: everything that arrived in this tick goes
            # to the spool in one write when the tick ends.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_spool)
        if nbytes >= self.flush_bytes or len(self.payloads) >= self.flush_rows:
            self._full()

    def extend(self, payloads: list[bytes], received_ns: int) -> None:
        """Append several payloads received at one instant (the bodies of one poll)."""
        for payload in payloads:
            self.payloads.append(payload)
            self.times.append(received_ns)
        self.nbytes += sum(map(len, payloads))
        if self.spool is not None and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_spool)
        if len(self.payloads) >= self.flush_rows or self.nbytes >= self.flush_bytes:
            self._full()

    def _full(self) -> None:
        """A flush is due: wake the flusher, and hold the readers back at either limit."""
        self.ready.set()
        if len(self.payloads) >= self.limit or self.nbytes >= self.limit_bytes:
            self._room.clear()

    @property
    def due(self) -> bool:
        """True while enough waits for a flush now (``flush_rows`` payloads or ``flush_bytes``).

        For the flusher: after a flush, ``ready`` may be cleared only while this is False.
        Payloads that arrived during the commit may already be due, and a reader held back
        at the limit emits nothing that would set ``ready`` again: cleared anyway, the
        next flush waits for ``flush_interval`` with the reader stopped.
        """
        return len(self.payloads) >= self.flush_rows or self.nbytes >= self.flush_bytes

    def write_spool(self) -> None:
        """Append the payloads not yet spooled to the spool, as one block.

        When the disk refuses the write (full), they stay unspooled, held in memory and
        committed as usual, and go with the next block: tried at the first tick after the
        spool's retry delay, or by a timer then if no tick comes.
        """
        self._scheduled = False
        spool, done, count = self.spool, self._spooled, len(self.payloads)
        if spool is None or done >= count:
            return
        # ``refusing`` first: while the disk is full, a tick costs no copy of the backlog.
        if not spool.refusing and spool.append(
            self.first + done, self.payloads[done:], self.times[done:]
        ):
            self._spooled = count
        elif self._retry is None:
            # Tried again even when nothing more arrives (a quiet feed, a reader held back
            # by backpressure), so that what is held is spooled soon after space returns.
            self._retry = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._retry_spool)

    def _retry_spool(self) -> None:
        self._retry = None
        if self.spool is not None and not self.spool.closed:
            self.write_spool()

    @property
    def unspooled(self) -> int:
        """Payloads held that are not in the spool (its disk is full); 0 without a spool."""
        return len(self.payloads) - self._spooled if self.spool is not None else 0

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def backlogged(self) -> bool:
        """True while the buffer is at its limit: ``limit`` payloads or ``limit_bytes``."""
        return not self._room.is_set()

    async def writable(self) -> None:
        """Wait until a flush has made room."""
        await self._room.wait()

    def oldest(self) -> int | None:
        """Receipt time (ns) of the oldest payload waiting, None when empty."""
        return self.times[0] if self.times else None

    def last_received(self) -> int | None:
        """Receipt time (ns) of the newest payload ever appended, None before the first.

        Read by the silence watchdog and the metrics, never per payload: the receipt
        times are recorded anyway, so knowing the last one costs the hot path nothing.
        """
        return self.times[-1] if self.times else self._last_taken

    def take(self, limit: int | None = None, max_bytes: int | None = None) -> tuple[int, Batch]:
        """Remove up to ``limit`` payloads (all by default), oldest first, within ``max_bytes``.

        ``max_bytes`` (default ``flush_bytes``, half the byte limit) bounds the batch by
        size too, so that one commit never decodes more than that at once: the payloads
        that fit in it are taken, always at least one (a single payload larger than it
        still goes). The caller takes again for the rest. Returns the sequence of the
        first one and the batch.
        """
        self.write_spool()
        count = len(self.payloads) if limit is None else min(limit, len(self.payloads))
        budget = self.flush_bytes if max_bytes is None else max_bytes
        if count == len(self.payloads):
            # All of it (the usual case): the running total is the size, no counting.
            size = self.nbytes
            if size > budget:
                count, size = _fitting(self.payloads, count, budget)
        else:
            # Part of it: sized in C (map/accumulate), never a Python loop per payload.
            count, size = _fitting(self.payloads, count, budget)
        payloads, times, first = self.payloads[:count], self.times[:count], self.first
        if count:
            self._last_taken = times[-1]
        del self.payloads[:count]
        del self.times[:count]
        self.nbytes -= size
        self.first += count
        self.taken += count
        # Those taken before the disk (full) took them are committed without a spool copy.
        self.taken_unspooled = max(0, count - self._spooled) if self.spool is not None else 0
        self._spooled = max(0, self._spooled - count)
        if not self.due:
            self.ready.clear()
        if len(self.payloads) < self.limit and self.nbytes < self.limit_bytes:
            self._room.set()
        return first, make_batch(payloads, times)


def _fitting(payloads: list[bytes], count: int, budget: int) -> tuple[int, int]:
    """How many of the first ``count`` payloads fit in ``budget`` bytes (at least one if
    any), and their total size."""
    if not count:
        return 0, 0
    ends = list(accumulate(map(len, islice(payloads, count))))
    if ends[-1] <= budget:
        return count, ends[-1]
    fit = max(1, bisect_right(ends, budget))
    return fit, ends[fit - 1]


def make_batch(payloads: list[bytes], times: array) -> Batch:
    """A batch from payloads and their receipt times in ns since the epoch."""
    received_at = pl.Series("received_at", times, dtype=pl.Int64)
    received_at = received_at.cast(pl.Datetime("ns", "UTC")).cast(TIMESTAMP)
    return Batch(payloads=payloads, received_at=received_at)
