"""Ingest benchmark: Binance ``forceOrder`` frames from a local sender into lakeflow.

A sender process (a WebSocket server written by hand on a raw socket, so that it is
never the bottleneck) serves N pre-framed text frames per connection. Against it, one
run measures:

(a) a bare ``websockets`` client loop: ``await ws.recv(decode=False)`` and count;
(b) the real lakeflow runtime with the real ``binance_liquidations`` source and the
    real Delta sink into a temporary folder, in its own child process (peak RSS);
(c) the one-commit-per-message design (json.loads, one-row DataFrame,
    ``write_deltalake(mode="append")`` per message) on a small N, extrapolated.

Usage (from the repository root)::

    uv run python bench/ingest.py --n 500000 [--repeat 3] [--flush-interval 5] [--json]

Every measurement runs in a fresh child process; the sender is killed at the end,
whatever happens. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import random
import resource
import signal
import socket
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

# The peer's environment and runner (bench/peer.py), importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import PeerUnavailable, environment, run_reader

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The path lakeflow's source asks for with empty ``symbols`` (after ``ws_url``).
STREAM_PATH = "/market/ws/!forceOrder@arr"
#: Bytes per ``sendall`` call; chunks end on frame boundaries (pongs go between them).
CHUNK_BYTES = 2 << 20
#: The first event time (ms). N = 1M spans about 30 minutes: one date partition.
BASE_MS = 1_732_435_200_000  # 2024-11-24T08:00:00Z
SEED = 20261125
SOURCE = "source"  # the source instance's name in the benchmark pipeline
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# -- payloads ------------------------------------------------------------------------

_MAJORS = (
    "BTCUSDT ETHUSDT SOLUSDT XRPUSDT DOGEUSDT BNBUSDT ADAUSDT 1000PEPEUSDT 1000SHIBUSDT "
    "LINKUSDT AVAXUSDT SUIUSDT WIFUSDT LTCUSDT BCHUSDT DOTUSDT TRXUSDT NEARUSDT ARBUSDT "
    "OPUSDT APTUSDT FILUSDT INJUSDT TIAUSDT SEIUSDT ORDIUSDT 1000BONKUSDT ENAUSDT BTCUSDC "
    "ETHUSDC"
)
MAJORS = _MAJORS.split()


def make_symbols(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct futures symbols: the majors, then made-up ones of the same shape."""
    symbols = list(MAJORS)
    seen = set(symbols)
    while len(symbols) < count:
        base = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(2, 8)))
        if rng.random() < 0.06:
            base = "1000" + base
        quote = rng.choices(("USDT", "USDC", "BUSD"), weights=(85, 12, 3))[0]
        symbol = base + quote
        if symbol not in seen:
            seen.add(symbol)
            symbols.append(symbol)
    return symbols


def _fmt(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if float(text) == 0.0:  # never a zero price or quantity
        text = f"{10.0**-decimals:.{decimals}f}"
    return text


def make_orders(rng: random.Random, symbols: Sequence[str], count: int) -> list[str]:
    """``count`` distinct order bodies (``"s":...,"z":...``) of varied magnitude and precision.

    Each symbol has a price level between 1e-5 and 1e5 and its own tick and step
    precision (0 to 8 decimals, finer for cheaper symbols, as on Binance).
    """
    specs = []
    for symbol in symbols:
        price = 10 ** rng.uniform(-5, 5)
        magnitude = math.floor(math.log10(price))
        price_decimals = min(8, max(0, 3 - magnitude + rng.randint(-2, 2)))
        qty_decimals = min(8, max(0, magnitude + rng.randint(-1, 2)))
        specs.append((symbol, price, price_decimals, qty_decimals))
    orders = []
    for _ in range(count):
        symbol, level, pd, qd = rng.choice(specs)
        price = level * rng.uniform(0.97, 1.03)
        average = price * rng.uniform(0.998, 1.002)
        quantity = 10 ** rng.uniform(1, 5) / price
        q = _fmt(quantity, qd)
        if rng.random() < 0.1:
            status, last = "PARTIALLY_FILLED", _fmt(float(q) * rng.uniform(0.1, 0.9), qd)
        else:
            status, last = "FILLED", q
        orders.append(
            f'"s":"{symbol}","S":"{rng.choice(("SELL", "BUY"))}","o":"LIMIT","f":"IOC",'
            f'"q":"{q}","p":"{_fmt(price, pd)}","ap":"{_fmt(average, pd)}","X":"{status}",'
            f'"l":"{last}","z":"{last}"'
        )
    return orders


def make_payloads(n: int, seed: int = SEED, symbols: int = 480) -> list[bytes]:
    """N ``forceOrder`` frames as Binance sends them on ``!forceOrder@arr``.

    Event times E increase strictly (1 to 3 ms apart); the trade time T is 0 to 3 ms
    before E. Orders are drawn from a pool of 50,000 over ``symbols`` symbols.
    """
    rng = random.Random(seed)
    orders = make_orders(rng, make_symbols(rng, symbols), 50_000)
    picked = rng.choices(orders, k=n)
    steps = rng.choices((1, 1, 2, 3), k=n)
    lags = rng.choices((0, 1, 1, 2, 3), k=n)
    return [
        f'{{"e":"forceOrder","E":{e},"o":{{{order},"T":{e - lag}}}}}'.encode()
        for e, order, lag in zip(
            itertools.accumulate(steps, initial=BASE_MS), picked, lags, strict=False
        )
    ]


def symbol_of(payload: bytes) -> str:
    """The ``"s"`` field of a ``forceOrder`` payload made by :func:`make_payloads`."""
    start = payload.index(b'"s":"') + 5
    return payload[start : payload.index(b'"', start)].decode()


def combined_payloads(payloads: Sequence[bytes]) -> list[bytes]:
    """The same events as ``/market/stream?streams=`` sends them: wrapped per stream."""
    return [
        b'{"stream":"' + symbol_of(p).lower().encode() + b'@forceOrder","data":' + p + b"}"
        for p in payloads
    ]


def exchange_info(symbols: Sequence[str]) -> bytes:
    """A ``GET /fapi/v1/exchangeInfo`` body listing ``symbols`` as trading perpetuals.

    The fields a client reads to map symbols (Binance's documented shape, trimmed).
    """
    entries = []
    for symbol in sorted(symbols):
        quote = next(q for q in ("USDT", "USDC", "BUSD") if symbol.endswith(q))
        entries.append(
            {
                "symbol": symbol,
                "pair": symbol,
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "status": "TRADING",
                "baseAsset": symbol[: -len(quote)],
                "quoteAsset": quote,
                "marginAsset": quote,
                "pricePrecision": 8,
                "quantityPrecision": 8,
                "underlyingType": "COIN",
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.00000001",
                        "maxPrice": "1000000",
                        "tickSize": "0.00000001",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00000001",
                        "maxQty": "100000000",
                        "stepSize": "0.00000001",
                    },
                ],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            }
        )
    body = {
        "timezone": "UTC",
        "serverTime": BASE_MS,
        "futuresType": "U_MARGINED",
        "rateLimits": [],
        "exchangeFilters": [],
        "assets": [],
        "symbols": entries,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` payload bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def frame_chunks(payloads: Sequence[bytes], chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """The payloads as WebSocket text frames, joined into chunks of about ``chunk_bytes``."""
    chunks: list[bytes] = []
    current = bytearray()
    for payload in payloads:
        current += text_frame_header(len(payload))
        current += payload
        if len(current) >= chunk_bytes:
            chunks.append(bytes(current))
            current = bytearray()
    if current:
        chunks.append(bytes(current))
    return chunks


# -- the sender: a minimal WebSocket server on a raw socket ----------------------------

CLOSE_NORMAL = bytes((0x88, 2)) + (1000).to_bytes(2, "big")


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        part = sock.recv(count - len(data))
        if not part:
            raise ConnectionError("peer closed")
        data += part
    return bytes(data)


def _read_request(sock: socket.socket) -> tuple[str, dict[str, str]]:
    """The request path and headers (lower-case names) of an HTTP upgrade request."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(4096)
        if not part or len(data) > 65536:
            raise ConnectionError("incomplete HTTP request")
        data += part
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request_line, *lines = head.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] != "GET":
        raise ConnectionError(f"not a GET request: {request_line!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return parts[1], headers


class _Peer:
    """One client connection: frames out from the serving thread, control frames in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.close_sent = False
        self.done = threading.Event()  # the client sent a close frame or went away

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def send_close(self) -> None:
        with self.send_lock:
            if not self.close_sent:
                self.close_sent = True
                self.sock.sendall(CLOSE_NORMAL)

    def read_control(self) -> None:
        """Read the client's (masked) frames: answer pings, answer and end on close."""
        try:
            while True:
                b0, b1 = _recv_exact(self.sock, 2)
                length = b1 & 0x7F
                if length == 126:
                    length = int.from_bytes(_recv_exact(self.sock, 2), "big")
                elif length == 127:
                    length = int.from_bytes(_recv_exact(self.sock, 8), "big")
                mask = _recv_exact(self.sock, 4) if b1 & 0x80 else b"\0\0\0\0"
                raw = _recv_exact(self.sock, length)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
                opcode = b0 & 0x0F
                if opcode == 0x9:  # ping -> pong, between two chunks at worst
                    self.send(bytes((0x8A, len(payload))) + payload)
                elif opcode == 0x8:
                    self.send_close()
                    return
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            self.done.set()


@dataclass(frozen=True)
class Served:
    """What the sender serves: the same N events in both framings, and exchangeInfo."""

    raw: list[bytes]  # chunks of ``!forceOrder@arr`` frames
    combined: list[bytes]  # chunks of ``/market/stream?streams=`` frames
    exchange_info: bytes


def _serve(
    sock: socket.socket,
    served_data: Served,
    served: set[str],
    lock: threading.Lock,
    tls: ssl.SSLContext | None = None,
) -> None:
    """One connection: the upgrade, then all frames if its path is new, else nothing.

    A path with ``/market/stream`` gets combined-stream frames, any other raw ones; a
    plain ``GET .../fapi/v1/exchangeInfo`` gets the symbol list (the peer asks for it).
    With ``tls`` the connection is TLS, served from this one thread: an OpenSSL
    connection must not be read in one thread while another writes it, so the client's
    pings wait until the frames are sent (the socket buffers them; 1M frames take
    seconds, websockets' ping timeout is 20 s).
    """
    try:
        sock.settimeout(30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_side=True)
        path, headers = _read_request(sock)
        key = headers.get("sec-websocket-key")
        if not key and path.split("?")[0].endswith("/fapi/v1/exchangeInfo"):
            body = served_data.exchange_info
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            return
        if not key or headers.get("upgrade", "").lower() != "websocket":
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        chunks = served_data.combined if "/market/stream" in path else served_data.raw
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )
        with lock:
            fresh = path not in served
            served.add(path)
        sock.settimeout(600)
        peer = _Peer(sock)
        if tls is None:
            threading.Thread(target=peer.read_control, daemon=True).start()
        if fresh:
            # Each run uses its own path: its first connection gets the N frames, a
            # reconnect after the close gets none (it idles until the client leaves).
            for chunk in chunks:
                peer.send(chunk)
            peer.send_close()
        if tls is not None:
            peer.read_control()
        elif fresh:
            peer.done.wait(30)
        else:
            peer.done.wait()
    except (OSError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _die_with_parent() -> None:
    """Exit this child at once if the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _accept(
    listener: socket.socket,
    data: Served,
    served: set[str],
    lock: threading.Lock,
    tls: ssl.SSLContext | None = None,
) -> None:
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_serve, args=(sock, data, served, lock, tls), daemon=True).start()


def sender_main(n: int, seed: int, conn: Connection, certificate: bytes | None = None) -> None:
    """The sender process: frame N payloads once, then serve every connection.

    With ``certificate`` (a PEM key and chain for 127.0.0.1) a second port speaks the
    same over TLS, for a reader that accepts only ``wss://`` (the peer).
    """
    _die_with_parent()
    payloads = make_payloads(n, seed)
    data = Served(
        raw=frame_chunks(payloads),
        combined=frame_chunks(combined_payloads(payloads)),
        exchange_info=exchange_info({symbol_of(p) for p in payloads}),
    )
    del payloads
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    served: set[str] = set()
    lock = threading.Lock()
    tls_port = None
    if certificate is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
            pem.write(certificate)
            pem.flush()
            context.load_cert_chain(pem.name)
        tls_listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        tls_port = tls_listener.getsockname()[1]
        args = (tls_listener, data, served, lock, context)
        threading.Thread(target=_accept, args=args, daemon=True).start()
    info = {"port": listener.getsockname()[1], "tls_port": tls_port}
    conn.send({**info, "bytes": sum(map(len, data.raw))})
    _accept(listener, data, served, lock)


# -- child processes: one per measurement ----------------------------------------------


def _child(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], out: Connection) -> None:
    _die_with_parent()
    try:
        result = target(*args)
    except BaseException:
        out.send({"error": traceback.format_exc()})
    else:
        out.send(result)
    finally:
        out.close()


def run_child(
    ctx: SpawnContext,
    target: Callable[..., dict[str, Any]],
    args: tuple[Any, ...],
    timeout: float,
) -> dict[str, Any]:
    """Run ``target(*args)`` in a fresh process and return its result; kill it on timeout."""
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(target, args, sender), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise TimeoutError(f"{target.__name__} gave no result within {timeout:.0f}s")
        try:
            result: dict[str, Any] = receiver.recv()
        except EOFError:
            raise RuntimeError(f"{target.__name__} died (exit code {process.exitcode})") from None
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
        receiver.close()
    if "error" in result:
        raise RuntimeError(f"{target.__name__} failed:\n{result['error']}")
    return result


# (a) --------------------------------------------------------------------------------


def bare_client(url: str, n: int, ca_file: str | None = None) -> dict[str, Any]:
    """(a): the plain websockets client loop, as lakeflow configures the connection.

    A ``wss://`` URL verifies the sender's certificate against ``ca_file``.
    """
    if ca_file is not None:
        os.environ["SSL_CERT_FILE"] = ca_file  # read by ssl.create_default_context()
    from websockets.asyncio.client import connect

    from lakeflow.sources.websocket import WebSocketSource

    async def run() -> dict[str, Any]:
        async with connect(
            url,
            max_size=WebSocketSource.max_size,
            compression=None,
            open_timeout=WebSocketSource.open_timeout,
            close_timeout=2,
        ) as ws:
            recv = ws.recv
            await recv(decode=False)
            first, machine, cpu = time.perf_counter(), machine_jiffies(), _cpu_seconds()
            for _ in range(n - 1):
                await recv(decode=False)
            last, cpu = time.perf_counter(), _cpu_seconds() - cpu
        return {
            "messages": n,
            "seconds": last - first,
            "machine_busy": busy_since(machine),
            "cpu_us_per_message": 1e6 * cpu / (n - 1),
        }

    result = asyncio.run(run())
    result["rate"] = (n - 1) / result["seconds"] if result["seconds"] > 0 else float("inf")
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


# (b) --------------------------------------------------------------------------------


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_since(before: tuple[int, int]) -> float:
    """Share of the machine's CPU time (all cores) that was busy since ``before``."""
    busy, total = machine_jiffies()
    return (busy - before[0]) / max(1, total - before[1])


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def write_pipeline(
    folder: Path, ws_url: str, sink: dict[str, Any], runtime: dict[str, Any]
) -> Path:
    """The benchmark's pipeline file: one ``binance_liquidations`` source, all symbols."""
    lines = ["[sink]", 'uri = "tables"']
    lines += [f"{key} = {_toml(value)}" for key, value in sink.items()]
    if runtime:
        lines += ["", "[runtime]"] + [f"{key} = {_toml(value)}" for key, value in runtime.items()]
    lines += [
        "",
        f"[sources.{SOURCE}]",
        'type = "binance_liquidations"',
        f"ws_url = {_toml(ws_url)}",
        # The instrument list's host: a closed loopback port, nothing leaves the machine.
        'usdm_rest_url = "http://127.0.0.1:9"',
    ]
    path = folder / "lakeflow.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _runtime(
    folder: Path,
    ws_url: str,
    sink: dict[str, Any],
    runtime: dict[str, Any],
    done: Callable[[dict[str, Any]], bool],
) -> tuple[Any, Any, MemorySampler]:
    """(b)'s pipeline, runtime and memory sampler in ``folder``, sampled once before the run."""
    import logging

    from lakeflow.config import load_pipeline
    from lakeflow.plugins import load
    from lakeflow.runtime import Runtime

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    registry = load()
    pipeline = load_pipeline(write_pipeline(folder, ws_url, sink, runtime), registry)
    lakeflow = Runtime(pipeline, registry, stop_when=done)
    memory = MemorySampler(lakeflow.stats)
    memory.sample()  # after the imports, before the first connection
    return pipeline, lakeflow, memory


def lakeflow_run(
    ws_url: str, n: int, timeout: float, sink: dict[str, Any], runtime: dict[str, Any]
) -> dict[str, Any]:
    """(b): the real runtime, source and Delta sink, until all N rows are committed."""

    def done(stats: dict[str, Any]) -> bool:
        s = stats[SOURCE]
        return s.rows + s.dead_letters >= n

    with tempfile.TemporaryDirectory(prefix="lakeflow-bench-") as folder:
        pipeline, lakeflow, memory = _runtime(Path(folder), ws_url, sink, runtime, done)
        idle = dict(memory.peak)
        threads_before, cpu_before, machine = thread_cpu(), _cpu_seconds(), machine_jiffies()
        started = time.time()
        memory.start()
        try:
            result = asyncio.run(asyncio.wait_for(lakeflow.run(), timeout))
        finally:
            memory.stop()
        stopped = time.time()
        peak = _peak_rss_mb()  # before reading the table back, which costs memory too
        cpu = cpu_breakdown(threads_before, _cpu_seconds() - cpu_before)
        machine_busy = busy_since(machine)
        stats = result.stats[SOURCE]
        table = Path(pipeline.sink.uri) / pipeline.sources[SOURCE].table
        report = analyse_table(table)
        report.update(
            peak_rss_mb=peak,
            rows=stats.rows,
            dead_letters=stats.dead_letters,
            reconnects=stats.reconnects,
            run_seconds=stopped - started,
            cpu_seconds=cpu,
            cpu_us_per_message=1e6 * cpu["total"] / n,
            memory_idle=idle,
            memory_peak=memory.peak,
            machine_busy=machine_busy,
        )
    if report["table_rows"] != n or stats.dead_letters:
        raise RuntimeError(
            f"expected {n} rows and no dead letters, the table holds {report['table_rows']} "
            f"rows and {stats.dead_letters} payloads went to _dead_letters"
        )
    return report


STAGES = ("receive", "decode")


def lakeflow_stage(
    ws_url: str, n: int, timeout: float, sink: dict[str, Any], runtime: dict[str, Any], stage: str
) -> dict[str, Any]:
    """(b) cut short after ``stage``, to attribute its memory: what each step adds.

    ``receive``: payloads are read, spooled, buffered and taken in batches, then dropped
    (no decode, no commit). ``decode``: batches are decoded as usual and the rows dropped
    (no commit). Everything else is (b)'s real runtime and source. The cut is made by
    replacing the committer's decode and the sink's commit in this child process only.
    """
    from lakeflow.runtime.committer import Committer
    from lakeflow.sinks.delta import DeltaSink
    from lakeflow.sources import Decoded

    def no_commit(*_args: Any, **_kwargs: Any) -> bool:
        return True

    DeltaSink.commit = no_commit  # type: ignore[method-assign]
    Committer._check_owner = lambda *_args: None  # type: ignore[method-assign]
    if stage == "receive":
        Committer._decode = lambda self, _batch: Decoded(rows=self.spec.schema.empty())  # type: ignore[method-assign]

    def done(stats: dict[str, Any]) -> bool:
        buffer = stats[SOURCE].buffer
        return buffer is not None and buffer.taken >= n

    with tempfile.TemporaryDirectory(prefix="lakeflow-bench-") as folder:
        _, lakeflow, memory = _runtime(Path(folder), ws_url, sink, runtime, done)
        started = time.time()
        memory.start()
        try:
            asyncio.run(asyncio.wait_for(lakeflow.run(), timeout))
        finally:
            memory.stop()
        seconds = time.time() - started
    return {"stage": stage, "rate": n / seconds, "peak_rss_mb": _peak_rss_mb(), **memory.peak}


class MemorySampler:
    """Where (b)'s memory is, sampled every 50 ms from ``/proc/self/smaps_rollup``.

    ``peak`` keeps, for the sample with the highest RSS: RSS, its anonymous part (heap,
    allocator arenas, thread stacks: what the data costs) and its file-backed part
    (the mapped code of polars, deltalake and Python's extensions, shared and
    reclaimable), and the payloads the source's buffer held then.
    """

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.peak: dict[str, float] = {"rss_mb": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-sampler")

    def sample(self) -> None:
        values: dict[str, float] = {}
        with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                name, _, rest = line.partition(":")
                if name in ("Rss", "Anonymous"):
                    values[name] = int(rest.split()[0]) / 1024
        rss = values.get("Rss", 0.0)
        if rss > self.peak["rss_mb"]:
            stats = self.stats.get(SOURCE)
            buffer = getattr(stats, "buffer", None)
            self.peak = {
                "rss_mb": rss,
                "anonymous_mb": values.get("Anonymous", 0.0),
                "file_backed_mb": rss - values.get("Anonymous", 0.0),
                "buffered_payloads": float(len(buffer)) if buffer is not None else 0.0,
                "threads": float(len(os.listdir("/proc/self/task"))),
            }

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def delta_log(table: Path) -> list[tuple[int, int, list[str]]]:
    """Every commit of a Delta table: ``(version, commitInfo.timestamp ms, added paths)``."""
    commits = []
    for entry in sorted((table / "_delta_log").glob("*.json")):
        timestamp, added = None, []
        for line in entry.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "commitInfo" in action:
                timestamp = action["commitInfo"].get("timestamp")
            elif "add" in action:
                added.append(action["add"]["path"])
        if timestamp is None:
            raise RuntimeError(f"{entry.name} has no commitInfo timestamp")
        commits.append((int(entry.stem), int(timestamp), added))
    return commits


def analyse_table(table: Path) -> dict[str, Any]:
    """Commits, files, throughput and receipt-to-commit latency of a benchmark table.

    Each data file is added by exactly one commit, so every row's commit time is the
    ``commitInfo.timestamp`` of the version whose ``add`` action names its file: read
    ``received_at`` from each added file and subtract it from that timestamp.
    """
    import polars as pl
    from deltalake import DeltaTable

    handle = DeltaTable(str(table))
    versions = handle.version() + 1
    files = len(handle.get_add_actions(flatten=True))
    parts = []
    for version, committed_ms, added in delta_log(table):
        for relative in added:
            frame = pl.read_parquet(table / unquote(relative), columns=["received_at"])
            parts.append(
                frame.with_columns(
                    version=pl.lit(version), committed_us=pl.lit(committed_ms * 1000)
                )
            )
    rows = pl.concat(parts).with_columns(received_us=pl.col("received_at").dt.epoch("us"))
    latency_ms = (rows["committed_us"] - rows["received_us"]) / 1000
    first_us = int(rows["received_us"].min())  # type: ignore[arg-type]
    last_received_us = int(rows["received_us"].max())  # type: ignore[arg-type]
    last_commit_us = int(rows["committed_us"].max())  # type: ignore[arg-type]
    # One line per commit, times in seconds since the first receipt.
    timeline = (
        rows.group_by("version")
        .agg(
            rows=pl.len(),
            first_received_s=(pl.col("received_us").min() - first_us) / 1e6,
            last_received_s=(pl.col("received_us").max() - first_us) / 1e6,
            committed_s=(pl.col("committed_us").first() - first_us) / 1e6,
        )
        .sort("version")
    )
    # Throughput without the last commit, which waits for the flush timer once the
    # stream has ended: rows of all earlier commits over the time to the one before last.
    sustained = None
    if timeline.height > 1:
        before_last = timeline.head(timeline.height - 1)
        sustained = int(before_last["rows"].sum()) / float(before_last["committed_s"].max())  # type: ignore[arg-type]
    # Pauses of the receive loop: gaps between consecutive receipts of over 20 ms.
    gaps_ms = rows["received_us"].sort().diff().drop_nulls() / 1000
    stalls = gaps_ms.filter(gaps_ms > 20)
    return {
        "table_rows": rows.height,
        "commits": versions,
        "receive_stalls": stalls.len(),
        "receive_stalled_s": float(stalls.sum()) / 1000,
        "receive_max_gap_ms": float(gaps_ms.max() or 0.0),  # type: ignore[arg-type]
        "files": files,
        "max_commit_rows": int(timeline["rows"].max()),  # type: ignore[arg-type]
        "seconds": (last_commit_us - first_us) / 1e6,
        "rate": rows.height / max(1e-9, (last_commit_us - first_us) / 1e6),
        "receive_rate": rows.height / max(1e-9, (last_received_us - first_us) / 1e6),
        "sustained_rate": sustained,
        "latency_p50_ms": float(latency_ms.quantile(0.50, "nearest")),  # type: ignore[arg-type]
        "latency_p99_ms": float(latency_ms.quantile(0.99, "nearest")),  # type: ignore[arg-type]
        "latency_max_ms": float(latency_ms.max()),  # type: ignore[arg-type]
        "timeline": timeline.to_dicts(),
    }


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every live thread of this process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_breakdown(before: dict[int, tuple[str, float]], total: float) -> dict[str, float]:
    """CPU seconds spent since ``before``, grouped: event loop, Python workers, native pools."""
    groups: dict[str, float] = {}
    for tid, (name, seconds) in thread_cpu().items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if tid == os.getpid():
            group = "event loop (main thread)"
        elif name.startswith("python"):
            group = "other live python threads"
        else:
            group = f"native threads: {name.rstrip('0123456789-_ ')}"
        groups[group] = groups.get(group, 0.0) + spent
    # asyncio's to_thread workers end with the run: the Python side of decode + commit.
    groups["threads that exited"] = max(0.0, total - sum(groups.values()))
    groups["total"] = total
    return {key: round(value, 3) for key, value in groups.items()}


# (c) --------------------------------------------------------------------------------


def per_message_commits(n: int) -> dict[str, Any]:
    """(c): json.loads, a one-row DataFrame and one Delta append per message."""
    import polars as pl
    from deltalake import write_deltalake
    from lakeflow_binance_liquidations import LIQUIDATION

    payloads = make_payloads(n, SEED + 1)
    schema = LIQUIDATION.polars_schema

    def ms(value: int) -> datetime:
        return EPOCH + timedelta(milliseconds=value)

    with tempfile.TemporaryDirectory(prefix="lakeflow-bench-c-") as folder:
        uri = str(Path(folder) / "liquidations")
        started = time.perf_counter()
        for payload in payloads:
            received = datetime.now(UTC)
            event = json.loads(payload)
            order = event["o"]
            trade_time = ms(order["T"])
            row = {
                "exchange": "binance",
                "market": "usdm",
                "symbol": order["s"],
                "pair": order.get("ps"),
                "side": order["S"],
                "order_type": order["o"],
                "time_in_force": order["f"],
                "quantity": Decimal(order["q"]),
                "price": Decimal(order["p"]),
                "average_price": Decimal(order["ap"]),
                "status": order["X"],
                "last_filled_quantity": Decimal(order["l"]),
                "filled_quantity": Decimal(order["z"]),
                "trade_time": trade_time,
                "event_time": ms(event["E"]),
                "received_at": received,
                "date": date(trade_time.year, trade_time.month, trade_time.day),
            }
            frame = pl.DataFrame([row], schema=schema)
            write_deltalake(uri, frame, mode="append", partition_by=["date"])
        seconds = time.perf_counter() - started
    return {"messages": n, "seconds": seconds, "rate": n / seconds}


# -- orchestration ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    import deltalake
    import polars
    import websockets

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "polars": polars.__version__,
        "deltalake": deltalake.__version__,
        "websockets": websockets.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


class Sender:
    """The sender process, started once and killed at the end, whatever happens.

    With ``tls`` it also listens on a TLS port, its certificate signed by a throwaway
    CA (trustme) whose PEM file is ``ca_file``: readers verify against it through
    ``SSL_CERT_FILE``, as they would against a real exchange's chain.
    """

    def __init__(self, ctx: SpawnContext, n: int, tls: bool = False) -> None:
        certificate, self.ca_file = None, None
        if tls:
            import trustme

            ca = trustme.CA(organization_name="lakeflow bench CA")
            certificate = ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes()
            fd, self.ca_file = tempfile.mkstemp(prefix="lakeflow-bench-ca-", suffix=".pem")
            os.close(fd)
            ca.cert_pem.write_to_path(self.ca_file)
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.process: SpawnProcess = ctx.Process(
            target=sender_main,
            args=(n, SEED, sender, certificate),
            daemon=True,
            name="ws-sender",
        )
        self.process.start()
        sender.close()
        if not self.receiver.poll(120 + n / 10_000):
            self.stop()
            raise TimeoutError("the sender did not start")
        info = self.receiver.recv()
        self.port: int = info["port"]
        self.tls_port: int | None = info["tls_port"]
        self.bytes: int = info["bytes"]
        self._runs = 0

    def url(self, tls: bool = False) -> str:
        """A base URL of a new run: its first connection gets the N frames."""
        self._runs += 1
        if tls:
            return f"wss://127.0.0.1:{self.tls_port}/run{self._runs}"
        return f"ws://127.0.0.1:{self.port}/run{self._runs}"

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the sender has used so far."""
        try:
            with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run(
        self,
        ctx: SpawnContext,
        target: Callable[..., dict[str, Any]],
        args: tuple[Any, ...],
        timeout: float,
    ) -> dict[str, Any]:
        """``run_child``, noting the sender's CPU time over the run."""
        before = self.cpu_seconds()
        result = run_child(ctx, target, args, timeout)
        result["sender_cpu_s"] = self.cpu_seconds() - before
        return result

    def peer(self, interpreter: Path, n: int, timeout: float) -> dict[str, Any]:
        """(p): cryptofeed in its own environment against a new run's paths, over TLS."""
        before = self.cpu_seconds()
        rest = f"https://127.0.0.1:{self.tls_port}"
        assert self.ca_file is not None, "the peer needs the sender's TLS port"
        result = run_reader(interpreter, self.url(tls=True), rest, n, timeout, self.ca_file)
        result["sender_cpu_s"] = self.cpu_seconds() - before
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.receiver.close()
        if self.ca_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.ca_file)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return float(statistics.median(values)) if values else None


def _median_cpu(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median CPU seconds of each thread group over the runs of (b)."""
    groups = dict.fromkeys(group for run in runs for group in run["cpu_seconds"])
    return {
        group: float(statistics.median(run["cpu_seconds"].get(group, 0.0) for run in runs))
        for group in groups
    }


def _ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y else None


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


B_FIGURES = (
    "rate",
    "receive_rate",
    "sustained_rate",
    "receive_stalled_s",
    "machine_busy",
    "max_commit_rows",
    "seconds",
    "peak_rss_mb",
    "cpu_us_per_message",
    "commits",
    "files",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run (a), (b) and (c) ``--repeat`` times each, against one sender; medians."""
    ctx = mp.get_context("spawn")
    n = args.n
    timeout = 120 + n / 2_000  # generous: a run slower than 2,000 msg/s is broken
    a_runs: list[dict[str, Any]] = []
    b_runs: list[dict[str, Any]] = []
    c_runs: list[dict[str, Any]] = []
    p_runs: list[dict[str, Any]] = []
    stage_runs: list[dict[str, Any]] = []
    peer, peer_error = None, None
    if "p" in args.only:
        try:
            peer = environment(args.peer_python)
        except PeerUnavailable as exc:
            peer_error = str(exc)
            print(f"(p) skipped: {exc}", file=sys.stderr)
    a_tls_runs: list[dict[str, Any]] = []
    sender = Sender(ctx, n, tls=peer is not None) if {"a", "b", "p"} & set(args.only) else None
    try:
        for _ in range(args.repeat):
            if sender is not None and "a" in args.only:
                a_args = (sender.url() + STREAM_PATH, n)
                a_runs.append(sender.run(ctx, bare_client, a_args, timeout))
            if sender is not None and peer is not None:
                p_runs.append(sender.peer(peer, n, timeout))
                # The peer reads over TLS (it takes wss:// only): (a) over TLS beside it.
                a_args = (sender.url(tls=True) + STREAM_PATH, n, sender.ca_file)
                a_tls_runs.append(sender.run(ctx, bare_client, a_args, timeout))
            if sender is not None and "b" in args.only:
                sink = {"flush_interval": args.flush_interval, **args.sink}
                b_args = (sender.url(), n, timeout, sink, args.runtime)
                b_runs.append(sender.run(ctx, lakeflow_run, b_args, timeout + 30))
            if sender is not None and args.stages:
                for stage in STAGES:
                    s_args = (sender.url(), n, timeout, args.sink, args.runtime, stage)
                    stage_runs.append(sender.run(ctx, lakeflow_stage, s_args, timeout + 30))
            if "c" in args.only and args.c_n:
                c_runs.append(run_child(ctx, per_message_commits, (args.c_n,), 60 + args.c_n))
    finally:
        if sender is not None:
            sender.stop()
    a, b, c = _median(a_runs, "rate"), _median(b_runs, "rate"), _median(c_runs, "rate")
    peer_figures = {
        key: _median(p_runs, key) for key in ("rate", "peak_rss_mb", "cpu_us_per_message")
    }
    peer_figures["reader"] = p_runs[0]["reader"] if p_runs else None
    peer_figures["error"] = peer_error
    detail: dict[str, Any] = {key: _median(b_runs, key) for key in B_FIGURES}
    detail["cpu_seconds"] = _median_cpu(b_runs)
    b_over_a, b_over_c = _ratio(b, a), _ratio(b, c)
    return {
        "n": n,
        "repeat": args.repeat,
        "flush_interval": args.flush_interval,
        "sink": args.sink,
        "runtime": args.runtime,
        "c_n": args.c_n,
        "wire_bytes": sender.bytes if sender is not None else None,
        "a_rate": a,
        "b_rate": b,
        "c_rate": c,
        "b_over_a": b_over_a,
        "b_over_c": b_over_c,
        "a": {key: _median(a_runs, key) for key in ("peak_rss_mb", "cpu_us_per_message")},
        "a_tls": {
            key: _median(a_tls_runs, key) for key in ("rate", "peak_rss_mb", "cpu_us_per_message")
        },
        "b": detail,
        "peer": peer_figures,
        "stages": {
            stage: {
                key: _median([r for r in stage_runs if r["stage"] == stage], key)
                for key in ("rate", "peak_rss_mb", "anonymous_mb", "file_backed_mb")
            }
            for stage in STAGES
            if any(r["stage"] == stage for r in stage_runs)
        },
        "runs": {
            "a": a_runs,
            "a_tls": a_tls_runs,
            "b": b_runs,
            "c": c_runs,
            "p": p_runs,
            "stages": stage_runs,
        },
        "targets": {
            "b_over_a>=0.85": _at_least(b_over_a, 0.85),
            "b_over_c>=1000": _at_least(b_over_c, 1000),
            "sustained/a>=0.9": _at_least(_ratio(detail["sustained_rate"], a), 0.9),
            "peak_rss_mb<=250": _at_most(detail["peak_rss_mb"], 250),
            "latency_p99<=flush_interval+1s": _at_most(
                detail["latency_p99_ms"], (args.flush_interval + 1) * 1000
            ),
        },
        "machine": machine(),
    }


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_summary(r: dict[str, Any]) -> None:
    """The comparison table (as issue 17 states it), then the detail of (b)."""
    a, b, p, t, m = r["a"], r["b"], r["peer"], r["targets"], r["machine"]
    wire = f" ({r['wire_bytes'] / 1e6:.0f} MB on the wire)" if r["wire_bytes"] else ""
    print(
        f"# N={r['n']:,} repeat={r['repeat']} flush_interval={r['flush_interval']:g}s{wire}; "
        f"{m['cpus']} CPUs {m['cpu_model']}; python {m['python']} polars {m['polars']} "
        f"deltalake {m['deltalake']} websockets {m['websockets']}; {m['date']}"
    )
    if r["sink"] or r["runtime"]:
        print(f"# (b) [sink] {r['sink']} [runtime] {r['runtime']}")
    print()
    print("| reader | msg/s | peak RSS | CPU per message |")
    print("|---|---:|---:|---:|")

    def row(name: str, rate: float | None, rss: float | None, cpu: float | None) -> None:
        print(f"| {name} | {_num(rate, ',.0f')} | {_num(rss, '.0f')} MB | {_num(cpu, '.1f')} µs |")

    row(
        "(a) bare `websockets` loop", r["a_rate"], a.get("peak_rss_mb"), a.get("cpu_us_per_message")
    )
    if p.get("error"):
        print(f"| (p) peer: n/a ({p['error'][:120]}) | | | |")
    elif p.get("rate") is not None:
        tls = r["a_tls"]
        name = "(a) bare `websockets` loop, over TLS"
        row(name, tls.get("rate"), tls.get("peak_rss_mb"), tls.get("cpu_us_per_message"))
        name = f"(p) {p.get('reader') or 'cryptofeed'} over TLS, counting callback, no storage"
        row(name, p.get("rate"), p.get("peak_rss_mb"), p.get("cpu_us_per_message"))
    row("(b) lakeflow receive loop", b["receive_rate"], None, None)
    row("(b) lakeflow commits before the last (sustained)", b["sustained_rate"], None, None)
    row(
        "(b) lakeflow first receipt → last commit",
        r["b_rate"],
        b["peak_rss_mb"],
        b.get("cpu_us_per_message"),
    )
    print()
    sustained = _ratio(b["sustained_rate"], r["a_rate"])
    print(
        f"(b) / (a), first receipt to last commit: {_num(r['b_over_a'], '.3f')} "
        f"[target >= 0.85: {_verdict(t['b_over_a>=0.85'])}]; sustained / (a): "
        f"{_num(sustained, '.3f')} [target >= 0.9: {_verdict(t['sustained/a>=0.9'])}]"
    )
    print(
        f"(b) peak RSS {_num(b['peak_rss_mb'], '.0f')} MB "
        f"[target <= 250 MB: {_verdict(t['peak_rss_mb<=250'])}]; (b) took "
        f"{_num(b['seconds'], '.2f')} s, machine "
        f"{_num(b['machine_busy'] and 100 * b['machine_busy'], '.0f')}% busy"
    )
    mem = (r["runs"]["b"] or [{}])[0].get("memory_peak") or {}
    idle = (r["runs"]["b"] or [{}])[0].get("memory_idle") or {}
    if mem:
        print(
            f"(b) memory at its highest sample (first run): RSS {mem['rss_mb']:.0f} MB = "
            f"{mem['anonymous_mb']:.0f} MB anonymous + {mem['file_backed_mb']:.0f} MB "
            f"file-backed (mapped code), {mem['buffered_payloads']:,.0f} payloads buffered, "
            f"{mem['threads']:.0f} threads; before connecting: RSS {idle.get('rss_mb', 0):.0f} "
            f"MB ({idle.get('anonymous_mb', 0):.0f} anonymous)"
        )
    print(
        f"(b) receipt-to-commit latency: p50 {_num(b['latency_p50_ms'], ',.0f')} ms, "
        f"p99 {_num(b['latency_p99_ms'], ',.0f')} ms, max {_num(b['latency_max_ms'], ',.0f')} ms "
        f"[target p99 <= {r['flush_interval'] + 1:g} s: "
        f"{_verdict(t['latency_p99<=flush_interval+1s'])}]"
    )
    print(
        f"(b) Delta commits / data files: {_num(b['commits'], '.0f')} / "
        f"{_num(b['files'], '.0f')} (largest commit {_num(b['max_commit_rows'], ',.0f')} rows)"
    )
    cpu = b.get("cpu_seconds") or {}
    if cpu:
        print(
            "(b) CPU seconds by thread: "
            + ", ".join(f"{group} {seconds:.2f}" for group, seconds in cpu.items() if seconds)
        )
    for stage, figures in r.get("stages", {}).items():
        print(
            f"(b) cut after {stage}: {_num(figures['rate'], ',.0f')} msg/s, peak RSS "
            f"{_num(figures['peak_rss_mb'], '.0f')} MB, at the highest sample "
            f"{_num(figures['anonymous_mb'], '.0f')} MB anonymous + "
            f"{_num(figures['file_backed_mb'], '.0f')} MB file-backed"
        )
    print(
        f"(c) one commit per message: {_num(r['c_rate'], ',.1f')} msg/s (N={r['c_n']}, "
        f"extrapolated); (b) / (c) {_num(r['b_over_c'], ',.0f')} "
        f"[target >= 1000: {_verdict(t['b_over_c>=1000'])}]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500_000, help="frames per run (default 500000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the median")
    parser.add_argument(
        "--flush-interval", type=float, default=5.0, help="the pipeline's sink.flush_interval"
    )
    parser.add_argument(
        "--c-n", type=int, default=300, help="messages for (c), extrapolated (0: skip (c))"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    for section, example in (("sink", "flush_rows=50000"), ("runtime", "spool=false")):
        parser.add_argument(
            f"--{section}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a [{section}] key of (b)'s pipeline, value as TOML ({example}); repeatable",
        )
    parser.add_argument(
        "--only",
        default="apbc",
        help="which figures to measure, e.g. 'b' to profile (b) alone, 'ap' without lakeflow",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also run (b) cut after receiving and after decoding, to attribute its memory",
    )
    parser.add_argument(
        "--peer-python",
        default=">=3.13",
        help="the interpreter of the peer's environment, as `uv venv --python` takes it",
    )
    args = parser.parse_args(argv)
    if args.n < 2 or args.repeat < 1 or args.flush_interval <= 0 or args.c_n < 0:
        parser.error("--n >= 2, --repeat >= 1, --flush-interval > 0 and --c-n >= 0 please")
    if not args.only or set(args.only) - set("abcp"):
        parser.error("--only takes letters among a, b, c and p")
    for section in ("sink", "runtime"):
        options: dict[str, Any] = {}
        for item in getattr(args, section):
            key, sep, value = item.partition("=")
            try:
                options[key.strip()] = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                sep = ""
            if not sep or not key.strip():
                parser.error(f"--{section} {item!r}: write KEY=VALUE with a TOML value")
        setattr(args, section, options)

    # SIGTERM unwinds like Ctrl-C, so that the sender and children are always killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
