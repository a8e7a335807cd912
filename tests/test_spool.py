"""The spool: payloads on disk before they count as received, replayed after a crash."""

from __future__ import annotations

import fcntl
import gzip
import logging
import os
import stat
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from lakeflow.runtime.spool import Spool, SpoolLocked, encode_block, read_blocks
from lakeflow.testing import collect


def payloads(first: int, count: int) -> list[bytes]:
    return [b'{"n": %d, "value": "%d.5"}' % (i, i) for i in range(first, first + count)]


def test_blocks_round_trip_payloads_and_times():
    data = encode_block(7, [b"a", b"", b"ccc"], [1, 2, 3]) + encode_block(10, [b"d"], [4])
    blocks, valid = read_blocks(data)
    assert valid == len(data)
    assert [(b.first, b.payloads, list(b.times)) for b in blocks] == [
        (7, [b"a", b"", b"ccc"], [1, 2, 3]),
        (10, [b"d"], [4]),
    ]


def test_torn_last_block_is_discarded_and_cut_from_the_file(tmp_path):
    spool = Spool(tmp_path)
    spool.append(1, payloads(1, 3), [0, 0, 0])
    spool.append(4, payloads(4, 3), [0, 0, 0])
    spool.close()
    reopened = Spool(tmp_path)
    reopened.lock()  # only the owner repairs the file
    segment = spool.segments()[0]
    whole = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(encode_block(7, payloads(7, 3), [0, 0, 0])[:-5])  # a kill mid-write
    assert [b.last for b in reopened.read()] == [3, 6]
    assert segment.stat().st_size == whole


def test_read_after_skips_what_is_committed_even_inside_a_block(tmp_path):
    spool = Spool(tmp_path)
    spool.append(1, payloads(1, 5), [0] * 5)
    blocks = list(spool.read(after=3))
    assert [(b.first, len(b.payloads)) for b in blocks] == [(4, 2)]


def test_trim_removes_only_closed_segments_that_are_fully_committed(tmp_path):
    spool = Spool(tmp_path, segment_bytes=1)  # every block starts a new segment
    for first in (1, 11, 21):
        spool.append(first, payloads(first, 10), [0] * 10)
    assert spool.trim(committed=15) == 1  # 1..10 done; 11..20 not yet
    assert spool.segments()[0].name.startswith("00000000000000000011")
    assert spool.trim(committed=30) == 1  # the active segment stays
    assert len(spool.segments()) == 1


def test_keep_raw_compresses_rotated_segments_and_never_trims(tmp_path):
    spool = Spool(tmp_path, segment_bytes=1, keep_raw=True)
    for first in (1, 11):
        spool.append(first, payloads(first, 10), [0] * 10)
    assert spool.trim(committed=100) == 0
    names = [p.name for p in spool.segments()]
    assert names[0].endswith(".spool.gz")
    assert gzip.decompress(spool.segments()[0].read_bytes())
    assert sum(len(b.payloads) for b in spool.read()) == 20


def test_second_process_on_the_same_spool_is_refused(tmp_path):
    first = Spool(tmp_path)
    first.lock()
    with pytest.raises(SpoolLocked, match="already running"):
        Spool(tmp_path).lock()
    first.close()
    Spool(tmp_path).lock()


def test_a_spool_adopting_a_lock_this_process_holds_repairs_as_the_owner(tmp_path):
    spool = Spool(tmp_path)
    spool.append(1, payloads(1, 3), [0] * 3)
    spool.close()
    segment = spool.segments()[0]
    whole = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(encode_block(4, payloads(4, 3), [0] * 3)[:-5])
    held = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the runtime's source lock does
    adopted = Spool(tmp_path)
    adopted.adopt_lock(held)
    assert [b.last for b in adopted.read()] == [3]
    assert segment.stat().st_size == whole
    adopted.close()
    with pytest.raises(SpoolLocked):  # closing the spool let go of its copy only
        Spool(tmp_path).lock()
    os.close(held)


def test_disk_refusing_a_write_leaves_the_segment_clean(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    assert spool.append(1, payloads(1, 2), [0, 0])
    import lakeflow.runtime.spool as module

    real_write = module.os.write

    def short_write(fd, data):
        real_write(fd, data[:10])
        return 10  # what a full disk does: a partial write

    monkeypatch.setattr(module.os, "write", short_write)
    assert not spool.append(3, payloads(3, 2), [0, 0])
    monkeypatch.setattr(module.os, "write", real_write)
    spool._failing_since = None  # the disk has room again
    assert spool.append(5, payloads(5, 2), [0, 0])
    assert [(b.first, b.last) for b in spool.read()] == [(1, 2), (5, 6)]
    assert spool.unspooled == 2


def test_spooled_payloads_not_in_the_table_are_committed_on_start(tmp_path: Path):
    # What a kill -9 leaves: payloads in the spool that never reached the table.
    spool = Spool(tmp_path / "state" / "source")
    spool.append(1, payloads(1, 40), [1_700_000_000_000_000_000] * 40)
    spool.close()
    result = collect("test_sequence", {"count": 10}, tmp_path, payloads=10)
    assert result.rows["n"].sort().to_list() == sorted([*range(1, 41), *range(1, 11)])
    assert result.rows.filter(pl.col("n") <= 40)["received_at"].dt.year().min() == 2023


def test_restart_after_replay_does_not_commit_the_spool_twice(tmp_path: Path):
    spool = Spool(tmp_path / "state" / "source")
    # Received now: a receipt in 1970 would be refused as an implausible partition date.
    spool.append(1, payloads(1, 40), [time.time_ns()] * 40)
    spool.close()
    collect("test_sequence", {"count": 5}, tmp_path, payloads=5)
    result = collect("test_sequence", {"count": 5}, tmp_path, payloads=5)
    assert result.rows.height == 50


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which files are created readable by everyone by default."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_spool_folder_its_segments_and_its_lock_are_private(tmp_path, umask_022):
    folder = tmp_path / "state" / "source"
    spool = Spool(folder)
    spool.lock()
    spool.append(1, payloads(1, 3), [0] * 3)
    spool.close()
    assert mode(folder) == 0o700
    assert mode(spool.segments()[0]) == 0o600
    assert mode(folder / "lock") == 0o600


def test_compressed_segments_are_private(tmp_path, umask_022):
    spool = Spool(tmp_path / "source", segment_bytes=1, keep_raw=True)
    for first in (1, 11):
        spool.append(first, payloads(first, 10), [0] * 10)
    assert spool.segments()[0].name.endswith(".gz")
    assert mode(spool.segments()[0]) == 0o600


def test_a_spool_folder_open_to_others_is_made_private(tmp_path, umask_022):
    folder = tmp_path / "source"
    folder.mkdir(mode=0o755)
    (folder / "lock").touch(mode=0o644)  # as an older lakeflow left them
    Spool(folder).lock()
    assert mode(folder) == 0o700
    assert mode(folder / "lock") == 0o600


def strays(folder: Path) -> None:
    """A spool of two segments, and two files in its folder that are not segments."""
    spool = Spool(folder, segment_bytes=1)
    for first in (1, 11):
        spool.append(first, payloads(first, 10), [first * 1000] * 10)
    spool.close()
    (folder / "notanumber.spool").write_bytes(b"not a segment")
    (folder / "foo.txt").write_text("notes")


def test_files_that_are_not_segments_are_skipped_with_one_warning_each(tmp_path, caplog):
    strays(tmp_path)
    spool = Spool(tmp_path)
    for _ in range(3):
        assert [p.name for p in spool.segments()] == [f"{1:020d}.spool", f"{11:020d}.spool"]
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warnings == [
        f"spool {tmp_path}: foo.txt is not a spool segment; skipped",
        f"spool {tmp_path}: notanumber.spool is not a spool segment; skipped",
    ]


def test_files_that_are_not_segments_stop_nothing(tmp_path):
    strays(tmp_path)
    spool = Spool(tmp_path)
    spool.lock()
    assert sum(len(b.payloads) for b in spool.read()) == 20
    assert spool.last_sequence() == 20
    assert spool.last_received() == 11_000
    assert spool.trim(committed=20) == 1
    assert spool.damage == []
    assert (tmp_path / "notanumber.spool").exists()
    assert (tmp_path / "foo.txt").exists()


def test_a_segment_and_its_compressed_copy_are_read_once(tmp_path):
    # A kill between writing the .gz and deleting the original leaves both.
    spool = Spool(tmp_path)
    spool.append(1, payloads(1, 10), [0] * 10)
    spool.close()
    segment = spool.segments()[0]
    segment.with_name(segment.name + ".gz").write_bytes(gzip.compress(segment.read_bytes()))
    assert [b.first for b in Spool(tmp_path).read()] == [1]


def test_files_half_written_by_a_crash_are_removed_when_the_lock_is_taken(tmp_path):
    spool = Spool(tmp_path)
    spool.append(1, payloads(1, 10), [0] * 10)
    spool.close()
    partial = tmp_path / f"{1:020d}.spool.gz.partial"
    partial.write_bytes(b"half a gzip stream")
    Spool(tmp_path).lock()
    assert not partial.exists()


def test_reading_a_200_mb_spool_holds_about_one_block_in_memory(tmp_path):
    spool = Spool(tmp_path)  # 64 MiB segments: the reader once held a whole one, twice
    payload = b"x" * 1000
    for block in range(200):  # blocks of 1 MB
        spool.append(block * 1000 + 1, [payload] * 1000, [0] * 1000)
    spool.close()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        read = sum(len(block.payloads) for block in Spool(tmp_path).read())
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert read == 200_000
    assert peak < 32 << 20, f"{peak >> 20} MiB"


def test_replay_into_a_new_table_re_decodes_the_capture(tmp_path, cli):
    collect(
        "test_sequence",
        {"count": 30, "bad_every": 10},
        tmp_path,
        payloads=30,
        runtime={"keep_raw": True},
    )
    done = cli("replay", "--source", "source", "--table", "redecoded")
    assert done.returncode == 0, done.stderr
    assert "27 rows in 1 commits to redecoded, 3 dead letters" in done.stdout
    table = pl.read_delta(str(tmp_path / "tables" / "redecoded"))
    assert table["n"].sort().to_list() == [n for n in range(1, 31) if n % 10]


def test_replay_into_the_source_table_commits_nothing_twice(tmp_path, cli):
    collect("test_sequence", {"count": 30}, tmp_path, payloads=30, runtime={"keep_raw": True})
    done = cli("replay", "--source", "source")
    assert done.returncode == 0, done.stderr
    assert "source: 0 rows" in done.stdout
    assert pl.read_delta(str(tmp_path / "tables" / "test_records")).height == 30


def test_replay_keeps_only_the_time_window(tmp_path, cli):
    collect("test_sequence", {"count": 30}, tmp_path, payloads=30, runtime={"keep_raw": True})
    done = cli("replay", "--source", "source", "--table", "later", "--from", "2999-01-01")
    assert done.returncode == 0, done.stderr
    assert "0 rows" in done.stdout


def test_replay_of_an_unknown_source_exits_2(tmp_path, cli):
    collect("test_sequence", {"count": 3}, tmp_path, payloads=3)
    done = cli("replay", "--source", "nope")
    assert done.returncode == 2
    assert "no source named nope" in done.stderr
