"""Turns a source's buffered payloads into commits, off the event loop.

Decoding is :mod:`lakeflow.runtime.decoding`'s, the system tables' rows
:mod:`lakeflow.runtime.system_rows`'; this module orders and retries the commits. It
takes batches and queued gaps from the source's lane (:mod:`lakeflow.runtime.lane`) and
hands each commit's :class:`~lakeflow.runtime.lane.Landed` back to it, on the event loop.

Every payload gets a sequence number, consecutive per source instance. A batch is
committed with the sequence of its last payload as the Delta application transaction
``(source name, sequence)``, to the data table and to ``_dead_letters``. On start, the
spool's payloads above the highest sequence the tables hold are committed first (a
crash's leftovers), and numbering resumes after them: nothing is lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import polars as pl

from lakeflow.config.models import RuntimeConfig, SinkConfig, SourceSpec
from lakeflow.errors import CommitRefused, LakeflowError, RowsRefused, SchemaMismatch, SinkError
from lakeflow.runtime.backoff import Backoff
from lakeflow.runtime.buffer import make_batch
from lakeflow.runtime.decoding import decode_batch
from lakeflow.runtime.lane import Landed, Lane
from lakeflow.runtime.spool import Block, Spool
from lakeflow.runtime.system_rows import Gap, dead_letter_rows, gap_key, gap_rows
from lakeflow.schema import TableSchema
from lakeflow.secrets import mask_uri, redact
from lakeflow.sinks import Sink
from lakeflow.sources import Batch, Decoded, Source
from lakeflow.system_tables import DEAD_LETTERS, GAPS

logger = logging.getLogger(__name__)


class SourceNameTaken(LakeflowError, RuntimeError):
    """Another collector commits under this source's name to the same table.

    The name keys the exactly-once bookkeeping, so two writers sharing it would skip
    each other's batches; the commit is refused (and retried) instead, never skipped.
    """


Failure = Literal["refused", "transient", "rows", "unknown"]

#: Unclassified failures of one batch whose rows the sink says it can store, before
#: the batch is given up to ``_dead_letters`` (a store that fails on these payloads only).
UNKNOWN_ATTEMPTS = 5
#: The earliest time a partition column may hold: no exchange lakeflow reads is older.
PLAUSIBLE_SINCE = date(2009, 1, 1)
#: How far past now a partition column may reach (clocks differ; nothing is from later).
PLAUSIBLE_AHEAD = timedelta(days=2)


def failure_kind(exc: BaseException) -> Failure:
    """What a failed commit calls for, by the error's kind (never by its text).

    ``refused``: a person must act (a schema the table cannot take, refused permissions,
    a sink's ``config`` error): the source stops, the spool keeps the payloads.
    ``transient``: the store is away or busy (a full disk, an outage, a lost race):
    retried until it passes. ``rows``: the rows are at fault (:class:`RowsRefused`):
    the payloads responsible are found and go to ``_dead_letters``. ``unknown``:
    anything else, a panic in the writer included: the sink's ``check_rows`` decides.
    """
    if isinstance(exc, RowsRefused):
        return "rows"
    if isinstance(exc, SchemaMismatch | PermissionError):
        return "refused"
    if isinstance(exc, SinkError):
        return "refused" if exc.config else "transient"
    if isinstance(exc, OSError | SourceNameTaken):
        return "transient"
    return "unknown"


def refused(exc: BaseException) -> bool:
    """True when a commit error needs a person: retrying would fail the same way forever.

    A schema the table cannot take, a permission refused by the filesystem or the store.
    A full disk, an unreachable store, a conflict with another writer are not: those
    pass, and are retried.
    """
    return failure_kind(exc) == "refused"


def _caught(exc: BaseException) -> bool:
    """Errors a commit handles: every Exception, and a Rust panic (a BaseException)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def check_plausible(table: str, schema: TableSchema, rows: pl.DataFrame) -> None:
    """Raise :class:`RowsRefused` if a date or time partition column leaves the plausible
    window (``PLAUSIBLE_SINCE`` to now + ``PLAUSIBLE_AHEAD``).

    A partition is a folder per value: one row from year 10000 (or 287,000, where
    deltalake panics) would create a partition no reader can open. Decoders built on
    ``decode_json`` refuse such times field by field; this guards every other decoder.
    Two comparisons per column, on the batch's minimum and maximum.
    """
    if not rows.height:
        return
    latest = datetime.now(UTC) + PLAUSIBLE_AHEAD
    for column in schema.partition_by:
        if column not in rows.columns:
            continue
        values = rows.get_column(column)
        if values.dtype == pl.Date:
            low, high = PLAUSIBLE_SINCE, latest.date()
        elif isinstance(values.dtype, pl.Datetime):
            low = datetime(2009, 1, 1, tzinfo=UTC)
            high = latest
            if values.dtype.time_zone is None:
                low, high = low.replace(tzinfo=None), high.replace(tzinfo=None)
        else:
            continue
        outside = values.filter((values < low) | (values > high))
        if outside.len():
            raise RowsRefused(
                f"column {column!r} of table {table!r} = {_shown(outside)} is not a plausible "
                f"time (before {PLAUSIBLE_SINCE} or more than 2 days from now); no partition "
                "is created for it"
            )


def _shown(values: pl.Series) -> str:
    """The first value of a series as text; a value polars cannot show stays a number."""
    try:
        return str(values[0])
    except BaseException as exc:  # a date beyond what polars prints panics
        if not _caught(exc):
            raise
        return f"{values.to_physical()[0]} (physical)"


class CommitAbandoned(LakeflowError, RuntimeError):
    """A stopping run could not commit a batch before its deadline."""

    def __init__(self, message: str, payloads: int) -> None:
        super().__init__(message)
        self.payloads = payloads


def window(block: Block, since_ns: int | None, until_ns: int | None) -> Block:
    """The payloads of ``block`` received in ``[since_ns, until_ns)``, as a block.

    The block's ``first`` becomes the first kept sequence; sequences inside may then skip,
    which only matters for the last one, the sequence a commit records.
    """
    keep = [
        i
        for i, t in enumerate(block.times)
        if (since_ns is None or t >= since_ns) and (until_ns is None or t < until_ns)
    ]
    if len(keep) == len(block.payloads):
        return block
    if not keep:
        return Block(block.first, [], array("q"))
    # Keep the sequence of the last payload exact: the commit records it.
    last = block.first + keep[-1]
    payloads = [block.payloads[i] for i in keep]
    times = array("q", (block.times[i] for i in keep))
    return Block(last - len(payloads) + 1, payloads, times)


class Committer:
    """The flush loop of one source instance: buffer -> decode -> commit, in order."""

    def __init__(
        self,
        spec: SourceSpec,
        source: Source,
        sink: Sink,
        lane: Lane,
        sink_config: SinkConfig,
        spool: Spool | None = None,
        runtime_config: RuntimeConfig | None = None,
    ) -> None:
        self.spec = spec
        self.source = source
        self.sink = sink
        self.lane = lane
        self.flush_interval = sink_config.flush_interval
        self.flush_rows = sink_config.flush_rows
        self.spool = spool
        self.fsync_interval = runtime_config.fsync_interval if runtime_config else 1.0
        self.buffer = lane.buffer
        self.log = logging.LoggerAdapter(logger, {"source": spec.name})
        self._lock = asyncio.Lock()
        #: Loop time after which a failing commit stops being retried (set on stop).
        self.give_up_at: float | None = None
        #: Per table, the last sequence this committer saw there under its name; None
        #: until :meth:`committed` has read the tables.
        self._known: dict[str, int | None] | None = None
        #: The commit a worker thread runs now, if any.
        self._work: asyncio.Future[None] | None = None
        refs = source.refs
        if refs:
            lane.drift.request_refresh = refs.request_early
            refs.on_refresh = lane.drift.settle
            refs.on_unreachable = lane.unreachable

    def committed(self) -> int:
        """The highest sequence of this source that its tables hold (0 if none). Blocks."""
        self._known = {
            table: self.sink.committed_sequence(table, self.spec.name)
            for table in (self.spec.table, DEAD_LETTERS.table)
        }
        return max((s for s in self._known.values() if s is not None), default=0)

    def _check_owner(self, table: str, last: int) -> None:
        """Refuse to commit when another writer has committed under our name to ``table``.

        Collectors on several machines share tables; one that reuses another's source
        name would otherwise see that writer's sequences as its own and skip batches.
        """
        if self._known is None or table not in self._known:
            return
        done = self.sink.committed_sequence(table, self.spec.name)
        # ``last`` itself: this batch landed on an earlier attempt (a retry).
        if done not in (self._known[table], last):
            raise SourceNameTaken(
                f"another collector also commits as source {self.spec.name!r} to table "
                f"{table} (the table holds its sequence {done}, this one last committed "
                f"{self._known[table]}); give each collector's sources distinct names"
            )

    def _commit_table(self, table: str, schema: TableSchema, rows: pl.DataFrame, last: int) -> None:
        self._check_owner(table, last)
        self.sink.commit(table, schema, rows, self.spec.name, last)
        if self._known is not None:
            self._known[table] = last

    async def start(self) -> None:
        """Commit what the spool holds beyond the tables, then resume numbering after it.

        The time since the previous run stopped covering the feed is the lane's "not
        running" gap, committed now with what the spool held: another crash must not
        lose this record.
        """
        committed = await asyncio.to_thread(self.committed)
        last = committed
        previous = None
        if self.spool is not None and self.lane.covered_until is None:
            previous = await asyncio.to_thread(self.spool.last_received)
        self.lane.resumed(previous)
        if self.spool is not None:
            last = max(last, await self.commit_spooled(committed))
            await asyncio.to_thread(self.spool.trim, last)
        if self.lane.gaps:
            gaps = self.lane.take_gaps()
            await self._commit_with_retry(last + 1, last, make_batch([], array("q")), gaps)
        self.buffer.first = last + 1

    async def commit_spooled(
        self, committed: int, since_ns: int | None = None, until_ns: int | None = None
    ) -> int:
        """Commit spooled payloads above ``committed``, in batches of ``flush_rows``.

        ``since_ns``/``until_ns`` keep only payloads received in ``[since, until)``.
        Returns the highest sequence in the spool (``committed`` if it holds nothing newer).
        The spool is read a block at a time and committed a batch at a time (at most
        ``flush_rows`` payloads or the buffer's byte limit), so a replay of gigabytes
        holds one batch in memory, not the spool.
        """
        spool = self.spool
        assert spool is not None
        blocks = iter(spool.read(after=committed))
        byte_limit = self.buffer.limit_bytes
        payloads: list[bytes] = []
        times = array("q")
        size = 0
        first = highest = committed
        total = 0
        damaged = len(spool.damage)
        previous_ns: int | None = None  # receipt of the last payload read before damage
        while True:
            block = await asyncio.to_thread(next, blocks, None)
            if len(spool.damage) > damaged:
                # Found before this block: the loss lies between the payloads around it.
                after_ns = block.times[0] if block is not None and block.times else None
                for damage in spool.damage[damaged:]:
                    self.lane.spool_damaged(damage, committed, previous_ns, after_ns)
                damaged = len(spool.damage)
            if block is not None and block.times:
                previous_ns = block.times[-1]
            if block is not None:
                highest = max(highest, block.last)
                if since_ns is not None or until_ns is not None:
                    block = window(block, since_ns, until_ns)
                if not block.payloads:
                    continue
                if not payloads:
                    first = block.first
                    if not total:
                        self.log.info(
                            "replaying spooled payloads from sequence %d, not yet in the tables",
                            first,
                        )
                payloads.extend(block.payloads)
                times.extend(block.times)
                size += sum(map(len, block.payloads))
                last = block.last
                if len(payloads) < self.flush_rows and size < byte_limit // 2:
                    continue
            if payloads:
                total += len(payloads)
                await self._commit_with_retry(first, last, make_batch(payloads, times), [])
                payloads, times, size = [], array("q"), 0
            if block is None:
                break
        if total:
            self.log.info("replayed %d spooled payloads (up to sequence %d)", total, highest)
        return highest

    async def run(self, stopping: asyncio.Event) -> None:
        """Commit each payload within ``flush_interval`` of its receipt, until stopped.

        The deadline is the oldest waiting payload's receipt time plus ``flush_interval``;
        ``flush_rows`` waiting payloads (or a disconnect: the lane's ``request_drain``)
        flush at once.
        """
        syncer = asyncio.create_task(self._fsync_loop()) if self.spool is not None else None
        try:
            while not stopping.is_set():
                oldest = self.buffer.oldest()
                if oldest is None:
                    wait = self.flush_interval
                else:
                    wait = oldest / 1e9 + self.flush_interval - time.time()
                if wait > 0 and not (self.buffer.ready.is_set() or self.lane.drain):
                    ready = asyncio.ensure_future(self.buffer.ready.wait())
                    stop = asyncio.ensure_future(stopping.wait())
                    await asyncio.wait({ready, stop}, timeout=wait, return_when="FIRST_COMPLETED")
                    ready.cancel()
                    stop.cancel()
                    oldest = self.buffer.oldest()
                    due = oldest is not None and oldest / 1e9 + self.flush_interval <= time.time()
                    woken = self.buffer.ready.is_set() or self.lane.drain or stopping.is_set()
                    if not (due or woken):
                        continue
                await self.flush()
        finally:
            if syncer is not None:
                syncer.cancel()

    async def _fsync_loop(self) -> None:
        spool = self.spool
        assert spool is not None
        while True:
            await asyncio.sleep(self.fsync_interval or 0.05)
            await asyncio.to_thread(spool.fsync)

    async def flush(self) -> None:
        """Commit what is buffered when called, ``flush_rows`` payloads per commit at most.

        Payloads that arrive meanwhile wait for the next flush: draining until the buffer
        is empty would, on a steady stream, chase it with ever smaller commits.
        Retries a failed commit until it lands (or, when stopping, until ``give_up_at``).
        """
        async with self._lock:
            # Everything buffered now is taken below: a drain asked for until now is done.
            self.lane.drain = False
            pending = len(self.buffer)
            stats = self.lane.stats
            while pending or self.lane.gaps:
                first, batch = self.buffer.take(min(self.flush_rows, pending))
                pending -= len(batch)
                gaps = self.lane.take_gaps()
                stats.in_flight = len(batch)
                try:
                    await self._commit_with_retry(first, first + len(batch) - 1, batch, gaps)
                finally:
                    stats.in_flight = 0
            if not self.buffer.due:
                # A wake-up (a disconnect) with nothing more to commit must not spin the loop;
                # a buffer still holding a flush's worth (in payloads or bytes) goes again.
                self.buffer.ready.clear()

    async def _commit_with_retry(
        self, first: int, last: int, batch: Batch, gaps: list[Gap]
    ) -> None:
        """Commit one batch; retry what may pass, and never let bad rows block the rest.

        A failure is handled by its kind (:func:`failure_kind`). When the rows may be at
        fault, the payloads whose rows the sink cannot store are found by halving the
        batch against ``check_rows`` (which writes nothing), and the batch is committed
        again without them, still as one commit under ``last``: those payloads go to
        ``_dead_letters`` with the writer's reason. A replay of the batch after a
        restart does the same.
        """
        backoff = Backoff(base=1.0, cap=30.0)
        # What this batch did, kept across retries; counted by the lane once, at the end.
        landed = Landed()
        try:
            await self._commit_until_landed(first, last, batch, gaps, landed, backoff)
        finally:
            work, self._work = self._work, None
            if work is not None and not work.done():
                # Cancelled while the worker thread commits: what it lands is counted
                # when it ends (done callbacks run on the loop), never while it writes.
                work.add_done_callback(lambda done: self._apply_late(done, landed))
            else:
                self.lane.apply(landed)

    def _apply_late(self, work: asyncio.Future[None], landed: Landed) -> None:
        """Count what a cancelled commit's worker thread landed, once it has ended."""
        if not work.cancelled() and work.exception() is not None:
            self.log.debug("a cancelled commit ended with: %s", work.exception())
        self.lane.apply(landed)

    async def _commit_until_landed(
        self,
        first: int,
        last: int,
        batch: Batch,
        gaps: list[Gap],
        landed: Landed,
        backoff: Backoff,
    ) -> None:
        #: Batch index -> why the sink cannot store that payload's rows.
        poison: dict[int, str] = {}
        checked = False  # whether the rows were checked for this batch's unknown failure
        unknown = 0
        while True:
            # Shielded: a cancelled flush must not lose track of the thread still writing.
            self._work = asyncio.get_running_loop().run_in_executor(
                None, self._commit, batch, first, last, gaps, landed, poison
            )
            try:
                await asyncio.shield(self._work)
            except BaseException as exc:
                if not _caught(exc):
                    raise
                kind = failure_kind(exc)
                if kind == "refused":
                    # The gaps of this batch are not lost: they go again with the next try.
                    self.lane.return_gaps(gaps)
                    kept = "kept in the spool" if self.spool is not None else "NOT spooled"
                    raise CommitRefused(
                        f"commit to table {self.spec.table} refused, and retrying cannot fix "
                        f"it: {redact(str(exc))}. The source stops; payloads {first}..{last} "
                        f"and those after them are {kept}, and land at the next `lakeflow "
                        "run` (or `lakeflow replay`) once this is fixed."
                    ) from exc
                if kind in ("rows", "unknown") and self.spec.table not in landed.tables:
                    if kind == "rows" or not checked:
                        checked = True
                        found = await asyncio.to_thread(self._isolate, batch, poison)
                        if found:
                            self.log.error(
                                "%d payload(s) of %d..%d hold rows table %s cannot store "
                                "(first: %s); the rest commits, they go to %s",
                                found,
                                first,
                                last,
                                self.spec.table,
                                redact(next(reversed(poison.values()))),
                                DEAD_LETTERS.table,
                            )
                            continue
                    if kind == "unknown":
                        unknown += 1
                    given_up = len(poison) == len(batch)
                    if not given_up and (kind == "rows" or unknown >= UNKNOWN_ATTEMPTS):
                        # Refused while no payload alone is: keep them all, as dead letters.
                        reason = f"the sink refused this batch's rows: {exc}"
                        for index in range(len(batch)):
                            poison.setdefault(index, reason)
                        self.log.error(
                            "table %s keeps refusing payloads %d..%d (%s), though no payload "
                            "alone is refused; they go to %s",
                            self.spec.table,
                            first,
                            last,
                            redact(str(exc)),
                            DEAD_LETTERS.table,
                        )
                        continue
                delay = backoff.next() or 0.2
                give_up = self.give_up_at
                if give_up is not None and asyncio.get_running_loop().time() + delay > give_up:
                    raise CommitAbandoned(
                        f"commit to table {self.spec.table} still failing at stop: "
                        f"{redact(str(exc))}",
                        len(batch),
                    ) from exc
                # Retried too: the spool keeps the batch until a person fixes the names.
                log = self.log.error if isinstance(exc, SourceNameTaken) else self.log.warning
                # Where the table is: a store's error (a full disk's ENOSPC) may not say.
                log(
                    "commit to table %s failed (attempt %d): %s (table at %s); retrying in %.1fs",
                    self.spec.table,
                    backoff.attempt,
                    exc,
                    mask_uri(self.sink.table_uri(self.spec.table)),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if self.spool is not None and len(batch):
                await asyncio.to_thread(self.spool.trim, last)
            return

    def _isolate(self, batch: Batch, poison: dict[int, str]) -> int:
        """Add to ``poison`` the payloads whose rows the sink cannot store; how many.

        Halves the batch until each failing part is one payload, decoding each part and
        asking ``check_plausible`` and the sink's ``check_rows``; nothing is written.
        A batch with one bad payload among 25,000 costs about 30 checks.
        """
        found = 0
        parts = [[i for i in range(len(batch)) if i not in poison]]
        while parts:
            part = parts.pop()
            if not part:
                continue
            try:
                rows = self._decode(_subset(batch, part)).rows
                if rows.height:
                    check_plausible(self.spec.table, self.spec.schema, rows)
                    self.sink.check_rows(self.spec.table, self.spec.schema, rows)
            except BaseException as exc:
                if not _caught(exc):
                    raise
                if len(part) == 1:
                    poison[part[0]] = redact(str(exc))
                    found += 1
                else:
                    middle = len(part) // 2
                    # Last in, first out: the first half is checked first.
                    parts.extend((part[middle:], part[:middle]))
        return found

    def _decode(self, batch: Batch) -> Decoded:
        return decode_batch(self.source, self.spec.schema, batch, self.log)

    def _decode_without(self, batch: Batch, poison: dict[int, str]) -> Decoded:
        """Decode ``batch`` but the ``poison`` payloads, which become rejects; indices kept."""
        keep = [i for i in range(len(batch)) if i not in poison]
        decoded = self._decode(_subset(batch, keep))
        decoded.rejects = sorted(
            [(keep[i], reason) for i, reason in decoded.rejects]
            + [(i, reason) for i, reason in poison.items()]
        )
        decoded.ignored_at = [keep[i] for i in decoded.ignored_at]
        decoded.drift = [
            replace(d, example=None if d.example is None else keep[d.example])
            for d in decoded.drift
        ]
        return decoded

    def _commit(
        self,
        batch: Batch,
        first: int,
        last: int,
        gaps: list[Gap],
        landed: Landed,
        poison: dict[int, str] | None = None,
    ) -> None:
        """Decode and commit one batch (in a worker thread); ``landed`` says what is done.

        The sink skips a table that already holds ``last`` for this source, so a retry
        after a failure that struck after the commit writes nothing twice. ``poison``
        names payloads whose rows the sink cannot store: they are not decoded again and
        go to ``_dead_letters`` with the reason given. What landed is written to
        ``landed`` only (never to the lane's counters, which the event loop reads).
        """
        name, table = self.spec.name, self.spec.table
        started = time.perf_counter()
        rows = 0
        if len(batch):
            decoded = self._decode_without(batch, poison) if poison else self._decode(batch)
            if decoded.rows.height and table not in landed.tables:
                check_plausible(table, self.spec.schema, decoded.rows)
                self._commit_table(table, self.spec.schema, decoded.rows, last)
                landed.tables.add(table)
                rows = decoded.rows.height
                landed.rows += rows
                landed.commits += 1
                newest = batch.received_at.max()
                if newest is not None:
                    # Within a batch (a flush interval) of the newest row: precise enough
                    # for a silence measured in minutes, and no per-payload work.
                    landed.newest_data = newest.timestamp()  # type: ignore[union-attr]
            if decoded.rejects and DEAD_LETTERS.table not in landed.tables:
                rejects = [(i, redact(reason)) for i, reason in decoded.rejects]
                dead = dead_letter_rows(name, table, batch, rejects)
                self._commit_table(DEAD_LETTERS.table, DEAD_LETTERS, dead, last)
                landed.tables.add(DEAD_LETTERS.table)
                landed.dead_letters += dead.height
                self.log.warning(
                    "%d payload(s) could not be decoded or stored and went to %s (first: %s)",
                    dead.height,
                    DEAD_LETTERS.table,
                    rejects[0][1],
                )
            if not landed.decoded:
                # Once per batch, retries included.
                landed.decoded = True
                landed.ignored += decoded.ignored
                # The drift watch is thread-safe: it samples and parses keys here, off
                # the loop, and counts under its own lock.
                self.lane.drift.check(batch, decoded, self.source.refs.instruments())
        if gaps and GAPS.table not in landed.tables:
            self.sink.commit(GAPS.table, GAPS, gap_rows(name, table, gaps), name, gap_key(gaps))
            landed.tables.add(GAPS.table)
        now = time.time()
        landed.committed_at = now
        landed.seconds = time.perf_counter() - started
        if len(batch):
            first_received = batch.received_at[0].timestamp()
            landed.latency = max(0.0, now - first_received)
        self.log.debug(
            "committed payloads %d..%d: %d rows to %s in %.3fs",
            first,
            last,
            rows,
            table,
            time.perf_counter() - started,
        )


def _subset(batch: Batch, indices: list[int]) -> Batch:
    """The payloads of ``batch`` at ``indices``, with their receipt times."""
    return Batch(
        payloads=[batch.payloads[i] for i in indices],
        received_at=batch.received_at.gather(indices),
    )
