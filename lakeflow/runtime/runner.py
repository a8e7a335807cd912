"""The runner: every configured source at once, each in its lane, into one shared sink.

Per source it takes the source's lock, opens its spool and its lane
(:mod:`lakeflow.runtime.lane`), starts its committer and its reader (a stream's
supervisor or a polling schedule), and at the stop commits what is buffered. Around
them it runs what the sources share: the status files and view, drift's table, scheduled
maintenance and the metrics server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lakeflow.config.models import Pipeline, SourceSpec
from lakeflow.errors import (
    USAGE_ERROR,
    CommitRefused,
    LakeflowError,
    SchemaMismatch,
    SourceError,
)
from lakeflow.fetch import unreachable_host
from lakeflow.plugins import Registry
from lakeflow.runtime.backoff import Backoff
from lakeflow.runtime.committer import CommitAbandoned, Committer, refused
from lakeflow.runtime.drift import drift_rows
from lakeflow.runtime.lane import Lane
from lakeflow.runtime.lock import SourceLock, SourceLocked
from lakeflow.runtime.maintenance import maintain_periodically
from lakeflow.runtime.metrics import MetricsServer
from lakeflow.runtime.polling import run_polls
from lakeflow.runtime.reach import Reachability
from lakeflow.runtime.spool import Spool
from lakeflow.runtime.stats import SourceState, SourceStats
from lakeflow.runtime.status import (
    SourceStatus,
    StatusTracker,
    read_status,
    status_dir,
    write_status,
)
from lakeflow.runtime.streaming import supervise_stream
from lakeflow.secrets import mask_uri, redact
from lakeflow.sinks import Sink
from lakeflow.sources import PollingSource, Source, StreamingConfig, StreamingSource
from lakeflow.system_tables import DEAD_LETTERS, DRIFT, DRIFT_KEY, GAPS

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run did, per source."""

    stats: dict[str, SourceStats] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True unless a source stopped on an error that needs a person."""
        return not self.failed


class MetricsUnavailable(LakeflowError, RuntimeError):
    """The ``[metrics]`` server could not start (its port is taken, say).

    A taken port is the person's to free (or change), like a wrong pipeline file: exit 2.
    """

    exit_code = USAGE_ERROR


class Runtime:
    """Runs a pipeline's sources concurrently into its sink.

    ``once`` polls every polling source one time and skips streaming sources (a one-off
    snapshot). ``stop_when`` is called after every flush tick with the stats and ends the
    run when it returns True (tests and benchmarks use it). ``live`` draws the status
    table on the terminal instead of logging a status line every ``status_interval``.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        registry: Registry,
        *,
        only: list[str] | None = None,
        once: bool = False,
        stop_when: Callable[[dict[str, SourceStats]], bool] | None = None,
        status_interval: float | None = None,
        live: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.sink: Sink = registry.sinks[pipeline.sink.type](pipeline.sink)
        self.once = once
        self.stop_when = stop_when
        self.status_interval = (
            pipeline.log.status_interval if status_interval is None else status_interval
        )
        self.live = live
        specs = list(pipeline.sources.values())
        if only:
            specs = [s for s in specs if s.name in only]
        if once:
            skipped = [s.name for s in specs if issubclass(s.cls, StreamingSource)]
            if skipped:
                logger.info("--once: skipping streaming sources %s", ", ".join(skipped))
            specs = [s for s in specs if issubclass(s.cls, PollingSource)]
        self.specs = specs
        self.stopping = asyncio.Event()
        self.stats: dict[str, SourceStats] = {s.name: SourceStats() for s in specs}
        #: Each running source's lane, from the moment its lock is taken.
        self.lanes: dict[str, Lane] = {}
        #: The hosts the sources cannot reach, said once a minute for all of them.
        self.reach = Reachability()
        #: Each running source's instance (tests reach a source through it).
        self.sources: dict[str, Source] = {}
        self.tracker = StatusTracker(specs, self.stats)
        #: The sources whose lock this run holds: it writes the status files of these only
        #: (another run's source, refused here, keeps the file that run writes).
        self.owned: set[str] = set()
        #: The status write under way: writes are chained, so that none lands out of order.
        self._status_write: asyncio.Future[None] | None = None
        self.metrics: MetricsServer | None = None
        if pipeline.metrics.listen:
            self.metrics = MetricsServer(pipeline.metrics.listen, self.tracker)

    def stop(self) -> None:
        """Ask the run to stop: sources stop reading, everything buffered is committed."""
        if not self.stopping.is_set():
            logger.info("stopping: committing what is buffered")
        self.stopping.set()

    async def run(self) -> RunResult:
        """Run until stopped (signal, ``stop()``, ``stop_when``), all sources end, or fail."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not possible outside the main thread (tests) or on some platforms.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop)
        try:
            return await self._run()
        except asyncio.CancelledError:
            # Cancelled from outside (a timeout around the run): stop the sources, so
            # that their tasks commit what they hold and end instead of lingering.
            self.stop()
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    async def _run(self) -> RunResult:
        result = RunResult(stats=self.stats)
        if not self.specs:
            logger.warning("no sources to run")
            return result
        logger.info(
            "sink %s at %s; flush every %.1fs or %d payloads",
            self.pipeline.sink.type,
            mask_uri(self.pipeline.sink.uri),
            self.pipeline.sink.flush_interval,
            self.pipeline.sink.flush_rows,
        )
        if self.metrics is not None:
            # Before any source starts: a port in use must fail the run, not go unnoticed.
            try:
                await self.metrics.start()
            except OSError as exc:
                raise MetricsUnavailable(
                    f"metrics.listen: cannot listen on {self.pipeline.metrics.listen}: "
                    f"{exc.strerror or exc}"
                ) from exc
        started = time.monotonic()
        workers = [
            asyncio.create_task(self._source(spec, result), name=spec.name) for spec in self.specs
        ]
        watcher = asyncio.create_task(self._watch())
        drift_writer = asyncio.create_task(self._write_drift_periodically())
        maintainer = None
        if self.pipeline.maintenance.scheduled and self.sink.maintains and not self.once:
            tables = [*(s.table for s in self.specs), DEAD_LETTERS.table, GAPS.table, DRIFT.table]
            maintainer = asyncio.create_task(
                maintain_periodically(self.sink, tables, self.pipeline.maintenance, self.stopping)
            )
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        all_done: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*workers, return_exceptions=True)
        )
        try:
            await asyncio.wait({waiter, all_done}, return_when="FIRST_COMPLETED")
        finally:
            self.stop()
            waiter.cancel()
            watcher.cancel()
            await asyncio.shield(all_done)
            await asyncio.gather(watcher, return_exceptions=True)
            drift_writer.cancel()
            await asyncio.gather(drift_writer, return_exceptions=True)
            await self._write_drift(final=True)
            # Each source wrote its last status itself, before it let go of its lock.
            if self.metrics is not None:
                await self.metrics.stop()
            if maintainer is not None:
                # Lets a table's maintenance in progress finish: a rewrite is atomic anyway.
                await asyncio.gather(maintainer, return_exceptions=True)
        elapsed = time.monotonic() - started
        for name, stats in self.stats.items():
            table = self.tracker.specs[name].table
            logger.info(
                "%d rows in %d commits to %s, %d dead letters, %d ignored, %d gaps in %.1fs",
                stats.rows,
                stats.commits,
                table,
                stats.dead_letters,
                stats.ignored,
                stats.gaps,
                elapsed,
                extra={"source": name},
            )
            if not stats.rows:
                # A run that stored nothing must say so, not only count zeros; a source
                # that stopped on an error has said which, once.
                if stats.state == SourceState.FAILED:
                    why = " (it stopped on the error above)"
                elif stats.last_error:
                    why = f"; last error: {stats.last_error}"
                else:
                    why = ""
                logger.warning("collected nothing in %.0fs%s", elapsed, why, extra={"source": name})
        return result

    async def _write_drift_periodically(self) -> None:
        """Write the drift entries that changed to ``_drift``, once per flush interval."""
        while True:
            await asyncio.sleep(self.pipeline.sink.flush_interval)
            await self._write_drift()

    async def _write_drift(self, *, final: bool = False) -> None:
        """One upsert of every source's new drift sightings; kept for the next on failure.

        ``final``: the run stops, so the payloads sampled for keys are parsed now.
        """
        watches = [lane.drift for lane in self.lanes.values()]
        if final:
            for watch in watches:
                await asyncio.to_thread(watch.parse_sample)
        rows, taken = drift_rows(watches)
        if not rows.height:
            return
        try:
            await asyncio.to_thread(self.sink.upsert, DRIFT.table, DRIFT, rows, DRIFT_KEY)
        except Exception as exc:
            for watch, entries in taken:
                watch.put_back(entries)
            logger.warning(
                "could not write %d drift row(s) to %s: %s", rows.height, DRIFT.table, exc
            )

    async def _publish(self) -> list[SourceStatus]:
        """Write the status file of every source this run holds; returns every snapshot."""
        statuses = self.tracker.snapshot()
        await self._write_status([s for s in statuses if s.source in self.owned])
        return statuses

    async def _write_status(self, statuses: list[SourceStatus]) -> None:
        """Write ``statuses`` after every write asked for before, even if cancelled.

        A write runs in a thread, which a cancelled caller (the watcher, at stop) would
        leave running: its older snapshot could then land after a source's last status,
        or after that source's lock passed on to another run. Chained and shielded, the
        writes land in the order their snapshots were taken.
        """
        folder = status_dir(self.pipeline.runtime.state_dir)
        previous = self._status_write

        async def write() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await asyncio.to_thread(write_status, folder, statuses)
            except OSError as exc:
                logger.debug("cannot write status files to %s: %s", folder, exc)

        self._status_write = task = asyncio.ensure_future(write())
        await asyncio.shield(task)

    async def _watch(self) -> None:
        """Once a second: status files, the live view; a status line every status_interval."""
        view = None
        if self.live:
            from lakeflow.runtime.view import LiveView

            view = LiveView()
            view.start()
        last_line = time.monotonic()
        last_publish = 0.0
        try:
            while True:
                await asyncio.sleep(0.05 if self.stop_when else 1.0)
                if self.stop_when is not None and self.stop_when(self.stats):
                    self.stop()
                offline = self.reach.summary()
                if offline is not None:
                    logger.warning("%s", offline)
                now = time.monotonic()
                if now - last_publish < 1.0:
                    continue
                last_publish = now
                statuses = await self._publish()
                if view is not None:
                    view.update(statuses)
                elif self.status_interval and now - last_line >= self.status_interval:
                    last_line = now
                    for status in statuses:
                        logger.info(
                            "%s, %d rows (%.1f/s), %d dead letters, %d reconnects, %d gaps, "
                            "backlog %d",
                            status.state,
                            status.rows,
                            status.rows_per_second,
                            status.dead_letters,
                            status.reconnects,
                            status.gaps,
                            status.backlog,
                            extra={"source": status.source},
                        )
        finally:
            if view is not None:
                view.stop()

    async def _source(self, spec: SourceSpec, result: RunResult) -> None:
        """One source instance, under its lock: open, read until stopped, close, commit."""
        log = logging.LoggerAdapter(logger, {"source": spec.name})
        stats = self.stats[spec.name]
        # Before anything else: a second collector of this source would commit under the
        # same name (every commit refused, then lost) and overwrite the status file of the
        # one that works. Spool or not. A few syscalls: taken on the loop, so that no
        # cancellation can leave a lock taken in a thread behind.
        lock = SourceLock(self.pipeline.spool_dir(spec.name), spec.name)
        try:
            lock.acquire()
        except SourceLocked as exc:
            refused: str | None = str(exc)
        except OSError as exc:
            refused = f"cannot lock {lock.path}: {exc.strerror or exc} (is state_dir writable?)"
        else:
            refused = None
        if refused is not None:
            log.error("cannot start: %s", refused)
            stats.state = SourceState.FAILED
            result.failed.append(spec.name)
            return
        try:
            lane = Lane(
                spec,
                stats,
                self.pipeline.sink,
                log,
                covered_until=await self._read_coverage(spec.name, log),
                reach=self.reach,
            )
            self.lanes[spec.name] = lane
            self.owned.add(spec.name)
            await self._collect(spec, lane, lock, result)
        finally:
            # No periodic write of it from now on: the last status is written below, and
            # once the lock is released the file is the next owner's.
            self.owned.discard(spec.name)
            try:
                await self._write_last_status(spec.name)
            finally:
                lock.release()

    async def _read_coverage(self, name: str, log: logging.LoggerAdapter) -> float | None:
        """Where the previous run's coverage of ``name`` ended, from its last status.

        Read under the lock, before this run's first publish overwrites the file: a run
        that just let go of the source has written its last status by then.
        """
        folder = status_dir(self.pipeline.runtime.state_dir)
        try:
            previous = await asyncio.to_thread(read_status, folder, [name])
        except OSError as exc:
            log.warning("cannot read the previous status in %s: %s", folder, exc)
            return None
        return next((s.covered_until for s in previous if s.covered_until is not None), None)

    async def _write_last_status(self, name: str) -> None:
        """This source's final status (stopped or failed, and where its coverage ended)."""
        lane = self.lanes.get(name)
        if lane is not None:
            # What the run's final drift write would parse, now: the status shows it too.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(lane.drift.parse_sample)
        await self._write_status(self.tracker.snapshot(only={name}))

    async def _collect(
        self, spec: SourceSpec, lane: Lane, lock: SourceLock, result: RunResult
    ) -> None:
        """Check the table, open the spool in the locked folder, then serve the source."""
        stats, log = lane.stats, lane.log
        source: Source = spec.cls(spec.name, spec.config)
        self.sources[spec.name] = source
        runtime = self.pipeline.runtime
        try:
            # Before anything is received: a table this source cannot append to is one
            # clear error now, not a commit that fails at every flush.
            await asyncio.to_thread(self.sink.check_schema, spec.table, spec.schema)
        except SchemaMismatch as exc:
            log.error("cannot start: %s", exc)
            stats.state = SourceState.FAILED
            result.failed.append(spec.name)
            return
        except Exception as exc:  # an unreachable store: the committer's start retries it
            log.debug("schema check of %s deferred: %s", spec.table, exc)
        spool = None
        if runtime.spool:
            spool = Spool(
                self.pipeline.spool_dir(spec.name),
                segment_bytes=runtime.segment_bytes,
                keep_raw=runtime.keep_raw,
            )
            # The folder is ours through the source lock: the spool must not flock the same
            # file itself (a second open file description of it would conflict with ours).
            # It holds the folder through the lock's descriptor (a duplicate, closed by
            # its close(); the lock lasts until lock.release()), and may repair it.
            assert lock.fd is not None
            try:
                spool.adopt_lock(lock.fd)
            except OSError as exc:
                log.error("cannot start: cannot open the spool in %s: %s", spool.folder, exc)
                stats.state = SourceState.FAILED
                result.failed.append(spec.name)
                return
            lane.use_spool(spool)
        committer = Committer(spec, source, self.sink, lane, self.pipeline.sink, spool, runtime)
        try:
            await self._serve(spec, source, lane, committer, result)
        finally:
            if spool is not None:
                spool.close()

    async def _serve(
        self,
        spec: SourceSpec,
        source: Source,
        lane: Lane,
        committer: Committer,
        result: RunResult,
    ) -> None:
        stats, log = lane.stats, lane.log
        await prepare(source, log, lane)
        if not await self._start(spec, committer, result, log):
            stats.state = SourceState.FAILED if spec.name in result.failed else SourceState.STOPPED
            return
        # Recorded up to now; from here on the reader says what the source covers.
        lane.covering()
        log.info("%s source %s -> table %s", spec.cls.kind, spec.cls.type, spec.table)
        # The flusher outlives the reader: it stops when this source is done *and*
        # (unless the run is a one-off) the whole run is stopping.
        finished = asyncio.Event()
        flusher = asyncio.create_task(committer.run(finished))
        reader = asyncio.create_task(self._read(spec, source, lane))
        # The lists' schedule is the source's, not a connection's: a stream that
        # reconnects often still refreshes on time.
        keeper = asyncio.create_task(source.refs.run()) if source.refs else None
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({reader, stop, flusher}, return_when="FIRST_COMPLETED")
            # Stop reading at once: a stream would otherwise wait for its next message.
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if not reader.cancelled() and isinstance(reader.exception(), SourceError):
                result.failed.append(spec.name)
            if not self.once and not self.stopping.is_set() and spec.name not in result.failed:
                # A source that ended by itself: keep the others running, flush on stop.
                await asyncio.wait({stop, flusher}, return_when="FIRST_COMPLETED")
        finally:
            # Reached on stop and on cancellation alike; nothing here waits on the run.
            stop.cancel()
            reader.cancel()
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
            try:
                await source.close()
            except Exception as exc:
                log.warning("error while closing: %s", exc)
            finished.set()
            stop_timeout = self.pipeline.runtime.stop_timeout
            committer.give_up_at = asyncio.get_running_loop().time() + stop_timeout
            try:
                await flusher
                await committer.flush()
            except CommitRefused as exc:
                log.error("stopped: %s", exc)
                if len(lane.buffer):
                    kept = "kept in the spool" if committer.spool else "LOST (no spool)"
                    log.error("%d payloads received after them: %s", len(lane.buffer), kept)
                result.failed.append(spec.name)
            except CommitAbandoned as exc:
                kept = "kept in the spool for the next start" if committer.spool else "LOST"
                pending = exc.payloads + len(lane.buffer)
                # Received while the spool's disk was full: in memory only, gone at exit.
                lost = lane.buffer.taken_unspooled + lane.buffer.unspooled
                if committer.spool and lost:
                    kept = f"{pending - lost} {kept}, {lost} received while its disk was full LOST"
                log.error("%s; %d payloads not committed (%s)", exc, pending, kept)
                result.failed.append(spec.name)
            stats.state = SourceState.FAILED if spec.name in result.failed else SourceState.STOPPED

    async def _start(
        self,
        spec: SourceSpec,
        committer: Committer,
        result: RunResult,
        log: logging.Logger | logging.LoggerAdapter,
    ) -> bool:
        """Start the committer (replay, first gap), retrying; False if stopped or refused.

        Raced against the stop: a start that cannot commit (the tables' disk is full, the
        store is down) must not keep a stopping run alive. Nothing has been received
        yet, and what the spool holds stays there for the next start.
        """
        backoff = Backoff(base=1.0, cap=60.0)
        while not self.stopping.is_set():
            start = asyncio.ensure_future(committer.start())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({start, stop}, return_when="FIRST_COMPLETED")
            stop.cancel()
            if not start.done():
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await start
                log.warning("stopped before the source could start; the spool keeps its payloads")
                return False
            try:
                start.result()
                return True
            except CommitRefused as exc:
                log.error("cannot start: %s", exc)
                result.failed.append(spec.name)
                return False
            except Exception as exc:
                if refused(exc):
                    # What stops a source at a commit stops it here too: retrying
                    # cannot fix it, and the spool keeps what it holds.
                    log.error("cannot start: table %s: %s", spec.table, redact(str(exc)))
                    result.failed.append(spec.name)
                    return False
                delay = backoff.next() or 1.0
                log.error("cannot read table %s: %s; retrying in %.0fs", spec.table, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        return False

    async def _read(self, spec: SourceSpec, source: Source, lane: Lane) -> None:
        """Open and drive the source, restarting it with backoff if it crashes."""
        backoff = Backoff(base=1.0, cap=60.0)
        log = lane.log
        silence = spec.config.silence_limit() if isinstance(spec.config, StreamingConfig) else None
        try:
            while not self.stopping.is_set():
                try:
                    await source.open()
                    if isinstance(source, StreamingSource):
                        await supervise_stream(source, lane, self.stopping, silence)
                    else:
                        assert isinstance(source, PollingSource)
                        await run_polls(source, lane, self.stopping, 1 if self.once else None)
                    return
                except SourceError:
                    raise
                except Exception as exc:
                    delay = backoff.next() or 1.0
                    log.exception("source crashed; restarting in %.1fs", delay)
                    lane.crashed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                    with contextlib.suppress(Exception):
                        await source.close()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        finally:
            # A stop during a crash's restart wait: that gap ends at the stop.
            lane.stopped()


async def prepare(
    source: Source, log: logging.Logger | logging.LoggerAdapter, lane: Lane | None = None
) -> bool:
    """Read the source's reference lists, then run ``source.prepare()``, within its time.

    A failure is logged, not fatal: the decoder then leaves unknown what it cannot know.
    A host it cannot reach is told to ``lane`` (said once for every source) and logged
    at DEBUG here.
    """
    try:
        await asyncio.wait_for(_prepare(source), source.prepare_timeout)
        return True
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        log.warning(
            "prepare() took longer than %gs: rows are decoded without what it fetches "
            "(the instrument lists; left empty) until it is read",
            source.prepare_timeout,
        )
    except Exception as exc:
        host = unreachable_host(exc)
        if host is not None and lane is not None:
            lane.unreachable(host)
        say = log.debug if host is not None and lane is not None else log.warning
        say(
            "prepare() failed (%s): rows are decoded without what it fetches (the "
            "instrument lists; left empty) until it is read",
            exc,
        )
    return False


async def _prepare(source: Source) -> None:
    await source.refs.prepare()
    await source.prepare()
