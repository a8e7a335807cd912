"""Counters per source, read by the status log and the final summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakeflow.runtime.buffer import PayloadBuffer


@dataclass
class SourceStats:
    """What one source instance has done so far."""

    state: str = "starting"
    ignored: int = 0
    rows: int = 0
    dead_letters: int = 0
    commits: int = 0
    reconnects: int = 0
    gaps: int = 0
    polls: int = 0
    failed_polls: int = 0
    last_commit: float | None = None
    # The source's buffer counts arrivals itself, so the hot path touches no counter here.
    buffer: PayloadBuffer | None = field(default=None, repr=False)

    @property
    def received(self) -> int:
        """Payloads received so far, committed or still buffered."""
        buffer = self.buffer
        return 0 if buffer is None else buffer.taken + len(buffer)
