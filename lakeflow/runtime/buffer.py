"""The per-source buffer of raw payloads: the only thing the hot path touches."""

from __future__ import annotations

import asyncio
import time
from array import array

import polars as pl

from lakeflow.schema import TIMESTAMP
from lakeflow.sources import Batch


class PayloadBuffer:
    """Raw payloads and their receipt times, waiting for the next flush.

    :meth:`emit` is called once per message, so it only appends. The flusher wakes when
    ``ready`` is set (``flush_rows`` payloads wait) or on its timer. Past ``limit``
    payloads the buffer reports ``backlogged`` and readers await :meth:`writable`.
    """

    def __init__(self, flush_rows: int, limit: int) -> None:
        self.flush_rows = flush_rows
        self.limit = max(limit, flush_rows)
        self.payloads: list[bytes] = []
        self.times = array("q")
        self.ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.taken = 0  # payloads handed to flushes so far

    def emit(self, payload: bytes) -> None:
        """Append one payload (called per message: keep it this small)."""
        self.payloads.append(payload)
        self.times.append(time.time_ns())
        if len(self.payloads) >= self.flush_rows:
            self.ready.set()
            if len(self.payloads) >= self.limit:
                self._room.clear()

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def backlogged(self) -> bool:
        """True while the buffer is at its limit."""
        return not self._room.is_set()

    async def writable(self) -> None:
        """Wait until a flush has made room."""
        await self._room.wait()

    def take(self) -> Batch:
        """Remove and return everything buffered, as one batch."""
        payloads, times = self.payloads, self.times
        self.payloads, self.times = [], array("q")
        self.taken += len(payloads)
        self.ready.clear()
        self._room.set()
        received_at = pl.Series("received_at", times, dtype=pl.Int64)
        received_at = received_at.cast(pl.Datetime("ns", "UTC")).cast(TIMESTAMP)
        return Batch(payloads=payloads, received_at=received_at)
