"""A damaged spool loses only what is damaged, and says so in `_gaps`, through `lakeflow run`.

The spool is written here as a crashed collector leaves it (segments of payloads that
never reached the tables), then damaged as a failing disk would, and the real
`lakeflow run` is started on it: it replays what it can read at start.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl

from harness import run_until
from lakeflow.runtime.spool import Spool

BLOCKS = 164
PER_BLOCK = 10
DAMAGED_BLOCK = 54
TOTAL = BLOCKS * PER_BLOCK


def payload(n: int) -> bytes:
    return b'{"n": %d, "value": "%d.5"}' % (n, n)


def write_pipeline(folder: Path) -> None:
    (folder / "lakeflow.toml").write_text(
        '[sink]\nuri = "tables"\nflush_interval = 0.2\n'
        '[sources.s]\ntype = "test_sequence"\ncount = 0\n'
    )


def crashed_spool(folder: Path) -> tuple[Path, list[int]]:
    """A closed segment of BLOCKS blocks and the start of a second; block offsets."""
    spool = Spool(folder / "state" / "s")
    now = time.time_ns()
    offsets = []
    for block in range(BLOCKS):
        first = block * PER_BLOCK + 1
        segment = spool.segments()
        offsets.append(segment[0].stat().st_size if segment else 0)
        spool.append(first, [payload(n) for n in range(first, first + PER_BLOCK)], [now] * 10)
    spool.close()
    segment = spool.segments()[0]
    # The next segment: what the crashed run received after the first one rotated.
    after = Spool(folder / "state" / "s")
    after._rotate(TOTAL + 1)
    after.append(TOTAL + 1, [payload(TOTAL + 1)], [now])
    after.close()
    return segment, offsets


def flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x10]))


def stored(folder: Path) -> list[int]:
    table = folder / "tables" / "test_records"
    if not (table / "_delta_log").is_dir():
        return []
    return pl.read_delta(str(table))["n"].to_list()


def gaps(folder: Path) -> pl.DataFrame:
    table = folder / "tables" / "_gaps"
    if not (table / "_delta_log").is_dir():
        return pl.DataFrame()
    return pl.read_delta(str(table))


def test_a_flipped_bit_mid_segment_loses_only_its_block_and_files_a_gap(tmp_path):
    write_pipeline(tmp_path)
    segment, offsets = crashed_spool(tmp_path)
    flip_bit(segment, offsets[DAMAGED_BLOCK] + 40)  # inside the block's body
    log = run_until(tmp_path, lambda: len(stored(tmp_path)) >= TOTAL + 1 - PER_BLOCK, timeout=90)
    assert "ERROR" in log and "spool damaged" in log

    lost = set(range(DAMAGED_BLOCK * PER_BLOCK + 1, (DAMAGED_BLOCK + 1) * PER_BLOCK + 1))
    assert sorted(stored(tmp_path)) == [n for n in range(1, TOTAL + 2) if n not in lost]
    reasons = [r for r in gaps(tmp_path)["reason"] if r.startswith("spool damaged")]
    assert len(reasons) == 1
    assert segment.name in reasons[0]
    assert f"{PER_BLOCK} payloads (sequences {min(lost)}..{max(lost)}) lost" in reasons[0]


def test_the_damaged_bytes_are_kept_beside_the_spool_for_inspection(tmp_path):
    write_pipeline(tmp_path)
    segment, offsets = crashed_spool(tmp_path)
    flip_bit(segment, offsets[DAMAGED_BLOCK] + 40)
    run_until(tmp_path, lambda: len(stored(tmp_path)) >= TOTAL + 1 - PER_BLOCK, timeout=90)
    quarantined = list((tmp_path / "state" / "s").glob("*.damaged"))
    assert len(quarantined) == 1
    assert quarantined[0].stat().st_size == offsets[DAMAGED_BLOCK + 1] - offsets[DAMAGED_BLOCK]
    assert oct(os.stat(quarantined[0]).st_mode & 0o777) == oct(0o600)


def test_a_stray_file_in_the_spool_folder_never_stops_the_source(tmp_path):
    write_pipeline(tmp_path)
    crashed_spool(tmp_path)
    (tmp_path / "state" / "s" / "notanumber.spool").write_bytes(b"not a segment")
    log = run_until(tmp_path, lambda: len(stored(tmp_path)) >= TOTAL + 1, timeout=90)
    assert sorted(stored(tmp_path)) == list(range(1, TOTAL + 2))
    assert "notanumber.spool" in log and "WARNING" in log
