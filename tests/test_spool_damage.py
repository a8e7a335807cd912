"""A damaged spool: every payload after the damage is read, and the loss is data.

A closed segment of 164 blocks of 10 payloads (block ``i`` holds sequences
``10 i + 1 .. 10 i + 10``) stands in for a spool a disk has since damaged: a bit flipped,
a header byte changed, a gzip stream broken. A crash's torn tail is the one fault that
stays quiet.
"""

from __future__ import annotations

import gzip
import json
import logging
import stat
import zlib
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lakeflow.runtime.spool import HEADER, MAGIC, Block, Spool, encode_block

BLOCKS = 164
PER_BLOCK = 10
TOTAL = BLOCKS * PER_BLOCK


def payloads(first: int, count: int) -> list[bytes]:
    return [b'{"n": %d}' % n for n in range(first, first + count)]


def write_spool(folder: Path, blocks: int = BLOCKS, **options: object) -> Spool:
    """A closed spool in ``folder``: ``blocks`` blocks of ``PER_BLOCK`` payloads."""
    spool = Spool(folder, **options)  # type: ignore[arg-type]
    for index in range(blocks):
        first = index * PER_BLOCK + 1
        assert spool.append(first, payloads(first, PER_BLOCK), [first] * PER_BLOCK)
    spool.close()
    return spool


def block_offsets(data: bytes) -> list[int]:
    """Where each block of an undamaged segment starts, and (last) where it ends."""
    offsets = [0]
    while offsets[-1] < len(data):
        offsets.append(offsets[-1] + HEADER.size + HEADER.unpack_from(data, offsets[-1])[3])
    return offsets


def flip(path: Path, offset: int) -> bytes:
    """Flip one bit of ``path`` at ``offset``; returns the file as it then is."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(data)
    return bytes(data)


def numbers(blocks: Iterator[Block]) -> list[int]:
    """The numbers of the payloads read, each checked against its sequence."""
    seen = []
    for block in blocks:
        for index, payload in enumerate(block.payloads):
            assert json.loads(payload)["n"] == block.first + index
            seen.append(block.first + index)
    return seen


@pytest.fixture
def owner() -> Iterator[Callable[[Path], Spool]]:
    """Opens a spool holding its folder's lock (what a starting collector does)."""
    opened: list[Spool] = []

    def open_locked(folder: Path) -> Spool:
        spool = Spool(folder)
        spool.lock()
        opened.append(spool)
        return spool

    yield open_locked
    for spool in opened:
        spool.close()


@pytest.fixture
def flipped_mid_segment(tmp_path: Path) -> tuple[Path, bytes, int, int]:
    """Block 54 of the 164 with one bit flipped in a payload: the folder, the damaged
    segment's bytes, and where block 54 starts and ends."""
    segment = write_spool(tmp_path).segments()[0]
    offsets = block_offsets(segment.read_bytes())
    start, end = offsets[54], offsets[55]
    return tmp_path, flip(segment, end - 20), start, end


# -- a bit flipped in the middle of a closed segment --------------------------------------


def test_a_flipped_bit_mid_segment_loses_only_its_block(flipped_mid_segment, owner):
    folder, _, _, _ = flipped_mid_segment
    assert numbers(owner(folder).read()) == [n for n in range(1, TOTAL + 1) if not 541 <= n <= 550]


def test_a_flipped_bit_mid_segment_is_one_damage_with_the_exact_payloads_lost(
    flipped_mid_segment, owner
):
    folder, _, start, end = flipped_mid_segment
    spool = owner(folder)
    list(spool.read())
    [damage] = spool.damage
    assert (damage.segment, damage.start, damage.end) == (f"{1:020d}.spool", start, end)
    assert damage.cause == "crc mismatch"
    assert (damage.payloads, damage.first_sequence, damage.last_sequence) == (10, 541, 550)
    assert damage.reason == (
        f"spool damaged: segment {1:020d}.spool bytes {start}..{end} unreadable (crc "
        f"mismatch), 10 payloads (sequences 541..550) lost; the bytes are in "
        f"{damage.quarantine}"
    )


def test_the_damaged_bytes_are_quarantined_beside_the_segments_privately(
    flipped_mid_segment, owner
):
    folder, damaged, start, end = flipped_mid_segment
    spool = owner(folder)
    list(spool.read())
    quarantine = spool.damage[0].quarantine
    assert quarantine == folder / f"{1:020d}.spool.{start}-{end}.damaged"
    assert quarantine.read_bytes() == damaged[start:end]
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o600
    assert [p.name for p in spool.segments()] == [f"{1:020d}.spool"]


def test_the_owner_rewrites_the_segment_so_the_next_start_finds_no_damage(
    flipped_mid_segment, owner
):
    folder, damaged, start, end = flipped_mid_segment
    list(owner(folder).read())
    segment = folder / f"{1:020d}.spool"
    assert segment.read_bytes() == damaged[:start] + damaged[end:]
    again = Spool(folder)
    assert len(numbers(again.read())) == TOTAL - 10
    assert again.damage == []


def test_damage_is_logged_as_an_error_naming_segment_bytes_payloads_and_quarantine(
    flipped_mid_segment, owner, caplog
):
    folder, _, start, end = flipped_mid_segment
    list(owner(folder).read())
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"segment {1:020d}.spool bytes {start}..{end}" in error
    assert "10 payloads (sequences 541..550) lost" in error
    assert f"{folder}/{1:020d}.spool.{start}-{end}.damaged" in error


def test_a_reader_without_the_lock_skips_the_damage_and_changes_nothing(flipped_mid_segment):
    folder, damaged, _, _ = flipped_mid_segment
    reader = Spool(folder)
    assert len(numbers(reader.read())) == TOTAL - 10
    [damage] = reader.damage
    assert damage.quarantine is None
    assert damage.reason.endswith(
        "the bytes stay in the segment (this reader does not hold the spool's lock)"
    )
    assert (folder / f"{1:020d}.spool").read_bytes() == damaged
    assert not list(folder.glob("*.damaged"))


def test_damage_found_twice_by_one_spool_is_recorded_once(flipped_mid_segment):
    reader = Spool(flipped_mid_segment[0])
    list(reader.read())
    list(reader.read())
    assert len(reader.damage) == 1


def test_damage_below_after_in_a_read_segment_is_still_recorded(flipped_mid_segment):
    # The tables may hold those payloads: the caller decides, from the sequences.
    reader = Spool(flipped_mid_segment[0])
    assert numbers(reader.read(after=1000)) == list(range(1001, TOTAL + 1))
    assert [d.last_sequence for d in reader.damage] == [550]


# -- the header of the first block --------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "offset"),
    [("magic", 1), ("sequence", 4), ("count", 12), ("length", 17), ("crc", 22)],
)
def test_a_flipped_header_byte_of_the_first_block_loses_only_that_block(
    tmp_path, owner, field, offset
):
    segment = write_spool(tmp_path).segments()[0]
    flip(segment, offset)
    spool = owner(tmp_path)
    assert numbers(spool.read()) == list(range(11, TOTAL + 1))
    [damage] = spool.damage
    assert (damage.start, damage.payloads) == (0, 10)
    assert (damage.first_sequence, damage.last_sequence) == (1, 10)


def test_a_block_whose_sequence_was_changed_is_not_read_under_another_number(tmp_path, owner):
    # Without the header check in the body, the crc passes and the payloads are renumbered.
    segment = write_spool(tmp_path).segments()[0]
    offset = block_offsets(segment.read_bytes())[80]
    flip(segment, offset + 4 + 3)  # sequence 801 becomes 801 + 2**28
    spool = owner(tmp_path)
    assert numbers(spool.read()) == [n for n in range(1, TOTAL + 1) if not 801 <= n <= 810]
    assert spool.damage[0].cause == "header mismatch"


# -- damage at the end of a segment -------------------------------------------------------


def test_a_corrupt_last_block_of_a_closed_segment_is_counted_from_the_next_segments_name(
    tmp_path, owner
):
    first, second = write_spool(tmp_path, segment_bytes=20_000).segments()[:2]
    data = first.read_bytes()
    offsets = block_offsets(data)
    flip(first, len(data) - 30)
    spool = owner(tmp_path)
    read = numbers(spool.read())
    [damage] = spool.damage
    next_first = int(second.name[:20])
    assert (damage.start, damage.end) == (offsets[-2], len(data))
    assert damage.payloads == 10
    assert (damage.first_sequence, damage.last_sequence) == (next_first - 10, next_first - 1)
    assert read == [n for n in range(1, TOTAL + 1) if not next_first - 10 <= n < next_first]


def test_a_corrupt_last_block_of_the_newest_segment_is_damage_of_unknown_size(tmp_path, owner):
    # Its full length is there, so no kill tore it: corruption, even at the end.
    segment = write_spool(tmp_path).segments()[0]
    flip(segment, segment.stat().st_size - 30)
    spool = owner(tmp_path)
    assert numbers(spool.read()) == list(range(1, TOTAL - 10 + 1))
    [damage] = spool.damage
    assert (damage.payloads, damage.first_sequence, damage.last_sequence) == (None, 1631, None)
    assert "an unknown number of payloads (sequences from 1631 on) lost" in damage.reason


# -- a crash's torn tail ------------------------------------------------------------------


@pytest.mark.parametrize("kept", [3, HEADER.size + 5], ids=["in the header", "in the body"])
def test_a_torn_tail_is_cut_off_quietly_and_is_no_damage(tmp_path, owner, caplog, kept):
    segment = write_spool(tmp_path).segments()[0]
    whole = segment.stat().st_size
    with open(segment, "ab") as handle:  # a kill mid-write
        handle.write(encode_block(TOTAL + 1, payloads(TOTAL + 1, 5), [0] * 5)[:kept])
    spool = owner(tmp_path)
    assert len(numbers(spool.read())) == TOTAL
    assert spool.damage == []
    assert segment.stat().st_size == whole
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert levels == [
        (
            logging.WARNING,
            f"spool {segment.name}: {kept} torn bytes at the end (a crash mid-write) discarded",
        )
    ]


def test_a_reader_without_the_lock_leaves_a_torn_tail_in_place(tmp_path):
    segment = write_spool(tmp_path).segments()[0]
    with open(segment, "ab") as handle:
        handle.write(encode_block(TOTAL + 1, payloads(TOTAL + 1, 5), [0] * 5)[:-5])
    torn = segment.stat().st_size
    reader = Spool(tmp_path)
    assert len(numbers(reader.read())) == TOTAL
    assert reader.damage == []
    assert segment.stat().st_size == torn


# -- compressed segments ------------------------------------------------------------------


@pytest.fixture
def capture(tmp_path: Path) -> list[Path]:
    """A keep_raw capture: compressed segments of about 50 blocks, the newest raw."""
    segments = write_spool(tmp_path, segment_bytes=12_000, keep_raw=True).segments()
    assert [p.name.endswith(".gz") for p in segments] == [True, True, True, False]
    return segments


def test_a_truncated_gzip_segment_reads_what_decompresses_and_counts_the_rest(
    capture, tmp_path, owner
):
    first, second = capture[:2]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    spool = owner(tmp_path)
    read = numbers(spool.read())
    [damage] = spool.damage
    next_first = int(second.name[:20])
    lost = range(damage.first_sequence, next_first)
    assert damage.segment == first.name
    assert "gzip stream cut short" in damage.cause
    assert damage.payloads == len(lost) > 0
    assert read == [n for n in range(1, TOTAL + 1) if n not in lost]


def test_a_gzip_segment_with_a_flipped_bit_never_raises_and_accounts_for_every_payload(
    capture, tmp_path, owner
):
    first = capture[0]
    flip(first, first.stat().st_size // 2)
    spool = owner(tmp_path)
    read = numbers(spool.read())
    assert spool.damage
    assert {d.segment for d in spool.damage} == {first.name}
    assert len(read) + sum(d.payloads or 0 for d in spool.damage) == TOTAL


def test_a_damaged_gzip_segment_is_quarantined_whole_and_rewritten_readable(
    capture, tmp_path, owner
):
    first = capture[0]
    damaged = flip(first, first.stat().st_size // 2)
    spool = owner(tmp_path)
    read = numbers(spool.read())
    quarantine = spool.damage[0].quarantine
    assert quarantine is not None and quarantine.read_bytes() == damaged
    assert gzip.decompress(first.read_bytes())  # a whole gzip stream again
    again = Spool(tmp_path)
    assert numbers(again.read()) == read
    assert again.damage == []


# -- segments written before blocks checked their header ----------------------------------


def legacy_block(first: int, payloads: list[bytes], times: list[int]) -> bytes:
    """A block as lakeflow wrote it before the header check: the body ends at the payloads."""
    body = b"".join(
        (array("I", map(len, payloads)).tobytes(), array("q", times).tobytes(), *payloads)
    )
    return HEADER.pack(MAGIC, first, len(payloads), len(body), zlib.crc32(body)) + body


def test_a_damaged_legacy_segment_is_read_past_its_damage(tmp_path, owner):
    segment = tmp_path / f"{1:020d}.spool"
    segment.write_bytes(
        b"".join(
            legacy_block(f, payloads(f, PER_BLOCK), [0] * PER_BLOCK) for f in range(1, 301, 10)
        )
    )
    offsets = block_offsets(segment.read_bytes())
    flip(segment, offsets[11] - 3)
    spool = owner(tmp_path)
    assert numbers(spool.read()) == [n for n in range(1, 301) if not 101 <= n <= 110]
    assert [(d.start, d.end, d.payloads) for d in spool.damage] == [(offsets[10], offsets[11], 10)]
