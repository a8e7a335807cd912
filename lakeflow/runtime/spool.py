"""The spool: every received payload on local disk before it counts as received.

A source instance's spool is a folder of segment files named by the sequence number
of their first payload. A segment is a run of blocks; the runtime writes one block per
event-loop tick (every payload that arrived during that tick), in one ``write`` call:

    header  magic "LFS1", first sequence (u64), count (u32), body length (u32), crc32 (u32)
    body    count x u32 payload lengths, count x i64 receipt times (ns), the payloads

A process killed mid-write leaves at most a torn last block, which the crc rejects on
the next start; every whole block is replayed. The page cache survives a process
crash, so nothing written is lost then; ``fsync_interval`` bounds the loss on power
failure. Blocks carry their first sequence, so a block that could not be written (disk
full) leaves a hole rather than shifting the numbering.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import itertools
import logging
import os
import shutil
import struct
import time
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MAGIC = b"LFS1"
HEADER = struct.Struct("<4sQIII")
SUFFIX = ".spool"


class SpoolLocked(RuntimeError):
    """Another process is using this source's spool (the same source is already running)."""


@dataclass(frozen=True)
class Block:
    """Payloads as read back from the spool."""

    first: int
    payloads: list[bytes]
    times: array  # ns since the epoch, one per payload

    @property
    def last(self) -> int:
        return self.first + len(self.payloads) - 1


def encode_block(first: int, payloads: Sequence[bytes], times: Sequence[int]) -> bytes:
    """One block holding ``payloads`` with sequences ``first, first + 1, ...``."""
    lengths = array("I", map(len, payloads))
    stamps = array("q", times)
    body = b"".join((lengths.tobytes(), stamps.tobytes(), *payloads))
    return HEADER.pack(MAGIC, first, len(payloads), len(body), zlib.crc32(body)) + body


def read_blocks(data: bytes) -> tuple[list[Block], int]:
    """Decode blocks from ``data``; returns them and the length of the valid prefix."""
    blocks: list[Block] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, first, count, size, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        body = data[start : start + size]
        if magic != MAGIC or len(body) != size or zlib.crc32(body) != crc or size < count * 12:
            break
        lengths = array("I")
        lengths.frombytes(body[: 4 * count])
        times = array("q")
        times.frombytes(body[4 * count : 12 * count])
        payloads = []
        position = 12 * count
        for length in lengths:
            payloads.append(body[position : position + length])
            position += length
        blocks.append(Block(first, payloads, times))
        offset = start + size
    return blocks, offset


def _first_sequence(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


class Spool:
    """The segment files of one source instance, in ``folder``.

    Not thread-safe: the event loop appends; trimming and fsync happen from the loop too
    (fsync is offloaded by the caller when it matters).
    """

    def __init__(
        self,
        folder: Path,
        *,
        segment_bytes: int = 64 << 20,
        keep_raw: bool = False,
    ) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.keep_raw = keep_raw
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._lock_fd: int | None = None
        self._failing_since: float | None = None
        self.unspooled = 0  # payloads that could not be written (disk full)

    # -- opening and recovery ---------------------------------------------------------

    def lock(self) -> None:
        """Take the folder for this process; raise :class:`SpoolLocked` if another has it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SpoolLocked(
                f"spool {self.folder} is in use by pid {owner}: is this source already running?"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def segments(self) -> list[Path]:
        """Segment files, oldest first (compressed ones included)."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if p.name.endswith((SUFFIX, SUFFIX + ".gz"))]
        return sorted(found, key=_first_sequence)

    def read(self, after: int = 0) -> Iterator[Block]:
        """Every spooled payload with a sequence above ``after``, oldest first.

        A torn tail (a crash mid-write) is skipped, and cut off the file when this process
        holds the lock (so that appends stay clean); a reader without the lock changes
        nothing, since the owner may be writing that tail right now.
        """
        for path in self.segments():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as handle:
                data = handle.read()
            blocks, valid = read_blocks(data)
            if valid < len(data) and path.suffix != ".gz" and self._lock_fd is not None:
                logger.warning(
                    "spool %s: %d torn bytes at the end (a crash mid-write) discarded",
                    path.name,
                    len(data) - valid,
                )
                with open(path, "r+b") as handle:
                    handle.truncate(valid)
            for block in blocks:
                if block.last <= after:
                    continue
                if block.first <= after:
                    skip = after - block.first + 1
                    block = Block(after + 1, block.payloads[skip:], block.times[skip:])
                yield block

    def last_received(self) -> int | None:
        """Receipt time (ns) of the newest spooled payload, None if the spool is empty."""
        for path in reversed(self.segments()):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as handle:
                blocks, _ = read_blocks(handle.read())
            if blocks and blocks[-1].times:
                return max(blocks[-1].times)
        return None

    def last_sequence(self) -> int:
        """The highest sequence in the spool, 0 when it is empty."""
        last = 0
        for block in self.read():
            last = max(last, block.last)
        return last

    # -- appending ----------------------------------------------------------------------

    def append(self, first: int, payloads: Sequence[bytes], times: Sequence[int]) -> bool:
        """Write one block. False (and logged) when the disk refused it; the caller goes on."""
        if not payloads:
            return True
        now = time.monotonic()
        if self._failing_since is not None and now - self._failing_since < 1.0:
            self.unspooled += len(payloads)
            return False
        block = encode_block(first, payloads, times)
        try:
            if self._fd is None or self._size >= self.segment_bytes:
                self._rotate(first)
            assert self._fd is not None
            written = os.write(self._fd, block)
            if written != len(block):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            self._undo_partial()
            self.unspooled += len(payloads)
            if self._failing_since is None:
                logger.error(
                    "cannot write the spool in %s (%s): payloads are held in memory and "
                    "committed directly until the disk accepts writes again",
                    self.folder,
                    exc.strerror or exc,
                )
            self._failing_since = now
            return False
        self._size += len(block)
        if self._failing_since is not None:
            logger.warning("spool %s writable again", self.folder)
            self._failing_since = None
        return True

    def _undo_partial(self) -> None:
        # A partial block would hide every block written after it: cut it off.
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
                os.lseek(self._fd, self._size, os.SEEK_SET)

    def _rotate(self, first: int) -> None:
        previous = self._path
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path = self.folder / f"{first:020d}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        if previous is not None and self.keep_raw:
            self._compress(previous)

    def _compress(self, path: Path) -> None:
        target = path.with_name(path.name + ".gz")
        with open(path, "rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        path.unlink()

    def fsync(self) -> None:
        """Flush the active segment to the device (bounds the loss on power failure)."""
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)

    # -- trimming -----------------------------------------------------------------------

    def trim(self, committed: int) -> int:
        """Delete closed segments whose payloads are all committed; returns how many.

        With ``keep_raw`` the spool is a raw capture and nothing is deleted.
        """
        if self.keep_raw:
            return 0
        segments = self.segments()
        removed = 0
        for current, following in itertools.pairwise(segments):
            # A segment ends where the next begins; the active (last) one is never removed.
            if _first_sequence(following) - 1 <= committed and current != self._path:
                current.unlink(missing_ok=True)
                removed += 1
        return removed

    def close(self) -> None:
        """Close the active segment and release the folder."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
