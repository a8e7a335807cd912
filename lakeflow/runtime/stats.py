"""Counters per source, read by the status view, the metrics endpoint and the summary.

The hot path touches none of them per payload: arrivals are counted by the buffer, and
everything else changes once per commit, poll or connection.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakeflow.runtime.buffer import PayloadBuffer
    from lakeflow.runtime.drift import DriftWatch

#: Upper bounds (seconds) of the latency histograms' buckets, the last one open-ended.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SourceState(StrEnum):
    """What a source is doing. A ``str``, so status files and JSON carry the plain word."""

    STARTING = "starting"
    #: A streaming source holds a connection and payloads arrive (or the quiet is normal).
    CONNECTED = "connected"
    #: Connected, but no data for longer than the source's ``silence_timeout``: the
    #: exchange moved or retired the stream, a symbol is wrong, or the region is blocked.
    SILENT = "silent"
    DISCONNECTED = "disconnected"
    POLLING = "polling"
    IDLE = "idle"
    PAUSED = "paused"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class Histogram:
    """Observations counted into fixed buckets (non-cumulative), with their sum."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)


#: Every counter of a source: its attribute on :class:`SourceStats` (and field of the
#: status snapshot), its Prometheus name and what it counts. The status file and the
#: metrics are made from this one table, so a counter is declared here and on the class.
COUNTERS: dict[str, tuple[str, str]] = {
    "received": ("lakeflow_payloads_received", "Payloads received from the source."),
    "rows": ("lakeflow_rows_committed", "Rows committed to the source's table."),
    "commits": ("lakeflow_commits", "Commits to the source's table."),
    "dead_letters": ("lakeflow_dead_letters", "Payloads that went to _dead_letters."),
    "ignored": ("lakeflow_ignored", "Payloads carrying no rows (control frames)."),
    "reconnects": ("lakeflow_reconnects", "Reconnects of a streaming source."),
    "gaps": ("lakeflow_gaps", "Gaps recorded in _gaps."),
    "polls": ("lakeflow_polls", "Successful polls of a polling source."),
    "failed_polls": ("lakeflow_failed_polls", "Failed polls of a polling source."),
}


@dataclass
class SourceStats:
    """What one source instance has done so far."""

    state: SourceState = SourceState.STARTING
    ignored: int = 0
    rows: int = 0
    dead_letters: int = 0
    commits: int = 0
    reconnects: int = 0
    gaps: int = 0
    polls: int = 0
    failed_polls: int = 0
    #: Epoch seconds of the last commit, the last successful poll, the current connection.
    last_commit: float | None = None
    last_poll: float | None = None
    connected_since: float | None = None
    started: float = field(default_factory=time.time)
    #: Seconds from a batch's first receipt until its commit landed.
    latency: Histogram = field(default_factory=Histogram)
    #: Seconds one commit took (decode and write).
    commit_seconds: Histogram = field(default_factory=Histogram)
    # The source's buffer counts arrivals itself, so the hot path touches no counter here.
    buffer: PayloadBuffer | None = field(default=None, repr=False)

    @property
    def received(self) -> int:
        """Payloads received so far, committed or still buffered."""
        buffer = self.buffer
        return 0 if buffer is None else buffer.taken + len(buffer)

    #: The source's drift watch (set by its committer): what arrived undeclared.
    watch: DriftWatch | None = field(default=None, repr=False)

    @property
    def drift(self) -> dict[str, int]:
        """Drift occurrences per kind (key, value, instrument)."""
        return {} if self.watch is None else dict(self.watch.totals)

    @property
    def drift_entries(self) -> list[dict[str, object]]:
        """The drift entries for the status file (kind, path, value, count, times)."""
        return [] if self.watch is None else self.watch.summary()

    #: Payloads handed to the commit under way.
    in_flight: int = 0
    #: The endpoint of the current (or last) connection, for status and warnings.
    url: str | None = None
    #: Seconds without data past which a connected stream counts as silent (None: never).
    silence_timeout: float | None = None
    #: Epoch seconds since which the source has not been covering its stream (disconnected,
    #: or silent past ``silence_timeout``); None while it covers. Written to the status file,
    #: so that the next run's "not running" gap starts where coverage really ended.
    uncovered_since: float | None = None
    #: The last failure of a connection or a poll, in words (kept after a recovery, so
    #: that a source that keeps failing says why), and when it happened (epoch seconds).
    last_error: str | None = None
    last_error_at: float | None = None

    #: Epoch seconds of the newest payload of a batch that decoded into rows: the last
    #: sign of data. Acknowledgements and pongs are payloads, not data, so a stream that
    #: answers its keepalive but carries no events still falls silent by this measure.
    last_data: float | None = None

    @property
    def last_payload(self) -> float | None:
        """Epoch seconds of the newest payload received, None before the first."""
        buffer = self.buffer
        newest = None if buffer is None else buffer.last_received()
        return None if newest is None else newest / 1e9

    @property
    def backlog(self) -> int:
        """Payloads received but not yet committed (buffered or being committed)."""
        buffer = self.buffer
        return self.in_flight + (0 if buffer is None else len(buffer))
