"""The spool: every received payload on local disk before it counts as received.

A source instance's spool is a folder of segment files named by the sequence number
of their first payload (``{first:020d}.spool``; ``.spool.gz`` once compressed, with
``keep_raw``). A segment is a run of blocks; the runtime writes one block per event-loop
tick (every payload that arrived during that tick), in one ``write`` call:

    header  magic "LFS1", first sequence (u64), count (u32), body length (u32), crc32 (u32)
    body    count x u32 payload lengths, count x i64 receipt times (ns), the payloads,
            then a check of the header: tag "LFSH", crc32 of the header's first 20 bytes

The body's crc32 covers the check, and the check covers the header's sequence, count and
length, so a flipped bit anywhere in a block is caught: without it, a flip in the first
sequence passes the crc and renumbers the block's payloads (and a payload numbered at or
below what the tables hold is skipped as committed). Blocks written before the check was
added (they end at their last payload) are read as before; and since the check sits
after the payloads, where those older readers do not look, they read new blocks too.

A process killed mid-write leaves at most a torn last block (shorter than its header
says), which is skipped on the next start and cut off by the owner; every whole block is
replayed. The page cache survives a process crash, so nothing written is lost then;
``fsync_interval`` bounds the loss on power failure.

Damage is another matter: a block that fails its checks with more of the segment after
it, or with all of its declared bytes present, is corruption (a disk, a filesystem, a
person). Reading skips to the next whole block (magic, sizes, crc, trailer and sequences
all agreeing), so only the damaged bytes are lost, and records each damaged range in
:attr:`Spool.damage` with the payloads it cost, counted from the sequence numbers around
it. The owner (holding the lock) copies the damaged bytes aside, to a
``<segment>.<start>-<end>.damaged`` file beside the segments, and rewrites the segment
without them, so that the next start does not find them again.

A write the disk refuses (full, ENOSPC) is cut back off the segment at once, so the
segment stays readable, and :meth:`Spool.append` says False instead of raising: the
caller keeps those payloads and offers them again, with the ones after them, once
``RETRY_SECONDS`` have passed. Blocks carry their first sequence, so payloads that were
committed before the disk took them leave a hole rather than shifting the numbering.

Raw payloads are private: the folder is 0700, every file in it 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import filecmp
import gzip
import itertools
import logging
import os
import re
import stat
import struct
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lakeflow.errors import LakeflowError

logger = logging.getLogger(__name__)

MAGIC = b"LFS1"
HEADER = struct.Struct("<4sQIII")
#: The header without its crc: what the trailer's check covers.
CHECKED = struct.Struct("<4sQII")
TRAILER = struct.Struct("<4sI")
TRAILER_TAG = b"LFSH"
SUFFIX = ".spool"
#: A segment's name; nothing else in the folder is read as one.
SEGMENT_NAME = re.compile(r"\d{20}\.spool(\.gz)?")
LOCK_NAME = "lock"
#: Damaged bytes copied aside by the owner, kept for a person to look at.
DAMAGED_SUFFIX = ".damaged"
#: A file being written (a compressed copy, a rewritten segment, a quarantine file),
#: renamed into place once whole; one left by a crash is removed when the lock is taken.
PARTIAL_SUFFIX = ".partial"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: After the disk refused a write, appends are not tried again for this long: a full
#: disk is told once, not once per event-loop tick.
RETRY_SECONDS = 1.0
_CHUNK = 1 << 20


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


@dataclass(frozen=True)
class Damage:
    """A range of a segment that could not be read, and the payloads it cost.

    ``start`` and ``end`` (exclusive) are byte offsets in the segment as it was when the
    damage was found (the owner then rewrites it without them); for a ``.gz`` segment,
    offsets in its decompressed stream. ``cause`` is the check the first block there
    failed: "bad magic", "crc mismatch", "header mismatch", "impossible sizes", "block
    cut short", "sequence out of order", or the gzip stream's error. ``payloads``
    counts the sequence numbers between the whole blocks around the range (the next
    segment's name stands in when the range runs to the end of its segment); None when
    nothing follows to count to, the end of the newest segment. It may include payloads
    at or below a ``read(after=...)``, which the tables already hold, and a hole a full
    disk left (payloads committed but never spooled). ``first_sequence`` and
    ``last_sequence`` bound them (None when unknown, or when none were lost).
    ``quarantine`` is the file holding the damaged bytes (the whole original file, for a
    ``.gz`` segment), None when they were not copied aside (a reader without the lock,
    or a failed copy). ``reason`` says it all in one sentence.
    """

    segment: str
    start: int
    end: int
    cause: str
    payloads: int | None
    first_sequence: int | None
    last_sequence: int | None
    quarantine: Path | None
    reason: str


def encode_block(first: int, payloads: Sequence[bytes], times: Sequence[int]) -> bytes:
    """One block holding ``payloads`` with sequences ``first, first + 1, ...``."""
    lengths = array("I", map(len, payloads))
    stamps = array("q", times)
    size = 12 * len(payloads) + sum(lengths) + TRAILER.size
    checked = CHECKED.pack(MAGIC, first, len(payloads), size)
    trailer = TRAILER.pack(TRAILER_TAG, zlib.crc32(checked))
    body = b"".join((lengths.tobytes(), stamps.tobytes(), *payloads, trailer))
    return checked + struct.pack("<I", zlib.crc32(body)) + body


def _header_fault(magic: bytes, count: int, size: int) -> str | None:
    if magic != MAGIC:
        return "bad magic"
    if count == 0 or 12 * count > size:  # a block holds at least one payload
        return "impossible sizes"
    return None


def _decode(header: bytes | memoryview, body: bytes | memoryview) -> Block | str:
    """The block ``header`` + ``body`` hold, or why they are not one."""
    magic, first, count, size, crc = HEADER.unpack(header)
    fault = _header_fault(magic, count, size)
    if fault is not None:
        return fault
    if len(body) != size:
        return "block cut short"
    if zlib.crc32(body) != crc:
        return "crc mismatch"
    lengths = array("I")
    lengths.frombytes(body[: 4 * count])
    extra = size - 12 * count - sum(lengths)
    if extra == TRAILER.size:
        tag, check = TRAILER.unpack_from(body, size - TRAILER.size)
        if tag != TRAILER_TAG or check != zlib.crc32(header[: CHECKED.size]):
            return "header mismatch"
    elif extra != 0:  # 0: a block from before the trailer
        return "impossible sizes"
    times = array("q")
    times.frombytes(body[4 * count : 12 * count])
    payloads = []
    position = 12 * count
    for length in lengths:
        payloads.append(bytes(body[position : position + length]))
        position += length
    return Block(first, payloads, times)


def read_blocks(data: bytes) -> tuple[list[Block], int]:
    """Decode blocks from ``data``; returns them and the length of the valid prefix."""
    blocks: list[Block] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        start = offset + HEADER.size
        size = HEADER.unpack_from(data, offset)[3]
        decoded = _decode(data[offset:start], data[start : start + size])
        if isinstance(decoded, str):
            break
        blocks.append(decoded)
        offset = start + size
    return blocks, offset


def _first_sequence(path: Path) -> int:
    return int(path.name[:20])


def _own_file(name: str) -> bool:
    """A file the spool makes beside its segments (never read as one)."""
    return name == LOCK_NAME or name.endswith((DAMAGED_SUFFIX, PARTIAL_SUFFIX))


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags, PRIVATE_FILE)
    # The mode on create passes through the umask, and a file that exists keeps its own
    # (0644 from an older lakeflow): set it on the open file. Best effort: a filesystem
    # without modes refuses, and has no other users to hide from either.
    with contextlib.suppress(OSError):
        os.fchmod(fd, PRIVATE_FILE)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    # A full disk takes part of a write and refuses the rest with ENOSPC on the next one.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    # A rename is durable once its folder is: before the original bytes may go.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Stream:
    """A segment's block stream, read front to back: the file, or what its gzip holds.

    ``position`` counts bytes of that stream. A gzip stream that breaks ends there, with
    ``error`` saying why; everything decompressed before the break is read.
    """

    def __init__(self, handle: BinaryIO, compressed: bool) -> None:
        self._handle = handle
        self._inflate = zlib.decompressobj(wbits=31) if compressed else None
        self._input = b""  # compressed bytes read from the file, not yet decompressed
        self._pending = bytearray()  # decompressed, from offset _at on not yet read
        self._at = 0
        self._ended = False
        self.position = 0
        self.error: str | None = None
        #: Bytes in the stream, when known (a raw file): a block's header cannot then
        #: make the reader allocate more than what is left of the file.
        self.size = None if compressed else os.fstat(handle.fileno()).st_size

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        if self._inflate is None:
            data = self._handle.read(n)
        else:
            self._fill(n)
            data = bytes(self._pending[self._at : self._at + n])
            self._at += len(data)
        self.position += len(data)
        return data

    def rest(self) -> bytes:
        """Everything left in the stream."""
        if self._inflate is None:
            data = self._handle.read()
        else:
            self._fill(None)
            data = bytes(self._pending[self._at :])
            self._pending, self._at = bytearray(), 0
        self.position += len(data)
        return data

    def resume(self, offset: int, rest: bytes, rest_start: int) -> None:
        """Go on reading at ``offset``, after :meth:`rest` returned ``rest`` from
        ``rest_start`` on (a gzip stream cannot seek back cheaply: what it held is used)."""
        if self._inflate is None:
            self._handle.seek(offset)
        else:
            self._pending, self._at = bytearray(rest[offset - rest_start :]), 0
        self.position = offset

    def skip(self, n: int) -> None:
        """Move ``n`` bytes on."""
        if self._inflate is None:
            self.position += n
            self._handle.seek(self.position)
            return
        while n > 0:
            got = len(self.read(min(n, _CHUNK)))
            if not got:
                return
            n -= got

    def _fill(self, n: int | None) -> None:
        # Decompress until ``n`` bytes are pending (None: all), a chunk at a time, so that
        # reading holds about one block, not the segment.
        if self._at:
            del self._pending[: self._at]
            self._at = 0
        while not self._ended and (n is None or len(self._pending) < n):
            assert self._inflate is not None
            inflate = self._inflate
            data = self._input or self._handle.read(_CHUNK)
            self._input = b""
            if not data:
                self._ended = True
                if not inflate.eof:
                    with contextlib.suppress(zlib.error):  # what it still holds
                        self._pending += inflate.flush()
                    if not inflate.eof:
                        self.error = "gzip stream cut short"
                break
            if inflate.eof:  # another gzip member follows
                inflate = self._inflate = zlib.decompressobj(wbits=31)
            before = inflate.copy()
            try:
                self._pending += inflate.decompress(data, _CHUNK)
            except zlib.error as exc:
                # The bytes that broke it are somewhere in this chunk: decompress it again
                # a little at a time, to keep all that comes before them.
                self._pending += _salvage(before, data)
                self._ended = True
                self.error = f"gzip stream corrupt: {exc}"
                break
            self._input = inflate.unused_data if inflate.eof else inflate.unconsumed_tail


def _salvage(inflate: zlib._Decompress, data: bytes) -> bytes:
    """What ``inflate`` makes of ``data`` before the bytes it fails on."""
    out = bytearray()
    for at in range(0, len(data), 256):
        try:
            out += inflate.decompress(data[at : at + 256])
        except zlib.error:
            break
        if inflate.eof:
            break
    return bytes(out)


@dataclass(frozen=True)
class _Fault:
    """Bytes ``start``..``end`` of a stream that hold no whole block."""

    start: int
    end: int
    cause: str
    torn: bool  # what a kill mid-write leaves: the last block cut short, nothing after it
    before: int  # the last sequence before the range
    after: int | None  # the first sequence after it, None if nothing follows


def _resync(rest: bytes, before: int, following: int | None) -> tuple[int, int] | None:
    """The offset in ``rest`` (after 0) of the first whole block with sequences between
    ``before`` and ``following``, and its first sequence; None if there is none."""
    view = memoryview(rest)
    at = rest.find(MAGIC, 1)
    while at != -1 and at + HEADER.size <= len(rest):
        _, first, count, size, _ = HEADER.unpack_from(rest, at)
        body = at + HEADER.size
        if (
            before < first
            and (following is None or first + count - 1 < following)
            and body + size <= len(rest)
            and isinstance(_decode(view[at:body], view[body : body + size]), Block)
        ):
            return at, first
        at = rest.find(MAGIC, at + 1)
    return None


def _scan(
    stream: _Stream, first: int, following: int | None
) -> Iterator[tuple[int, int, Block] | _Fault]:
    """The whole blocks of a segment (start, end, block) and the faults between them.

    ``first`` is the segment's first sequence (its name), ``following`` the next
    segment's: a block's sequences must lie between the previous block's and that.
    """
    before = first - 1
    while True:
        start = stream.position
        header = stream.read(HEADER.size)
        if not header:
            if stream.error is not None:  # a gzip stream broke right after a whole block
                yield _Fault(start, start, stream.error, False, before, following)
            return
        body = b""
        torn = False
        if len(header) < HEADER.size:
            cause = "block cut short"
            torn = MAGIC.startswith(header[: len(MAGIC)])  # a prefix of a header
        else:
            magic, _, count, size, _ = HEADER.unpack(header)
            fault = _header_fault(magic, count, size)
            if fault is not None:
                cause = fault
            elif stream.size is not None and size > stream.size - stream.position:
                cause, torn = "impossible sizes", True
            else:
                body = stream.read(size)
                decoded = _decode(header, body)
                if isinstance(decoded, Block):
                    if before < decoded.first and (following is None or decoded.last < following):
                        yield start, stream.position, decoded
                        before = decoded.last
                        continue
                    cause = "sequence out of order"
                else:
                    cause = decoded
                    torn = len(body) < size
        # No whole block at ``start``: look for the next one in the rest of the segment
        # (the only time a reader holds more than a block).
        rest = header + body + stream.rest()
        found = _resync(rest, before, following)
        if stream.error is not None:
            # A gzip stream that broke lost bytes, which no crash does: damage, and the
            # reason a block was cut short.
            if torn:
                cause = stream.error
            elif found is None:
                cause = f"{cause}, then {stream.error}"
            torn = False
        if found is None:
            yield _Fault(start, start + len(rest), cause, torn, before, following)
            return
        offset, first_after = found
        yield _Fault(start, start + offset, cause, False, before, first_after)
        stream.resume(start + offset, rest, start)


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
        #: Every damaged range :meth:`read` has found, in the order found, each once per
        #: instance. The spool never clears it: the caller takes the entries (and may
        #: clear the list), since the owner repairs what it found, so a second read
        #: would not find it again.
        self.damage: list[Damage] = []
        self._found: set[tuple[str, int, int]] = set()
        self._warned: set[str] = set()  # file names warned about, once each

    # -- opening and recovery ---------------------------------------------------------

    def lock(self) -> None:
        """Take the folder for this process; raise :class:`SpoolLocked` if another has it."""
        self._private_folder()
        fd = _open_private(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT)
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
        self._remove_partials()

    def adopt_lock(self, fd: int) -> None:
        """Hold the folder through a lock this process already holds on it (its ``fd``).

        The spool keeps a duplicate, which :meth:`close` closes; the lock itself lasts as
        long as ``fd`` is open.
        """
        self._lock_fd = os.dup(fd)
        self._remove_partials()

    def _remove_partials(self) -> None:
        # Files a crash left half-written: with the lock held, nobody is writing them.
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                if path.name.endswith(PARTIAL_SUFFIX):
                    path.unlink(missing_ok=True)

    def _private_folder(self) -> None:
        self.folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        # One made by an older lakeflow (or by hand) may be open to others: close it.
        with contextlib.suppress(OSError):
            if stat.S_IMODE(self.folder.stat().st_mode) & 0o077:
                os.chmod(self.folder, PRIVATE_DIR)

    def _warn_once(self, name: str, message: str, *args: object) -> None:
        if name not in self._warned:
            self._warned.add(name)
            logger.warning(message, *args)

    def segments(self) -> list[Path]:
        """Segment files, oldest first (compressed ones included).

        Only names like ``00000000000000000001.spool(.gz)`` are segments; any other file
        (but the spool's own) is skipped, with a warning naming it.
        """
        if not self.folder.is_dir():
            return []
        found: dict[int, Path] = {}
        for path in self.folder.iterdir():
            name = path.name
            if SEGMENT_NAME.fullmatch(name):
                first = _first_sequence(path)
                other = found.setdefault(first, path)
                if other is not path:
                    # X.spool and X.spool.gz: a compression was cut short between writing
                    # the copy and deleting the original. Both hold the same blocks: read
                    # the original once (reading both would replay every payload twice).
                    raw, copy = (other, path) if name.endswith(".gz") else (path, other)
                    found[first] = raw
                    self._warn_once(
                        copy.name,
                        "spool %s: %s duplicates %s (a compression cut short); reading %s",
                        self.folder,
                        copy.name,
                        raw.name,
                        raw.name,
                    )
            elif not _own_file(name):
                self._warn_once(
                    name, "spool %s: %s is not a spool segment; skipped", self.folder, name
                )
        return [found[first] for first in sorted(found)]

    def read(self, after: int = 0) -> Iterator[Block]:
        """Every spooled payload with a sequence above ``after``, oldest first.

        Streams block by block. A torn tail (a crash mid-write) is skipped, and cut off
        the file when this process holds the lock (so that appends stay clean). A damaged
        range is skipped too, to the next whole block, and added to :attr:`damage` (and
        logged as an error); the owner copies its bytes aside and rewrites the segment
        without them. A reader without the lock changes nothing, since the owner may be
        writing that tail right now.
        """
        segments = self.segments()
        for index, path in enumerate(segments):
            following = _first_sequence(segments[index + 1]) if index + 1 < len(segments) else None
            if following is not None and following - 1 <= after:
                continue  # every payload in it is at or below ``after``
            for block in self._read_segment(path, following):
                if block.last <= after:
                    continue
                if block.first <= after:
                    skip = after - block.first + 1
                    block = Block(after + 1, block.payloads[skip:], block.times[skip:])
                yield block

    def _read_segment(self, path: Path, following: int | None) -> Iterator[Block]:
        compressed = path.name.endswith(".gz")
        owner = self._lock_fd is not None
        try:
            handle = open(path, "rb")  # noqa: SIM115 (held across the yields below)
        except FileNotFoundError:
            return  # trimmed by its owner since it was listed (this reader has no lock)
        kept: list[list[int]] = []  # [start, end) of whole blocks, neighbours merged
        faults = 0
        copied = True  # every damaged range is quarantined: the segment may be rewritten
        torn: _Fault | None = None
        copy: Path | None = None  # a compressed segment's quarantine: the whole file
        with handle:
            stream = _Stream(handle, compressed)
            for item in _scan(stream, _first_sequence(path), following):
                if isinstance(item, _Fault):
                    if item.torn:
                        torn = item
                        continue
                    faults += 1
                    quarantine, problem = None, None
                    if owner:
                        try:
                            if not compressed:
                                quarantine = self._quarantine_range(path, handle, item)
                            else:
                                copy = copy or self._quarantine_file(path, item)
                                quarantine = copy
                        except OSError as exc:
                            problem = exc.strerror or str(exc)
                            copied = False
                    self._record(path, item, quarantine, problem)
                    continue
                start, end, block = item
                if kept and kept[-1][1] == start:
                    kept[-1][1] = end
                else:
                    kept.append([start, end])
                yield block
        if not owner:
            return
        if faults:
            # Only once every damaged range is copied aside may its bytes leave the segment.
            cut = copied and self._rewrite(path, compressed, [(a, b) for a, b in kept])
        elif torn is not None and not compressed:  # a gzip stream is not rewritten for it
            cut = True
            valid = kept[-1][1] if kept else 0
            with open(path, "r+b") as segment:
                segment.truncate(valid)
            if path == self._path:
                self._size = valid
        else:
            return
        if torn is not None and cut:
            logger.warning(
                "spool %s: %d torn bytes at the end (a crash mid-write) discarded",
                path.name,
                torn.end - torn.start,
            )

    def _record(
        self, path: Path, fault: _Fault, quarantine: Path | None, problem: str | None
    ) -> None:
        """Add ``fault`` to :attr:`damage` (and log it), unless it was found before."""
        key = (path.name, fault.start, fault.end)
        if key in self._found:
            return
        self._found.add(key)
        payloads: int | None = None
        first: int | None = fault.before + 1
        last: int | None = None
        lost = f"an unknown number of payloads (sequences from {first} on)"
        if fault.after is not None:
            payloads, last = fault.after - fault.before - 1, fault.after - 1
            if payloads == 0:
                first = last = None
                lost = "no payloads"
            elif payloads == 1:
                lost = f"1 payload (sequence {first})"
            else:
                lost = f"{payloads} payloads (sequences {first}..{last})"
        where = "" if not path.name.endswith(".gz") else " of its decompressed stream"
        if quarantine is not None:
            kept = f"the bytes are in {quarantine}"
            if path.name.endswith(".gz"):
                kept = f"the segment as it was is in {quarantine}"
        elif problem is not None:
            kept = f"the bytes stay in the segment (copying them aside failed: {problem})"
        else:
            kept = "the bytes stay in the segment (this reader does not hold the spool's lock)"
        reason = (
            f"spool damaged: segment {path.name} bytes {fault.start}..{fault.end}{where} "
            f"unreadable ({fault.cause}), {lost} lost; {kept}"
        )
        self.damage.append(
            Damage(
                segment=path.name,
                start=fault.start,
                end=fault.end,
                cause=fault.cause,
                payloads=payloads,
                first_sequence=first,
                last_sequence=last,
                quarantine=quarantine,
                reason=reason,
            )
        )
        logger.error("%s (spool %s)", reason, self.folder)

    def _quarantine_range(self, path: Path, handle: BinaryIO, fault: _Fault) -> Path:
        """Copy bytes ``fault.start``..``fault.end`` of a raw segment aside."""
        target = path.with_name(f"{path.name}.{fault.start}-{fault.end}{DAMAGED_SUFFIX}")

        def write(fd: int) -> None:
            offset = fault.start
            while offset < fault.end:
                chunk = os.pread(handle.fileno(), min(_CHUNK, fault.end - offset), offset)
                if not chunk:
                    raise OSError(errno.EIO, "segment shorter than when it was read")
                _write_all(fd, chunk)
                offset += len(chunk)

        return self._write_aside(target, write)

    def _quarantine_file(self, path: Path, fault: _Fault) -> Path:
        """Copy a compressed segment aside, whole: a range of a gzip stream is no file."""
        target = path.with_name(f"{path.name}.{fault.start}-{fault.end}{DAMAGED_SUFFIX}")

        def write(fd: int) -> None:
            with open(path, "rb") as source:
                while chunk := source.read(_CHUNK):
                    _write_all(fd, chunk)

        return self._write_aside(target, write)

    def _write_aside(self, target: Path, write: Callable[[int], None]) -> Path:
        """A new private file named like ``target`` with what ``write`` writes, durable.

        Never replaces another file: an identical one (the same damage, found by an
        earlier read that did not get to rewrite the segment) is used instead, a
        different one gets a numbered name beside it.
        """
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            fd = _open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                write(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            stem, number, candidate = target.name.removesuffix(DAMAGED_SUFFIX), 1, target
            while candidate.exists():
                if filecmp.cmp(partial, candidate, shallow=False):
                    partial.unlink()
                    return candidate
                number += 1
                candidate = target.with_name(f"{stem}.{number}{DAMAGED_SUFFIX}")
            os.replace(partial, candidate)  # nobody else writes here: we hold the lock
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_folder(self.folder)
        return candidate

    def _rewrite(self, path: Path, compressed: bool, kept: list[tuple[int, int]]) -> bool:
        """Replace ``path`` with only its ``kept`` byte ranges (its whole blocks); False
        (logged) if that failed, leaving it as it was.

        Through a temporary name, fsynced before the rename: a crash leaves either the
        old segment (its damage found again) or the new one, never a mix.
        """
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        try:
            fd = _open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with open(fd, "wb") as out, open(path, "rb") as source:
                packer = (
                    gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) if compressed else None
                )
                write = out.write if packer is None else packer.write
                stream = _Stream(source, compressed)
                for start, end in kept:
                    stream.skip(start - stream.position)
                    while stream.position < end:
                        chunk = stream.read(min(_CHUNK, end - stream.position))
                        if not chunk:
                            raise OSError(errno.EIO, "segment shorter than when it was read")
                        write(chunk)
                if packer is not None:
                    packer.close()
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            logger.warning(
                "spool %s: %s not rewritten without its damaged bytes (%s); they are "
                "found, and reported, again at the next start",
                self.folder,
                path.name,
                exc.strerror or exc,
            )
            return False
        _fsync_folder(self.folder)
        if path == self._path and self._fd is not None:
            # Appends must go to the new file, not to the one the rename unlinked.
            os.close(self._fd)
            self._fd = None
            with contextlib.suppress(OSError):
                self._fd = _open_private(path, os.O_WRONLY | os.O_APPEND)
                self._size = os.fstat(self._fd).st_size
        return True

    def last_received(self) -> int | None:
        """Receipt time (ns) of the newest spooled payload, None if the spool is empty.

        Reads only, past any damage (which :meth:`read` reports).
        """
        segments = self.segments()
        for index in reversed(range(len(segments))):
            path = segments[index]
            following = _first_sequence(segments[index + 1]) if index + 1 < len(segments) else None
            last: Block | None = None
            try:
                handle = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                continue
            with handle:
                stream = _Stream(handle, path.name.endswith(".gz"))
                for item in _scan(stream, _first_sequence(path), following):
                    if not isinstance(item, _Fault):
                        last = item[2]
            if last is not None and last.times:
                return max(last.times)
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
        self._private_folder()
        path = self.folder / f"{first:020d}{SUFFIX}"
        fd = _open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        size = os.fstat(fd).st_size
        if size:
            # Only a segment given up by _undo_partial is opened again: cut its torn tail
            # (after its last whole block; damage before that stays, for read to report).
            size = 0
            try:
                with open(path, "rb") as handle:
                    for item in _scan(_Stream(handle, False), first, None):
                        if not isinstance(item, _Fault):
                            size = item[1]
                os.ftruncate(fd, size)
            except OSError:
                os.close(fd)
                raise
        self._fd, self._path, self._size = fd, path, size

    def _compress(self, path: Path) -> None:
        # Through a temporary name (not a segment name), so a full disk leaves no torn
        # .gz beside the segment: the segment then simply stays uncompressed.
        target = path.with_name(path.name + ".gz")
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            fd = _open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with (
                open(fd, "wb") as out,
                gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as dst,
                open(path, "rb") as src,
            ):
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
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

        With ``keep_raw`` the spool is a raw capture and nothing is deleted. Quarantined
        damage (``*.damaged``) is never deleted: it is for a person to look at.
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
