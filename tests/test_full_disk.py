"""A real full disk: a 4 MiB tmpfs under the spool, or under the tables, filled up while a
collector streams and then freed again.

The spool tests run a :class:`Spool` (and its :class:`PayloadBuffer`) on the small disk in
this process; the collector tests run the real ``lakeflow run`` on it, a numbered source
at about a thousand payloads a second, fill the disk, hold it full, free it, and stop the
collector with SIGINT. Mounting needs root (CI runs as root): elsewhere the tests skip,
saying why, and under ``CI`` they fail instead, so that they cannot silently not run.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from lakeflow_testsource import SequenceSource

import lakeflow.runtime.spool as spool_module
from harness import LAKEFLOW, Plugin, run, wait_for, wait_until
from lakeflow.runtime.buffer import PayloadBuffer
from lakeflow.runtime.spool import Spool, read_blocks
from lakeflow.sinks.delta import DeltaSink

#: Payloads the collector tests stream, at ``RATE`` a second at most (a little less in
#: practice): enough to outlast filling the disk, holding it full for ``HOLD`` seconds,
#: freeing it and the spool's retry a second later.
COUNT = 6_000
RATE = 1_000
HOLD = 1.5
#: Bigger than a tmpfs page, so a block cannot slip into the slack of the segment's last
#: page: on a full disk, every spool test write is refused.
PAD = b"x" * 5000


def _unavailable(reason: str) -> None:
    message = f"cannot mount a small tmpfs: {reason}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


class SmallDisk:
    """A 4 MiB tmpfs mounted at ``folder`` (for the ``with`` block) that can be filled up.

    :meth:`fill` writes a filler file until the disk says ENOSPC and then keeps topping it
    up, so space that anything else frees meanwhile is taken at once; :meth:`free`
    deletes it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.filler = folder / "filler"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SmallDisk:
        if os.geteuid() != 0:
            _unavailable("mounting needs root (CI runs the tests as root)")
        self.folder.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            _unavailable(mounted.stderr.strip() or f"mount exited {mounted.returncode}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()
        if subprocess.run(["umount", str(self.folder)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)

    def fill(self) -> None:
        """Fill the disk; returns once a write has been refused with ENOSPC."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        full = threading.Event()

        def top_up() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        while True:
                            os.write(fd, b"\0" * 4096)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        full.set()
                    self._stop.wait(0.02)
            finally:
                os.close(fd)

        self._stop.clear()
        self._thread = threading.Thread(target=top_up, daemon=True)
        self._thread.start()
        assert full.wait(10), "the small disk did not fill up"

    def free(self) -> None:
        """Stop topping up and delete the filler."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A small tmpfs at ``tmp_path / "disk"``, unmounted at teardown."""
    with SmallDisk(tmp_path / "disk") as disk:
        yield disk


@pytest.fixture
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool tries every append, instead of waiting a second after a refused one."""
    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 0.0)


def payload(n: int) -> bytes:
    """Payload number ``n``, padded past a page."""
    return b'{"n": %d, "pad": "%s"}' % (n, PAD)


def spooled_numbers(folder: Path) -> list[int]:
    """The numbers of every payload the spool in ``folder`` reads back, in order."""
    return [json.loads(p)["n"] for block in Spool(folder).read() for p in block.payloads]


def torn_bytes(folder: Path) -> int:
    """Bytes past the last whole block, summed over the segments in ``folder``."""
    torn = 0
    for segment in Spool(folder).segments():
        data = segment.read_bytes()
        torn += len(data) - read_blocks(data)[1]
    return torn


def emit_in_ticks(buffer: PayloadBuffer, steps: list[Callable[[], object]]) -> None:
    """Run each step, then let the event loop end its tick (the buffer spools then)."""

    async def run() -> None:
        for step in steps:
            step()
            await asyncio.sleep(0)

    asyncio.run(run())


# -- the spool on a full disk, in this process --------------------------------------------


def test_a_block_the_full_disk_refuses_is_cut_off_so_the_segment_reads_back_whole(
    small_disk: SmallDisk, no_retry_delay: None
) -> None:
    folder = small_disk.folder / "source"
    spool = Spool(folder)
    assert spool.append(1, [payload(1)], [0])
    small_disk.fill()
    # Larger than what is left in any page: part of it is written, then ENOSPC.
    assert not spool.append(2, [payload(2), payload(3)], [0, 0])
    assert torn_bytes(folder) == 0
    small_disk.free()
    assert spool.append(2, [payload(2), payload(3)], [0, 0])
    assert spooled_numbers(folder) == [1, 2, 3]


def test_payloads_held_while_the_spool_disk_is_full_are_spooled_when_space_returns(
    small_disk: SmallDisk, no_retry_delay: None
) -> None:
    folder = small_disk.folder / "source"
    buffer = PayloadBuffer(flush_rows=1000, limit=1000, spool=Spool(folder))
    emit_in_ticks(
        buffer,
        [
            lambda: buffer.emit(payload(1)),
            small_disk.fill,
            lambda: buffer.emit(payload(2)),  # refused: held in the buffer
            lambda: buffer.emit(payload(3)),  # refused again, with 2
            small_disk.free,
            lambda: buffer.emit(payload(4)),  # 2, 3 and 4 in one block
        ],
    )
    assert spooled_numbers(folder) == [1, 2, 3, 4]
    assert len(buffer) == 4  # nothing was dropped from memory meanwhile


def test_payloads_held_while_the_spool_disk_is_full_are_spooled_when_space_returns_unprompted(
    small_disk: SmallDisk,
) -> None:
    # A quiet feed, or a reader held back by backpressure: no tick would write the spool.
    folder = small_disk.folder / "source"
    buffer = PayloadBuffer(flush_rows=1000, limit=1000, spool=Spool(folder))

    async def run() -> None:
        buffer.emit(payload(1))
        await asyncio.sleep(0)
        small_disk.fill()
        buffer.emit(payload(2))
        await asyncio.sleep(0)  # refused: held
        small_disk.free()
        # Nothing is emitted from here on: only the buffer's own retry timer can write 2.
        await wait_until(lambda: spooled_numbers(folder) == [1, 2], "2 spooled unprompted")

    asyncio.run(run())


def test_payloads_committed_while_the_spool_disk_is_full_leave_a_hole_not_a_shift(
    small_disk: SmallDisk, no_retry_delay: None
) -> None:
    folder = small_disk.folder / "source"
    buffer = PayloadBuffer(flush_rows=1000, limit=1000, spool=Spool(folder))
    taken: list[tuple[int, int]] = []

    def take() -> None:
        first, batch = buffer.take()
        taken.append((first, len(batch)))

    emit_in_ticks(
        buffer,
        [
            lambda: buffer.emit(payload(1)),
            small_disk.fill,
            lambda: buffer.emit(payload(2)),
            take,  # a flush while full: 1 and 2 go to the table, 2 never spooled
            small_disk.free,
            lambda: buffer.emit(payload(3)),
        ],
    )
    assert taken == [(1, 2)]
    blocks = list(Spool(folder).read())
    assert [(block.first, block.last) for block in blocks] == [(1, 1), (3, 3)]


def test_a_full_spool_disk_is_logged_once_when_it_starts_and_once_when_it_ends(
    small_disk: SmallDisk, no_retry_delay: None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = small_disk.folder / "source"
    spool = Spool(folder)
    small_disk.fill()
    for n in range(1, 101):
        assert not spool.append(n, [payload(n)], [0])
    small_disk.free()
    assert spool.append(1, [payload(1)], [0])
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    (start_level, start), (end_level, end) = lines
    assert start_level == logging.ERROR
    assert f"cannot write the spool in {folder}: No space left on device" in start
    assert "not crash-safe until they are committed" in start
    assert end_level == logging.WARNING
    assert f"spool in {folder} writable again" in end


def test_appends_are_not_tried_again_within_a_second_of_a_refused_one(
    small_disk: SmallDisk,
) -> None:
    spool = Spool(small_disk.folder / "source")
    small_disk.fill()
    assert not spool.append(1, [payload(1)], [0])
    small_disk.free()
    assert spool.refusing
    assert not spool.append(1, [payload(1)], [0])  # not tried: the disk had no time


def test_a_segment_that_cannot_be_compressed_on_a_full_disk_stays_readable(
    small_disk: SmallDisk, no_retry_delay: None
) -> None:
    folder = small_disk.folder / "source"
    spool = Spool(folder, segment_bytes=1, keep_raw=True)  # every block rotates
    assert spool.append(1, [os.urandom(2000)], [0])
    small_disk.fill()
    assert not spool.append(2, [payload(2)], [0])  # rotating: the .gz cannot be written
    assert [p.name for p in folder.iterdir() if "gz" in p.name] == []
    small_disk.free()
    assert spool.append(2, [payload(2)], [0])
    assert [b.first for b in Spool(folder).read()] == [1, 2]


def test_a_spool_can_be_locked_on_a_full_disk(small_disk: SmallDisk) -> None:
    # A restart (systemd after an OOM kill) while the disk is still full must not fail the
    # source: the pid in the lock file only tells a person who holds it.
    small_disk.fill()
    spool = Spool(small_disk.folder / "source")
    spool.lock()
    with pytest.raises(spool_module.SpoolLocked):
        Spool(small_disk.folder / "source").lock()
    spool.close()


def _refuse_truncate(fd: int, length: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def test_a_torn_tail_that_cannot_be_cut_off_moves_appends_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one failure a real disk does not produce on demand: truncate itself failing.
    spool = Spool(tmp_path)
    assert spool.append(1, [payload(1)], [0])
    real_write, real_ftruncate = os.write, os.ftruncate
    monkeypatch.setattr(spool_module.os, "write", lambda fd, data: real_write(fd, data[:10]))
    monkeypatch.setattr(spool_module.os, "ftruncate", _refuse_truncate)
    assert not spool.append(2, [payload(2)], [0])
    monkeypatch.setattr(spool_module.os, "write", real_write)
    monkeypatch.setattr(spool_module.os, "ftruncate", real_ftruncate)
    spool._failing_since = None  # the disk is back
    assert spool.append(2, [payload(2)], [0])
    assert [p.name[:20] for p in spool.segments()] == [f"{1:020d}", f"{2:020d}"]
    assert spooled_numbers(tmp_path) == [1, 2]


def test_a_given_up_segment_that_the_retry_opens_again_is_cut_back_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    real_write, real_ftruncate = os.write, os.ftruncate
    monkeypatch.setattr(spool_module.os, "write", lambda fd, data: real_write(fd, data[:10]))
    monkeypatch.setattr(spool_module.os, "ftruncate", _refuse_truncate)
    assert not spool.append(1, [payload(1)], [0])  # the segment's first block, torn
    monkeypatch.setattr(spool_module.os, "write", real_write)
    monkeypatch.setattr(spool_module.os, "ftruncate", real_ftruncate)
    spool._failing_since = None
    assert spool.append(1, [payload(1)], [0])  # the same first sequence: the same file
    assert torn_bytes(tmp_path) == 0
    assert spooled_numbers(tmp_path) == [1]


# -- the real collector on a full disk ---------------------------------------------------


@dataclass
class Run:
    """What a collector did while its disk filled up and emptied again."""

    folder: Path
    log: str
    alive_while_full: bool
    alive_after: bool
    exit_code: int

    @property
    def table(self) -> Path:
        return self.folder / "tables" / "test_records"

    @property
    def spool(self) -> Path:
        return self.folder / "state" / "numbers"

    def warnings(self) -> list[str]:
        return [line for line in self.log.splitlines() if " WARNING " in line or " ERROR " in line]


def rows_in(table: Path) -> int:
    """Rows in ``table`` so far (0 before it exists)."""
    if not (table / "_delta_log").is_dir():
        return 0
    try:
        return pl.read_delta(str(table), columns=["n"]).height
    except Exception:  # the first commit is being written
        return 0


def commit_ends(table: Path) -> set[int]:
    """The sequence of the last payload of each commit to ``table`` (its Delta ``txn``)."""
    ends = set()
    for entry in (table / "_delta_log").glob("*.json"):
        for line in entry.read_text().splitlines():
            txn = json.loads(line).get("txn")
            if txn is not None:
                ends.add(txn["version"])
    return ends


def write_pipeline(folder: Path, *, under: str = "", count: int = COUNT) -> None:
    """A pipeline of one numbered source; its state and tables folders inside ``under``."""
    (folder / "lakeflow.toml").write_text(
        f"""
[sink]
uri = "{under}tables"
flush_interval = 0.3

[runtime]
state_dir = "{under}state"
stop_timeout = 1.0

[maintenance]
enabled = false

[sources.numbers]
type = "test_sequence"
count = {count}
rate = {RATE}
"""
    )


def start(folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """``lakeflow run`` in ``folder``, its output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [LAKEFLOW, "run"], cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def stream_through_a_full_disk(folder: Path, disk: SmallDisk, sign_of_full: str) -> Run:
    """Run ``lakeflow run`` in ``folder``; fill ``disk`` once rows land, hold it, free it."""
    write_pipeline(folder)
    log = folder / "run.log"
    table = folder / "tables" / "test_records"
    collector = start(folder, log)
    try:
        wait_for(lambda: rows_in(table) >= 500, 30, "the first rows", log=log)
        disk.fill()
        wait_for(lambda: sign_of_full in log.read_text(), 10, sign_of_full, log=log)
        time.sleep(HOLD)
        alive_while_full = collector.poll() is None
        disk.free()
        if rows_in(table) > COUNT - RATE:
            pytest.fail("the stream nearly ended before the disk was freed: raise COUNT")
        wait_for(lambda: rows_in(table) >= COUNT, 40, f"all {COUNT} rows", log=log)
        alive_after = collector.poll() is None
        collector.send_signal(signal.SIGINT)
        exit_code = collector.wait(30)
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
    return Run(folder, log.read_text(), alive_while_full, alive_after, exit_code)


@pytest.fixture(scope="module")
def spool_disk_filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A collector whose state folder (the spool) filled up and emptied; tables elsewhere."""
    folder = tmp_path_factory.mktemp("spool-disk")
    with SmallDisk(folder / "state") as disk:
        yield stream_through_a_full_disk(folder, disk, "cannot write the spool")


@pytest.fixture(scope="module")
def table_disk_filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A collector whose tables folder filled up and emptied; the spool elsewhere."""
    folder = tmp_path_factory.mktemp("table-disk")
    with SmallDisk(folder / "tables") as disk:
        yield stream_through_a_full_disk(folder, disk, "commit to table test_records failed")


def test_full_spool_disk_is_logged_once_naming_the_folder_and_once_when_it_clears(
    spool_disk_filled: Run,
) -> None:
    warnings = spool_disk_filled.warnings()
    assert len(warnings) == 2, warnings
    full, cleared = warnings
    assert f"cannot write the spool in {spool_disk_filled.spool}: No space left" in full
    assert "not crash-safe until they are committed" in full
    assert f"spool in {spool_disk_filled.spool} writable again" in cleared
    assert "Traceback" not in spool_disk_filled.log


def test_full_spool_disk_leaves_no_torn_segment(spool_disk_filled: Run) -> None:
    assert torn_bytes(spool_disk_filled.spool) == 0


def test_full_spool_disk_misses_from_the_spool_only_what_was_committed_while_full(
    spool_disk_filled: Run,
) -> None:
    # One segment (64 MiB) holds the whole run. Missing from it: one run of payloads, those
    # that flushes took while the disk was full, so it ends where a commit ends. Those still
    # in memory when space returned were spooled then (else it would end between commits).
    spooled = spooled_numbers(spool_disk_filled.spool)
    assert spooled == sorted(set(spooled))
    hole = sorted(set(range(1, COUNT + 1)) - set(spooled))
    assert hole, "nothing was received while the disk was full: the test tested nothing"
    assert hole == list(range(hole[0], hole[-1] + 1))
    assert hole[-1] in commit_ends(spool_disk_filled.table)
    assert spooled[-1] == COUNT


def test_full_spool_disk_loses_nothing_and_commits_nothing_twice(spool_disk_filled: Run) -> None:
    # None lost: the process lived, so what could not be spooled was committed from memory.
    numbers = pl.read_delta(str(spool_disk_filled.table))["n"].sort()
    assert numbers.to_list() == list(range(1, COUNT + 1))


def test_full_spool_disk_does_not_stop_the_collector(spool_disk_filled: Run) -> None:
    assert spool_disk_filled.alive_while_full
    assert spool_disk_filled.alive_after
    assert spool_disk_filled.exit_code == 0, spool_disk_filled.log[-3000:]


def test_full_table_disk_is_warned_once_per_commit_attempt_naming_the_table_folder(
    table_disk_filled: Run,
) -> None:
    warnings = table_disk_filled.warnings()
    assert warnings
    for line in warnings:
        assert "commit to table test_records failed" in line
        assert "No space left on device" in line
        assert f"(table at {table_disk_filled.table})" in line
    # Commits are retried with backoff (0.2 s, then doubling): a handful of attempts in
    # the seconds the disk was full, while thousands of payloads arrived.
    assert len(warnings) <= 6, warnings
    assert "Traceback" not in table_disk_filled.log


def test_full_table_disk_leaves_a_table_whose_files_all_exist(table_disk_filled: Run) -> None:
    files = DeltaTable(str(table_disk_filled.table)).file_uris()
    assert files
    assert all(Path(uri.removeprefix("file://")).is_file() for uri in files)


def test_full_table_disk_leaves_no_partial_data_file_behind(table_disk_filled: Run) -> None:
    # A data file the disk cut short is removed by the writer: none lingers to fill it again.
    table = table_disk_filled.table
    on_disk = {p for p in table.rglob("*") if p.is_file() and "_delta_log" not in p.parts}
    in_table = {Path(uri.removeprefix("file://")) for uri in DeltaTable(str(table)).file_uris()}
    assert on_disk == in_table


def test_full_table_disk_leaves_no_torn_spool_segment(table_disk_filled: Run) -> None:
    assert torn_bytes(table_disk_filled.spool) == 0


def test_full_table_disk_loses_nothing_and_commits_nothing_twice(table_disk_filled: Run) -> None:
    # None lost: every payload was spooled (that disk had room) and the commit retried.
    numbers = pl.read_delta(str(table_disk_filled.table))["n"].sort()
    assert numbers.to_list() == list(range(1, COUNT + 1))


def test_full_table_disk_does_not_stop_the_collector(table_disk_filled: Run) -> None:
    assert table_disk_filled.alive_while_full
    assert table_disk_filled.alive_after
    assert table_disk_filled.exit_code == 0, table_disk_filled.log[-3000:]


# -- one disk for both, stopped while it is still full ------------------------------------

STOPPED_FULL = re.compile(
    r"(\d+) payloads not committed \((\d+) kept in the spool for the next start, "
    r"(\d+) received while its disk was full LOST\)"
)


@dataclass
class StoppedFull:
    """A collector stopped (SIGINT) while its one disk was full, then started again."""

    folder: Path
    log: str
    alive_while_full: bool
    exit_code: int
    committed_before: int  # rows in the table when the disk filled
    restart_log: str
    restart_exit_code: int

    @property
    def table(self) -> Path:
        return self.folder / "disk" / "tables" / "test_records"

    @property
    def counts(self) -> tuple[int, int, int]:
        """Payloads not committed at the stop, kept in the spool, and lost, as logged."""
        match = STOPPED_FULL.search(self.log)
        assert match, self.log[-3000:]
        pending, kept, lost = map(int, match.groups())
        return pending, kept, lost


@pytest.fixture(scope="module")
def stopped_while_full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoppedFull]:
    """State and tables on one small disk (the default layout); SIGINT while it is full,
    then free it and run again with a source that emits nothing (only the spool replays)."""
    folder = tmp_path_factory.mktemp("one-disk")
    with SmallDisk(folder / "disk") as disk:
        write_pipeline(folder, under="disk/")
        log, table = folder / "run.log", folder / "disk" / "tables" / "test_records"
        collector = start(folder, log)
        try:
            wait_for(lambda: rows_in(table) >= 500, 30, "the first rows", log=log)
            disk.fill()
            for sign in ("cannot write the spool", "commit to table test_records failed"):
                wait_for(lambda sign=sign: sign in log.read_text(), 10, sign, log=log)
            time.sleep(0.5)
            alive_while_full = collector.poll() is None
            before = rows_in(table)
            collector.send_signal(signal.SIGINT)
            exit_code = collector.wait(30)
        finally:
            if collector.poll() is None:
                collector.kill()
                collector.wait()
        disk.free()
        write_pipeline(folder, under="disk/", count=0)
        restart_log = folder / "restart.log"
        again = start(folder, restart_log)
        try:
            wait_for(
                lambda: "replaying" in restart_log.read_text(), 30, "a replay", log=restart_log
            )
            wait_for(lambda: rows_in(table) > before, 30, "the replay's commit", log=restart_log)
            again.send_signal(signal.SIGINT)
            restart_exit_code = again.wait(30)
        finally:
            if again.poll() is None:
                again.kill()
                again.wait()
        yield StoppedFull(
            folder,
            log.read_text(),
            alive_while_full,
            exit_code,
            before,
            restart_log.read_text(),
            restart_exit_code,
        )


def test_stop_while_the_disk_is_full_fails_the_source_saying_how_many_payloads_are_lost(
    stopped_while_full: StoppedFull,
) -> None:
    assert stopped_while_full.alive_while_full
    assert stopped_while_full.exit_code == 1
    pending, kept, lost = stopped_while_full.counts
    assert kept + lost == pending
    assert lost > 0


def test_stop_while_the_disk_is_full_loses_only_what_never_reached_the_spool(
    stopped_while_full: StoppedFull,
) -> None:
    # Lost: the payloads received after the spool's first refused write, which the commits
    # (refused by the same full disk) never landed: in memory only, gone at exit. They are
    # the newest, numbers before + kept + 1 .. before + pending. All the others land once,
    # the spooled ones at the restart.
    _, kept, _ = stopped_while_full.counts
    numbers = pl.read_delta(str(stopped_while_full.table))["n"].sort().to_list()
    assert numbers == list(range(1, stopped_while_full.committed_before + kept + 1))
    assert f"replayed {kept} spooled payloads" in stopped_while_full.restart_log
    assert stopped_while_full.restart_exit_code == 0, stopped_while_full.restart_log[-3000:]


class FullTablesSink(DeltaSink):
    """A Delta sink whose every commit meets a full disk, in deltalake's words: no mount
    needed to hold a restart at its first commit."""

    type = "full_delta"

    def commit(self, *args, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        raise OSError("Generic LocalFileSystem error: No space left on device (os error 28)")


def test_a_stop_while_the_restart_waits_for_a_full_tables_disk_ends_the_run(pm, tmp_path):
    """The restart's first commit (the "not running" gap) retries; a stop must not wait."""
    pm.register(Plugin(SequenceSource, sinks=[FullTablesSink]), name="t")
    source = '[sources.s]\ntype = "test_sequence"\ncount = 5\n'
    run(pm, tmp_path, "[sink]\nflush_interval = 0.1\n" + source, until=lambda s: s["s"].rows >= 5)
    started = time.monotonic()

    result, _ = run(
        pm,
        tmp_path,
        '[sink]\ntype = "full_delta"\nflush_interval = 0.1\n' + source,
        until=lambda s: time.monotonic() - started > 1.5,
        timeout=20,
    )

    assert result.stats["s"].received == 0  # it never started reading
    assert str(result.stats["s"].state) == "stopped"


def test_a_read_only_tables_disk_stops_the_source_and_the_spool_keeps_its_payloads(pm, tmp_path):
    """EROFS is not a full disk: retrying cannot fix it, so the source stops, at once."""
    pm.register(Plugin(SequenceSource), name="t")
    source = '[sink]\nflush_interval = 0.2\n[sources.s]\ntype = "test_sequence"\ncount = 30\n'
    with SmallDisk(tmp_path / "tables") as disk:

        def remount(mode: str) -> None:
            subprocess.run(
                ["mount", "-o", f"remount,{mode}", "tmpfs", str(disk.folder)], check=True
            )

        remount("ro")
        try:
            result, _ = run(pm, tmp_path, source, until=lambda s: str(s["s"].state) == "failed")
        finally:
            remount("rw")  # also so that the disk can be cleaned up if the run failed
        assert result.failed == ["s"]
        assert result.stats["s"].rows == 0

        quiet = source.replace("count = 30", "count = 0")
        again, tables = run(pm, tmp_path, quiet, until=lambda s: s["s"].rows >= 30)

        assert sorted(pl.read_delta(str(tables / "test_records"))["n"]) == list(range(1, 31))
        assert not again.failed
