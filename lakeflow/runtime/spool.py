"""The spool: every received payload on local disk before it counts as received.

A source instance's spool is a folder of segment files named by the sequence number
of their first payload. A segment is a run of blocks; the runtime writes one block per
event-loop tick (every payload that arrived during that tick), in one ``write`` call:

    header  magic "LFS1", first sequence (u64), count (u32), body length (u32), crc32 (u32)
    body    count x u32 payload lengths, count x i64 receipt times (ns), the payloads

A process killed mid-write leaves at most a torn last block, which the crc rejects on
the next start; every whole block is replayed. The page cache survives a process
crash, so nothing written is lost then; ``fsync_interval`` bounds the loss on power
failure.

A write the disk refuses (full, ENOSPC) is cut back off the segment at once, so the
segment stays readable, and :meth:`Spool.append` says False instead of raising: the
caller keeps those payloads and offers them again, with the ones after them, once
``RETRY_SECONDS`` have passed. Blocks carry their first sequence, so payloads that were
committed before the disk took them leave a hole rather than shifting the numbering.
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

from lakeflow.errors import LakeflowError

logger = logging.getLogger(__name__)

MAGIC = b"LFS1"
HEADER = struct.Struct("<4sQIII")
SUFFIX = ".spool"
#: After the disk refused a write, appends are not tried again for this long: a full
#: disk is told once, not once per event-loop tick.
RETRY_SECONDS = 1.0


class SpoolLocked(LakeflowError, RuntimeError):
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
        self._failing_since: float | None = None  # monotonic time of the last refused write
        self._failed_at: float | None = None  # when the disk began refusing (for the log)
        self.unspooled = 0  # payloads in appends the disk refused (a retried one counts again)
        self.closed = False  # after close(): a late retry of the buffer must not reopen it

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
        # The pid only tells a person who holds the lock: a full disk must not stop the start.
        with contextlib.suppress(OSError):
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

    @property
    def refusing(self) -> bool:
        """True within ``RETRY_SECONDS`` of a refused write: appends are not tried then."""
        since = self._failing_since
        return since is not None and time.monotonic() - since < RETRY_SECONDS

    def append(self, first: int, payloads: Sequence[bytes], times: Sequence[int]) -> bool:
        """Write one block. False when the disk refused it (logged once); nothing is torn.

        The caller goes on, holding the payloads, and may offer them again.
        """
        if not payloads:
            return True
        if self.refusing:
            self.unspooled += len(payloads)
            return False
        block = encode_block(first, payloads, times)
        try:
            if self._fd is None or self._size >= self.segment_bytes:
                self._rotate(first)
            assert self._fd is not None
            written = os.write(self._fd, block)
            if written != len(block):
                # A short write to a regular file: the disk took what fitted, and is full.
                raise OSError(errno.ENOSPC, "No space left on device (short write)")
        except OSError as exc:
            self._undo_partial()
            self.unspooled += len(payloads)
            now = time.monotonic()
            if self._failed_at is None:
                self._failed_at = now
                logger.error(
                    "cannot write the spool in %s: %s. Payloads are held in memory and "
                    "committed as usual, but those received from now on are not crash-safe "
                    "until they are committed (a crash or kill loses them); retrying every "
                    "%.0fs. Free space on that disk.",
                    self.folder,
                    exc.strerror or exc,
                    RETRY_SECONDS,
                )
            self._failing_since = now
            return False
        self._size += len(block)
        if self._failed_at is not None:
            logger.warning(
                "spool in %s writable again after %.0fs: the payloads held in memory are "
                "spooled, and crash-safe again",
                self.folder,
                time.monotonic() - self._failed_at,
            )
            self._failing_since = self._failed_at = None
        return True

    def _undo_partial(self) -> None:
        # A partial block would hide every block written after it: cut it off. Should even
        # that fail, the segment is given up (its whole blocks stay readable, the torn tail
        # is cut at the next start) and the next append opens a new one.
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotate(self, first: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self.keep_raw and self._path is not None:
                self._compress(self._path)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{first:020d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(fd).st_size
        if size:
            # Only a segment given up by _undo_partial is opened again: cut its torn tail.
            with open(path, "rb") as handle:
                _, size = read_blocks(handle.read())
            try:
                os.ftruncate(fd, size)
            except OSError:
                os.close(fd)
                raise
        self._fd, self._path, self._size = fd, path, size

    def _compress(self, path: Path) -> None:
        # Through a temporary name (not a segment name), so a full disk leaves no torn
        # .gz beside the segment: the segment then simply stays uncompressed.
        target = path.with_name(path.name + ".gz")
        partial = path.with_name(path.name + ".gz.partial")
        try:
            with open(path, "rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            logger.warning("spool %s left uncompressed: %s", path, exc.strerror or exc)
            return
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
        self.closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
