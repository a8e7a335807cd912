"""One process per source, and state files only their owner can read.

A source's state folder (``<state_dir>/<source>``: its spool, its lock) belongs to one
process at a time: ``lakeflow run`` collecting it, or ``lakeflow replay`` writing its
sequences. The owner holds an exclusive ``flock`` on ``<folder>/lock``, which holds its
pid for the message another process gets. The kernel releases a ``flock`` when its
holder exits, however it exits, so a crash leaves no stale lock behind.

State files carry what a feed received and where (URLs may hold credentials), so they
are created readable by their owner only: folders 0700, files 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from lakeflow.errors import LakeflowError

#: Mode of every folder and file lakeflow creates under ``state_dir``.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: The lock file's name in a source's state folder (the spool used it before this module).
LOCK_NAME = "lock"


class SourceLocked(LakeflowError, RuntimeError):
    """Another process holds this source's lock: the source is already being collected."""

    def __init__(self, source: str, holder: str | None, path: Path) -> None:
        by = f"pid {holder}" if holder else "another process"
        super().__init__(
            f"source {source!r} is already collected by {by} (lock {path}); stop that one first"
        )
        self.source = source
        self.holder = holder
        self.path = path


def private_dir(folder: Path, *, tighten: bool = True) -> None:
    """Create ``folder`` and its missing parents with mode 0700.

    ``tighten``: also set 0700 on a ``folder`` that exists already (one lakeflow made
    before it created them private). Parents that exist are never changed: the state
    folder may sit in a folder the user shares on purpose.
    """
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=PRIVATE_DIR)
        _chmod(path, PRIVATE_DIR)
    if tighten and not missing:
        _chmod(folder, PRIVATE_DIR)


def _chmod(path: Path, mode: int) -> None:
    # mkdir's and open's mode pass through the umask (which may be anything): set it as
    # meant. Best effort: a filesystem without modes (a FAT stick) refuses, and has no
    # other users to hide from either.
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


def write_private(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` atomically (a temporary file, then a rename), 0600.

    The temporary file is private from its creation on, so that no reader ever sees the
    content under a wider mode, not even for the moment before the rename.
    """
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    # Not through a symlink someone put there: the state folder may be a shared one.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(temporary, flags, PRIVATE_FILE)
    try:
        try:
            # The mode on create passes through the umask, and a temporary file left by a
            # crash keeps its old mode: set it on the open file (best effort, as _chmod).
            with contextlib.suppress(OSError):
                os.fchmod(fd, PRIVATE_FILE)
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


class SourceLock:
    """The exclusive lock on one source's state folder, for the life of a run or replay.

    ``folder`` is the source's state folder (``Pipeline.spool_dir(source)``). Usable as a
    context manager; :meth:`acquire` raises :class:`SourceLocked` naming the holder's pid.
    While held, :attr:`fd` is the open lock file (a spool holds the folder through it:
    ``Spool.adopt_lock``).
    """

    def __init__(self, folder: Path, source: str | None = None) -> None:
        self.folder = folder
        self.source = folder.name if source is None else source
        self.path = folder / LOCK_NAME
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        """True between :meth:`acquire` and :meth:`release`."""
        return self.fd is not None

    def acquire(self) -> SourceLock:
        """Take the lock, or raise :class:`SourceLocked` at once if another process has it.

        Raises OSError when the folder or the lock file cannot be made (a read-only
        ``state_dir``): running unguarded could let two collectors fight over one source.
        """
        if self.fd is not None:
            return self
        private_dir(self.folder)
        # Not O_TRUNC: the file holds the holder's pid until this process holds the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
        try:
            # A lock file made by an older lakeflow (0644), or through a loose umask.
            with contextlib.suppress(OSError):
                os.fchmod(fd, PRIVATE_FILE)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or None
            os.close(fd)
            raise SourceLocked(self.source, holder, self.path) from None
        except BaseException:
            os.close(fd)
            raise
        # The pid only tells a person (or the next process refused) who holds the lock:
        # a full disk must not stop the start.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Let the lock go. The file stays: unlinking it would race a process opening it."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SourceLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
