"""Flood: ~1 MiB WebSocket frames flat out into the real ``lakeflow run``, then a replay.

Two phases, each a real ``lakeflow run`` subprocess in a temporary folder, its memory
sampled every ``--every`` seconds from ``/proc/PID/smaps_rollup``:

1. **flood**: a stand-in (a WebSocket server written on a raw socket, in its own
   process, so that it is never the bottleneck) sends ``--frame-bytes`` text frames as
   fast as the collector reads them, for ``--seconds``; then the collector is stopped
   with SIGTERM.
2. **replay**: ``--replay-mb`` of such frames written to the source's spool (with
   :class:`lakeflow.runtime.spool.Spool`, as the collector writes it) while the tables
   are empty, as a crash leaves it; then ``lakeflow run`` starts (its stream idle) and
   is stopped once the table holds the last spooled sequence.

The source is the test suite's ``test_websocket`` (``tests/plugins``, found by path):
each frame is ``{"n": k, "value": "k.5", "pad": "xxx..."}`` and decodes into one row (the
pad is not a column), so every frame goes through decode and commit. Usage::

    uv run python bench/flood.py [--seconds 30] [--replay-mb 500] [--only flood]

To measure another version of lakeflow with the same script, put its source tree first
on ``PYTHONPATH`` (``PYTHONPATH=/path/to/checkout uv run python bench/flood.py``): the
collector imports ``lakeflow`` from there. See ``bench/README.md``, "flood.py".
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import WS_GUID, _die_with_parent, _Peer, _read_request, text_frame_header  # noqa: E402

LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
#: The test suite's plugin (``test_websocket``), not installed: found by path.
TEST_PLUGINS = str(ROOT / "tests" / "plugins" / "lakeflow_testsource" / "src")
SOURCE = "flood"  # the source instance's name: its spool folder and its app id
TABLE = "test_records"
MIB = 1 << 20
#: Bytes of a frame's payload: ~1 MiB, under the WebSocket source's ``max_size`` (1 MiB,
#: a larger frame drops the connection) whatever the frame's number.
FRAME_BYTES = 1_000_000
#: Frames per spool block in the replay phase: a busy tick's worth at 1 MiB a frame.
BLOCK_FRAMES = 8


# -- the frames -------------------------------------------------------------------------


def frame_prefix(k: int) -> bytes:
    """The start of frame ``k``'s payload, up to the pad."""
    return b'{"n": %d, "value": "%d.5", "pad": "' % (k, k)


def payload(k: int, pad: bytes) -> bytes:
    """Frame ``k``'s whole payload: one ``test_record`` row, and ``pad``."""
    return frame_prefix(k) + pad + b'"}'


def pad_bytes(frame_bytes: int) -> int:
    """The pad that makes a payload ``frame_bytes`` long at most (up to frame 10**12)."""
    return max(0, frame_bytes - len(payload(10**12, b"")))


# -- the stand-in: a WebSocket server on a raw socket -----------------------------------


def _stream(sock: socket.socket, path: str, pad: bytes, sent: Synchronized) -> None:
    """After the upgrade: on ``/flood`` frames flat out until the client leaves, on any
    other path nothing (the client's pings are answered either way)."""
    peer = _Peer(sock)
    threading.Thread(target=peer.read_control, daemon=True).start()
    if path.startswith("/flood"):
        k = 0
        while not peer.done.is_set():
            k += 1
            prefix = frame_prefix(k)
            # The pad is one shared object: a frame costs the sender no 1 MiB copy.
            with peer.send_lock:
                if peer.close_sent:
                    break
                sock.sendall(text_frame_header(len(prefix) + len(pad) + 2) + prefix)
                sock.sendall(pad)
                sock.sendall(b'"}')
            with sent.get_lock():
                sent.value += 1
    peer.done.wait()


def _serve(sock: socket.socket, pad: bytes, sent: Synchronized) -> None:
    try:
        sock.settimeout(600)
        path, headers = _read_request(sock)
        key = headers.get("sec-websocket-key")
        if not key or headers.get("upgrade", "").lower() != "websocket":
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )
        _stream(sock, path, pad, sent)
    except (OSError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def sender_main(pad_bytes: int, sent: Synchronized, conn: Connection) -> None:
    """The stand-in's process: listen on 127.0.0.1, say the port, serve every client."""
    _die_with_parent()
    pad = b"x" * pad_bytes
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    conn.send(listener.getsockname()[1])
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_serve, args=(sock, pad, sent), daemon=True).start()


class Sender:
    """The stand-in's process, killed at the end whatever happens."""

    def __init__(self, frame_bytes: int) -> None:
        ctx = mp.get_context("spawn")
        self.sent: Synchronized = ctx.Value("q", 0)
        receiver, sender = ctx.Pipe(duplex=False)
        pad = pad_bytes(frame_bytes)
        self.process = ctx.Process(
            target=sender_main, args=(pad, self.sent, sender), daemon=True, name="ws-flood"
        )
        self.process.start()
        sender.close()
        if not receiver.poll(60):
            self.stop()
            raise TimeoutError("the stand-in did not start")
        self.port: int = receiver.recv()
        receiver.close()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def frames(self) -> int:
        """Frames sent so far: every one was taken by the collector's socket."""
        return int(self.sent.value)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


# -- the collector and its memory -------------------------------------------------------


def smaps(pid: int) -> dict[str, float]:
    """RSS, USS (Private_Clean + Private_Dirty), PSS and anonymous memory of ``pid``, in MB."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss", "Anonymous", "Private_Clean", "Private_Dirty"):
                values[name] = int(rest.split()[0])
    return {
        "rss": values["Rss"] / 1024,
        "uss": (values["Private_Clean"] + values["Private_Dirty"]) / 1024,
        "pss": values["Pss"] / 1024,
        "anon": values["Anonymous"] / 1024,
    }


@dataclass
class Sampler:
    """Samples a process's memory every ``every`` seconds on a thread; keeps each peak."""

    pid: int
    every: float
    peak: dict[str, float] = field(default_factory=dict)
    timeline: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                sample = smaps(self.pid)
            except (OSError, KeyError):
                return  # the process is gone
            self.timeline.append((time.monotonic() - self._started, sample))
            for name, value in sample.items():
                self.peak[name] = max(self.peak.get(name, 0.0), value)
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def write_pipeline(folder: Path, url: str, sink: dict[str, str]) -> None:
    """The pipeline: one ``test_websocket`` source, the Delta sink, no maintenance."""
    extra = "".join(f"{key} = {value}\n" for key, value in sink.items())
    (folder / "lakeflow.toml").write_text(
        f'[sink]\nuri = "tables"\n{extra}\n'
        '[log]\nlevel = "INFO"\n\n'
        "[maintenance]\nenabled = false\n\n"
        f'[sources.{SOURCE}]\ntype = "test_websocket"\nurl = "{url}"\n'
    )


def start_collector(folder: Path) -> subprocess.Popen[bytes]:
    """``lakeflow run`` in ``folder``, its log in ``folder/run.log``."""
    pythonpath = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), TEST_PLUGINS) if p)
    with open(folder / "run.log", "ab") as log:
        return subprocess.Popen(
            [LAKEFLOW, "run"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONPATH": pythonpath},
        )


def stop_collector(process: subprocess.Popen[bytes], timeout: float = 120.0) -> dict[str, Any]:
    """SIGTERM, then wait: the exit code and how long the stop took (killed past it)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = None
    return {"exit_code": code, "stop_s": time.monotonic() - started}


def committed(folder: Path) -> int:
    """The last sequence the source committed to its table (0: none yet)."""
    try:
        return DeltaTable(str(folder / "tables" / TABLE)).transaction_version(SOURCE) or 0
    except Exception:  # no table yet, or a commit is being written
        return 0


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def log_tail(folder: Path, lines: int = 15) -> str:
    return "\n".join((folder / "run.log").read_text(errors="replace").splitlines()[-lines:])


# -- the two phases ---------------------------------------------------------------------


def flood(args: argparse.Namespace, sender: Sender, root: Path) -> dict[str, Any]:
    """Phase 1: frames flat out for ``--seconds``, then SIGTERM."""
    folder = root / "flood"
    folder.mkdir()
    write_pipeline(folder, sender.url("/flood"), args.sink)
    before = sender.frames
    collector = start_collector(folder)
    sampler = Sampler(collector.pid, args.every)
    try:
        sampler.start()
        if not wait_until(lambda: sender.frames > before or collector.poll() is not None, 60):
            raise RuntimeError(f"no frame read in 60 s; the log:\n{log_tail(folder)}")
        if collector.poll() is not None:
            raise RuntimeError(f"the collector exited; the log:\n{log_tail(folder)}")
        started = time.monotonic()
        baseline = smaps(collector.pid)
        time.sleep(args.seconds)
        frames = sender.frames - before
        elapsed = time.monotonic() - started
        last = smaps(collector.pid)
        stopped = stop_collector(collector)
    finally:
        sampler.stop()
        if collector.poll() is None:
            collector.kill()
            collector.wait()
    return {
        "phase": f"flood {args.seconds:g} s",
        "seconds": elapsed,
        "frames": frames,
        "mb_in": frames * args.frame_bytes / MIB,
        "committed": committed(folder),
        **stopped,
        "baseline": baseline,
        "last": last,
        "peak": sampler.peak,
        "timeline": sampler.timeline,
    }


def fill_spool(folder: Path, frames: int, pad: bytes) -> None:
    """``frames`` payloads in the source's spool, as a crashed collector leaves them."""
    from lakeflow.runtime.spool import Spool

    spool = Spool(folder / "state" / SOURCE)
    spool.lock()
    try:
        for first in range(1, frames + 1, BLOCK_FRAMES):
            count = min(BLOCK_FRAMES, frames + 1 - first)
            payloads = [payload(k, pad) for k in range(first, first + count)]
            spool.append(first, payloads, array("q", [time.time_ns()] * count))
        spool.fsync()
    finally:
        spool.close()


def replay(args: argparse.Namespace, sender: Sender, root: Path) -> dict[str, Any]:
    """Phase 2: start on a spool of ``--replay-mb``, the tables empty; stop once it landed."""
    folder = root / "replay"
    folder.mkdir()
    write_pipeline(folder, sender.url("/quiet"), args.sink)
    frames = max(1, args.replay_mb * MIB // args.frame_bytes)
    fill_spool(folder, frames, b"x" * pad_bytes(args.frame_bytes))
    collector = start_collector(folder)
    sampler = Sampler(collector.pid, args.every)
    started = time.monotonic()
    try:
        sampler.start()
        landed = wait_until(
            lambda: committed(folder) >= frames or collector.poll() is not None, args.timeout
        )
        elapsed = time.monotonic() - started
        if collector.poll() is not None:
            raise RuntimeError(f"the collector exited; the log:\n{log_tail(folder)}")
        last = smaps(collector.pid)
        stopped = stop_collector(collector)
    finally:
        sampler.stop()
        if collector.poll() is None:
            collector.kill()
            collector.wait()
    return {
        "phase": f"replay {frames * args.frame_bytes / MIB:.0f} MB",
        "seconds": elapsed,
        "frames": frames,
        "mb_in": frames * args.frame_bytes / MIB,
        "committed": committed(folder),
        "landed": landed,
        **stopped,
        "baseline": None,
        "last": last,
        "peak": sampler.peak,
        "timeline": sampler.timeline,
    }


def print_results(results: list[dict[str, Any]], every: float) -> None:
    print(
        f"{'phase':<15} {'s':>5} {'frames':>6} {'MB in':>5} {'done':>6} {'RSS 0':>5} "
        f"{'peak RSS':>8} {'USS':>5} {'PSS':>5} {'anon':>5} {'RSS end':>7} {'stop':>8}"
    )
    for r in results:
        peak, last = r["peak"], r["last"]
        start = f"{r['baseline']['rss']:.0f}" if r["baseline"] else "-"
        stop = f"{r['stop_s']:.1f}s/{r['exit_code']}"
        print(
            f"{r['phase']:<15} {r['seconds']:>5.1f} {r['frames']:>6} {r['mb_in']:>5.0f} "
            f"{r['committed']:>6} {start:>5} {peak['rss']:>8.0f} {peak['uss']:>5.0f} "
            f"{peak['pss']:>5.0f} {peak['anon']:>5.0f} {last['rss']:>7.0f} {stop:>8}"
        )
    print(
        "Memory in MiB: RSS 0 when the first frame was read, the peaks of RSS, USS "
        "(Private_Clean + Private_Dirty), PSS and anonymous memory (each its own peak, "
        f"sampled every {every:g} s), RSS end just before the SIGTERM. MB in: MiB of "
        "frames read; done: the last sequence in the table; stop: seconds from SIGTERM "
        "to exit / exit code."
    )


def sink_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("--sink takes KEY=VALUE (VALUE as TOML)")
    return key.strip(), value.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="flood length (30)")
    parser.add_argument(
        "--frame-bytes", type=int, default=FRAME_BYTES, help=f"bytes a frame ({FRAME_BYTES:,})"
    )
    parser.add_argument("--replay-mb", type=int, default=500, help="MiB of spool replayed (500)")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between samples (0.5)")
    parser.add_argument("--timeout", type=float, default=600.0, help="replay's limit (600 s)")
    parser.add_argument("--only", choices=("flood", "replay"), help="run one phase")
    parser.add_argument(
        "--sink",
        type=sink_option,
        action="append",
        default=[],
        help="another [sink] key, VALUE as TOML (e.g. --sink max_buffered_bytes=33554432)",
    )
    parser.add_argument("--json", action="store_true", help="print every sample as JSON too")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    args = parser.parse_args()
    args.sink = dict(args.sink)
    # A SIGTERM to the bench ends it like Ctrl-C: the finally blocks kill the children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sender = Sender(args.frame_bytes)
    results = []
    try:
        with contextlib.ExitStack() as stack:
            if args.keep is None:
                root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lakeflow-")))
            else:
                root = args.keep
                root.mkdir(parents=True)
            if args.only in (None, "flood"):
                results.append(flood(args, sender, root))
            if args.only in (None, "replay"):
                results.append(replay(args, sender, root))
    finally:
        sender.stop()
    print_results(results, args.every)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
