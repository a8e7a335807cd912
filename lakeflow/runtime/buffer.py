"""The per-source buffer of raw payloads: the only thing the hot path touches."""

from __future__ import annotations

import asyncio
import time
from array import array

import polars as pl

from lakeflow.runtime.spool import RETRY_SECONDS, Spool
from lakeflow.schema import TIMESTAMP
from lakeflow.sources import Batch


class PayloadBuffer:
    """Raw payloads and their receipt times, waiting for the next flush.

    :meth:`emit` is called once per message, so it only appends (and, the first time in
    an event-loop tick, schedules the spool write for the end of that tick). The flusher
    wakes when ``ready`` is set (``flush_rows`` payloads wait) or on its timer. Past
    ``limit`` payloads the buffer reports ``backlogged`` and readers await
    :meth:`writable`. Payload ``i`` of the buffer has sequence ``first + i``.
    """

    def __init__(self, flush_rows: int, limit: int, spool: Spool | None = None) -> None:
        self.flush_rows = flush_rows
        self.limit = max(limit, flush_rows)
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
        if len(self.payloads) >= self.flush_rows:
            self._full()

    def _emit_spooled(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self.times.append(time.time_ns())
        if not self._scheduled:
            # Once per tick, not per message: everything that arrived in this tick goes
            # to the spool in one write when the tick ends.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_spool)
        if len(self.payloads) >= self.flush_rows:
            self._full()

    def extend(self, payloads: list[bytes], received_ns: int) -> None:
        """Append several payloads received at one instant (the bodies of one poll)."""
        for payload in payloads:
            self.payloads.append(payload)
            self.times.append(received_ns)
        if self.spool is not None and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_spool)
        if len(self.payloads) >= self.flush_rows:
            self._full()

    def _full(self) -> None:
        self.ready.set()
        if len(self.payloads) >= self.limit:
            self._room.clear()

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
        """True while the buffer is at its limit."""
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

    def take(self, limit: int | None = None) -> tuple[int, Batch]:
        """Remove up to ``limit`` payloads (all by default), oldest first.

        Returns the sequence of the first one and the batch.
        """
        self.write_spool()
        count = len(self.payloads) if limit is None else min(limit, len(self.payloads))
        payloads, times, first = self.payloads[:count], self.times[:count], self.first
        if count:
            self._last_taken = times[-1]
        del self.payloads[:count]
        del self.times[:count]
        self.first += count
        self.taken += count
        # Those taken before the disk (full) took them are committed without a spool copy.
        self.taken_unspooled = max(0, count - self._spooled) if self.spool is not None else 0
        self._spooled = max(0, self._spooled - count)
        if len(self.payloads) < self.flush_rows:
            self.ready.clear()
        if len(self.payloads) < self.limit:
            self._room.set()
        return first, make_batch(payloads, times)


def make_batch(payloads: list[bytes], times: array) -> Batch:
    """A batch from payloads and their receipt times in ns since the epoch."""
    received_at = pl.Series("received_at", times, dtype=pl.Int64)
    received_at = received_at.cast(pl.Datetime("ns", "UTC")).cast(TIMESTAMP)
    return Batch(payloads=payloads, received_at=received_at)
