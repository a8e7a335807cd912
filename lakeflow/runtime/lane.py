"""A source's lane: its buffer, its coverage and gaps, its state and counters, in one room.

One :class:`Lane` per source instance. The source's feed (a stream) or its polls fill the
lane's buffer and tell it how the source is doing; the committer takes batches and
queued gaps from it, commits them in a worker thread and hands back a :class:`Landed`
that the lane applies. Every write to the lane happens on the event loop: the status
view, the metrics and the summary read counters no other thread touches.

Gaps in ``_gaps`` tile the time a source did not cover, without overlaps, and are all
recorded here:

- **not running**: from where the previous run's coverage ended (its last status's
  ``covered_until``, else the last spooled payload's receipt) to this run's start;
- a **disconnection**, from the drop to the next connection (reason: how it ended);
- a run's **first attempt that fails**, from the start of the stream to the first
  connection (reason ``not connected yet: `` and how the attempt failed); a first
  attempt that connects leaves no gap (a handshake's moment is not an outage);
- a **silent** stretch: connected, but no data for longer than the source's silence
  timeout. It starts at the last data (or at the connection, if that is later) and ends
  when the runtime gives up on the connection; its reason starts with ``silent:``;
- a **failed poll**, from its tick to the next successful poll (reason: how it failed),
  and polls skipped because one overran its interval;
- **damaged spool** bytes whose payloads never landed, between the receipts around them;
- whatever is open when the source **stops**, until the stop, with the reason it began
  (a first attempt the stop interrupts says what it was doing). The next run's "not
  running" gap then starts at the stop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakeflow.runtime.buffer import PayloadBuffer
from lakeflow.runtime.drift import DriftWatch
from lakeflow.runtime.stats import SourceState, SourceStats
from lakeflow.runtime.system_rows import Gap

if TYPE_CHECKING:
    from lakeflow.config.models import SinkConfig, SourceSpec
    from lakeflow.runtime.reach import Reachability
    from lakeflow.runtime.spool import Damage, Spool


@dataclass
class Landed:
    """What one batch's commit did, for its lane to count once it is back on the loop.

    The committer fills it in its worker thread across a batch's attempts (a table that
    landed on one attempt is not written again on the next) and hands it over whole.
    """

    #: Tables this batch reached so far; a retry skips them.
    tables: set[str] = field(default_factory=set)
    #: Whether the batch was decoded once: its ignored payloads are counted and its drift
    #: checked on that attempt only.
    decoded: bool = False
    rows: int = 0
    commits: int = 0
    dead_letters: int = 0
    ignored: int = 0
    #: Epoch seconds of the newest payload of the batch, when it decoded into rows.
    newest_data: float | None = None
    #: Epoch seconds when the commit landed, and how long it took (decode and write).
    committed_at: float | None = None
    seconds: float | None = None
    #: Seconds from the batch's first receipt until its commit landed.
    latency: float | None = None


class Lane:
    """One source instance's room in the runtime; see the module.

    It is also the :class:`~lakeflow.Feed` a streaming source talks to: ``emit`` and
    ``writable`` are its buffer's own methods (the hot path goes straight there).
    """

    def __init__(
        self,
        spec: SourceSpec,
        stats: SourceStats,
        sink_config: SinkConfig,
        log: logging.Logger | logging.LoggerAdapter,
        *,
        covered_until: float | None = None,
        reach: Reachability | None = None,
    ) -> None:
        self.name = spec.name
        #: The run's record of unreachable hosts, shared by every lane (None: not kept).
        self.reach = reach
        #: The hosts this source failed to reach since it last reached its feed.
        self._unreached: set[str] = set()
        self.table = spec.table
        self.stats = stats
        self.log = log
        self._sink_config = sink_config
        self.buffer = self._make_buffer(None)
        #: Gaps waiting for the next commit.
        self.gaps: list[Gap] = []
        #: A stream ended: what is buffered is complete and commits now, not at the
        #: deadline. A flag of its own, since ``buffer.ready`` is cleared by every take.
        self.drain = False
        #: What arrives that the source does not declare; written to ``_drift``.
        self.drift = DriftWatch(
            spec.name,
            spec.table,
            key_sample=spec.cls.key_sample,
            instrument_column=spec.cls.instrument_column,
            log=log,
        )
        stats.watch = self.drift
        #: When the previous run of this source stopped covering its feed (epoch seconds,
        #: from its last status); until this run starts, its coverage ends there too.
        self.covered_until = covered_until
        if covered_until is not None:
            stats.uncovered_since = covered_until
        # The open gap: since when the source has not covered its feed, and why.
        self._gap_since: float | None = None
        self._gap_reason = ""
        #: What the connection attempt under way is doing (``connecting``), for a stop.
        self._attempt = ""
        #: When the current connection came up (None: not connected).
        self.connected_at: float | None = None
        #: Epoch seconds of the last data when the current silence was noticed.
        self.silent_after: float | None = None
        #: Whether this run's "not running" gap has been queued (a start is retried).
        self._resumed = False

    # -- the buffer -----------------------------------------------------------------

    def _make_buffer(self, spool: Spool | None) -> PayloadBuffer:
        config = self._sink_config
        buffer = PayloadBuffer(
            config.flush_rows,
            config.buffer_limit,
            spool,
            limit_bytes=config.max_buffered_bytes,
        )
        self.stats.buffer = buffer
        self.emit = buffer.emit
        self.writable = buffer.writable
        return buffer

    def use_spool(self, spool: Spool) -> None:
        """Spool every payload before it counts as received; before anything arrives."""
        assert not len(self.buffer), "a lane's spool is set before its source reads"
        self.buffer = self._make_buffer(spool)

    @property
    def backlogged(self) -> bool:
        """True while the buffer is full because the sink is behind."""
        return self.buffer.backlogged

    def request_drain(self) -> None:
        """Commit everything buffered at once (a stream ended), in ``flush_rows`` batches."""
        self.drain = True
        self.buffer.ready.set()

    # -- gaps -----------------------------------------------------------------------

    def add_gap(self, start: float, end: float, reason: str) -> None:
        """Record that the source covered nothing from ``start`` to ``end`` (epoch seconds)."""
        self.gaps.append(
            Gap(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), reason)
        )
        self.stats.gaps += 1

    def take_gaps(self) -> list[Gap]:
        """The gaps queued so far, for the next commit (which owns them from now on)."""
        gaps, self.gaps = self.gaps, []
        return gaps

    def return_gaps(self, gaps: list[Gap]) -> None:
        """Gaps whose commit was refused: they go again, first, with the next one."""
        self.gaps[:0] = gaps

    def _open_gap(self, reason: str) -> None:
        if self._gap_since is None:
            self._gap_since, self._gap_reason = time.time(), reason

    def _close_gap(self) -> None:
        if self._gap_since is not None:
            self.add_gap(self._gap_since, max(self._gap_since, time.time()), self._gap_reason)
        self._gap_since, self._gap_reason = None, ""

    def resumed(self, last_spooled_ns: int | None) -> None:
        """This run starts: the time since the previous run's coverage ended is a gap.

        Where that coverage ended comes from the previous run's last status; without
        one, the last spooled payload's receipt stands in (a quiet connection covers
        past its last payload, so this errs towards a longer gap, never a shorter one).
        """
        if self._resumed:
            return  # a start that failed after queuing it, tried again
        self._resumed = True
        since = self.covered_until
        if since is None and last_spooled_ns is not None:
            since = last_spooled_ns / 1e9
        if since is not None:
            self.add_gap(since, max(since, time.time()), "lakeflow was not running")

    def covering(self) -> None:
        """The source starts reading: its coverage from now on is what it reports."""
        self.stats.uncovered_since = None

    def spool_damaged(
        self, damage: Damage, committed: int, before_ns: int | None, after_ns: int | None
    ) -> None:
        """Record a damaged stretch of the spool as a gap, unless its payloads had landed.

        The time is what the receipts around it bound: from the last payload read before
        the damage to the first after it (a point when only one side is known).
        """
        if damage.payloads == 0:
            return
        if damage.last_sequence is not None and damage.last_sequence <= committed:
            return  # committed before the bytes went bad: nothing lost
        now = time.time_ns()
        start = before_ns if before_ns is not None else after_ns if after_ns is not None else now
        end = after_ns if after_ns is not None else start
        self.add_gap(start / 1e9, max(start, end) / 1e9, damage.reason)

    # -- a stream (the Feed) --------------------------------------------------------

    def _failed_with(self, reason: str) -> None:
        self.stats.last_error, self.stats.last_error_at = reason, time.time()

    def unreachable(self, host: str) -> None:
        """The last failure could not reach ``host``: the run says so once for all sources."""
        self._unreached.add(host)
        if self.reach is not None:
            self.reach.failed(host)

    def _reached(self) -> None:
        """The feed answers: the hosts this source could not reach before, it reached."""
        if self.reach is not None:
            for host in self._unreached:
                self.reach.reached(host)
        self._unreached.clear()

    def crashed(self, reason: str) -> None:
        """The source's reader crashed (a bug): uncovered from now until it is restarted
        and covers again."""
        self._gap_since, self._gap_reason = time.time(), f"source crashed: {reason}"
        self.stats.uncovered_since = self._gap_since
        self._failed_with(self._gap_reason)

    def stream_started(self, silence_timeout: float | None) -> None:
        """A stream's supervisor starts: nothing is covered until a connection is up.

        After a crash the open gap goes on, with the crash's reason, until a connection
        is up; otherwise the run's first attempt starts one without a reason.
        """
        if self._gap_since is None:
            self._gap_since, self._gap_reason = time.time(), ""
        self._attempt = ""
        self.connected_at = self.silent_after = None
        self.stats.uncovered_since = self._gap_since
        self.stats.silence_timeout = silence_timeout

    def connecting(self, what: str) -> None:
        """Say what the connection attempt is doing ("waiting for the handshake's answer").

        Should the run stop before the first connection is up, the gap's reason says
        what the attempt was doing then.
        """
        self._attempt = what

    def connected(self, detail: str = "") -> None:
        """The connection is up: the open gap ends here (unless it was a first attempt)."""
        now = time.time()
        stats = self.stats
        if self._gap_since is not None and self._gap_reason:
            self.add_gap(self._gap_since, now, self._gap_reason)
        self._gap_since = None
        self._gap_reason = self._attempt = ""
        if self.silent_after is not None:
            # Still silent since the last data: this connection has to prove itself.
            stats.state = SourceState.SILENT
            stats.uncovered_since = now
        else:
            stats.state = SourceState.CONNECTED
            stats.uncovered_since = None
        stats.connected_since = now
        if detail:
            stats.url = detail
        self.connected_at = now
        self._reached()
        self.log.info("connected%s", f" to {detail}" if detail else "")

    def disconnected(self, reason: str) -> None:
        """The connection ended (or an attempt failed): a gap opens, for ``reason``."""
        # What arrived before the drop is complete: commit it now, not at the deadline.
        self.request_drain()
        self._failed_with(reason)
        now = time.time()
        if self._gap_since is None:
            self._gap_since, self._gap_reason = now, reason
        elif not self._gap_reason:
            # The run's first attempt failed: uncovered since the start, for this reason.
            self._gap_reason = f"not connected yet: {reason}"
        self.connected_at = None
        stats = self.stats
        stats.state = SourceState.DISCONNECTED
        stats.connected_since = None
        if stats.uncovered_since is None:
            stats.uncovered_since = now

    def quiet_since(self) -> float | None:
        """Since when the current connection has carried no data (None: not connected).

        Data is a payload that decoded into rows: a stream that sends only pongs and
        acknowledgements is quiet. While payloads wait to be decoded, it cannot be told
        yet whether they are data, so the newest payload counts instead.
        """
        if self.connected_at is None:
            return None
        stats = self.stats
        last = stats.last_data if stats.backlog == 0 else stats.last_payload
        return self.connected_at if last is None else max(last, self.connected_at)

    def data_again(self) -> float | None:
        """If data arrived since the silence was noticed, end it; how long it lasted."""
        last = self.stats.last_data
        if self.silent_after is None or last is None or last <= self.silent_after:
            return None
        lasted = last - self.silent_after
        self.silent_after = None
        self.stats.state = SourceState.CONNECTED
        self.stats.uncovered_since = None
        return lasted

    def silent(self, quiet_since: float, reason: str) -> None:
        """The connection has carried no data since ``quiet_since``: a gap until now."""
        self.add_gap(quiet_since, time.time(), f"silent: {reason}")
        if self.silent_after is None:
            last = self.stats.last_data
            self.silent_after = last if last is not None else quiet_since
        self.stats.state = SourceState.SILENT

    # -- polls ----------------------------------------------------------------------

    def polls_started(self) -> None:
        """A polling source's schedule starts: it covers its feed from its first poll on
        (a crash's gap ends here)."""
        self._close_gap()
        self.stats.uncovered_since = None

    def polling(self) -> None:
        """A poll is under way."""
        self.stats.state = SourceState.POLLING

    def polled(self, payloads: list[bytes]) -> None:
        """A poll succeeded: its bodies share one receipt time; an open gap ends here."""
        self.buffer.extend(payloads, time.time_ns())
        stats = self.stats
        stats.polls += 1
        stats.last_poll = time.time()
        stats.state = SourceState.IDLE
        self._close_gap()
        self._reached()

    def poll_failed(self, reason: str, *, paused: bool = False) -> None:
        """A poll was lost: uncovered from now (or from the first failure) until a success."""
        self.stats.failed_polls += 1
        self._failed_with(reason)
        if paused:
            self.stats.state = SourceState.PAUSED
        self._open_gap(reason)

    def polls_skipped(self) -> None:
        """A poll overran its interval, and the ticks it overran were not polled."""
        self._open_gap("poll overran the interval")

    def poll_interrupted(self) -> None:
        """Stopped in the middle of a poll: that tick's snapshot was not taken."""
        self._open_gap("stopped before the poll finished")

    def failed(self, reason: str) -> None:
        """The source stopped on an error that needs a person."""
        self.stats.state = SourceState.FAILED
        self._open_gap(f"source stopped: {reason}")
        self._failed_with(reason)

    # -- the end --------------------------------------------------------------------

    def stopped(self) -> None:
        """The source stops reading: record what was not covered, until now.

        Wherever the stop finds it: in a handshake, in the backoff before a reconnect,
        on a silent connection, after failed polls. The source covers nothing after now
        either, so the status's ``covered_until`` becomes now: the next run's "not
        running" gap starts where this one's last gap ended.
        """
        now = time.time()
        stats = self.stats
        # Called again (the reader's end after its supervisor's), nothing is left to
        # record and the coverage already ended: it stays where it ended.
        ended = (
            self.connected_at is None
            and self._gap_since is None
            and stats.uncovered_since is not None
        )
        quiet_since = self.quiet_since()
        if self.silent_after is not None and quiet_since is not None:
            # A connection that was still silent was not covering.
            self.add_gap(
                quiet_since,
                now,
                f"silent: connected to {self.stats.url or 'the stream'} but no data "
                f"for {now - quiet_since:.0f}s, until the stop",
            )
        elif self._gap_since is not None:
            reason = self._gap_reason or (
                f"not connected yet: {self._attempt or 'connecting'}, until the stop"
            )
            self.add_gap(self._gap_since, max(self._gap_since, now), reason)
        self._gap_since = self.connected_at = None
        self._gap_reason = self._attempt = ""
        if not ended:
            stats.uncovered_since = now
        stats.connected_since = None
        if stats.state in (SourceState.CONNECTED, SourceState.SILENT):
            stats.state = SourceState.DISCONNECTED

    # -- commits --------------------------------------------------------------------

    def apply(self, landed: Landed) -> None:
        """Count what a batch's commit did (on the event loop, once per batch)."""
        stats = self.stats
        stats.rows += landed.rows
        stats.commits += landed.commits
        stats.dead_letters += landed.dead_letters
        stats.ignored += landed.ignored
        if landed.newest_data is not None:
            stats.last_data = max(stats.last_data or 0.0, landed.newest_data)
        if landed.committed_at is not None:
            stats.last_commit = landed.committed_at
        if landed.seconds is not None:
            stats.commit_seconds.observe(landed.seconds)
        if landed.latency is not None:
            stats.latency.observe(landed.latency)
