"""Soak: `lakeflow run` against a stand-in that streams steadily and drops the connection.

A websockets server in this process streams numbered `forceOrder` events at --rate per
second and closes every connection after --drop-every seconds; a real `lakeflow run`
subprocess collects them. The script samples the collector's RSS, stops it with SIGTERM
at the end, and checks that every event sent is in the table exactly once.

    uv run python bench/soak.py --minutes 10 --rate 2000 --drop-every 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
from websockets.asyncio.server import ServerConnection, serve

BASE_MS = 1_764_000_000_000


def event(k: int) -> str:
    price = f"{100 + k % 5000}.{k % 100:02d}"
    return (
        f'{{"e":"forceOrder","E":{BASE_MS + k + 2},"o":{{"s":"S{k % 300}USDT",'
        f'"S":"{"SELL" if k % 2 else "BUY"}","o":"LIMIT","f":"IOC","q":"{k % 97}.{k % 1000:03d}",'
        f'"p":"{price}","ap":"{price}","X":"FILLED","l":"1","z":"1","T":{BASE_MS + k}}}}}'
    )


class Server:
    def __init__(self, rate: float, drop_every: float) -> None:
        self.rate, self.drop_every = rate, drop_every
        self.sent = 0
        self.connections = 0
        self.port = 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        start = time.monotonic()
        done = 0
        while not self.stop.is_set() and time.monotonic() - start < self.drop_every:
            due = int((time.monotonic() - start) * self.rate) - done
            for _ in range(due):
                await ws.send(event(self.sent))
                self.sent += 1
                done += 1
            await asyncio.sleep(0.005)
        await ws.close(1001, "scheduled drop")

    async def main(self) -> None:
        async with serve(self.handle, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await asyncio.to_thread(self.stop.wait)


def rss_mb(pid: int) -> tuple[float, float]:
    """RSS of ``pid`` and its anonymous part (heap, arenas, stacks), in MB.

    The rest is file-backed: mapped library code (polars' and deltalake's native
    libraries are most of it), shared between processes and reclaimable by the kernel.
    """
    values = {"Rss": 0, "Anonymous": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0])
    return values["Rss"] / 1024, values["Anonymous"] / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--drop-every", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = Server(args.rate, args.drop_every)
    thread = threading.Thread(target=lambda: asyncio.run(server.main()), daemon=True)
    thread.start()
    server.ready.wait(10)
    folder = Path(tempfile.mkdtemp(prefix="lakeflow-soak-"))
    (folder / "lakeflow.toml").write_text(
        f'[sink]\nflush_interval = 5.0\n[sources.liquidations]\ntype = "binance_liquidations"\n'
        f'ws_url = "ws://127.0.0.1:{server.port}"\n'
        # The instrument list's host: a closed loopback port, nothing leaves the machine.
        'usdm_rest_url = "http://127.0.0.1:9"\n'
    )
    lakeflow = str(Path(sys.executable).parent / "lakeflow")
    log = open(folder / "run.log", "wb")  # noqa: SIM115 - lives as long as the collector
    collector = subprocess.Popen([lakeflow, "run"], cwd=folder, stdout=log, stderr=log)
    samples: list[tuple[float, float, float]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(10)
            rss, anonymous = rss_mb(collector.pid)
            samples.append((round(time.monotonic() - started), round(rss, 1), round(anonymous, 1)))
            if not args.json:
                print(
                    f"t={samples[-1][0]:>5}s rss={rss:>7.1f} MB (anonymous {anonymous:>6.1f}) "
                    f"sent={server.sent}",
                    flush=True,
                )
        server.stop.set()
        time.sleep(1.0)  # let the last frames reach the collector before it stops reading
        collector.send_signal(signal.SIGTERM)
        code = collector.wait(120)
    finally:
        if collector.poll() is None:
            collector.kill()
        server.stop.set()
    rows = pl.read_delta(str(folder / "tables" / "liquidations"))
    seen = rows["trade_time"].dt.epoch("ms") - BASE_MS
    gaps = (
        pl.read_delta(str(folder / "tables" / "_gaps"))
        if (folder / "tables" / "_gaps").exists()
        else pl.DataFrame()
    )
    rss = [r for _, r, _ in samples]
    anonymous = [a for _, _, a in samples]
    later = rss[len(rss) // 3 :] or rss
    later_anonymous = anonymous[len(anonymous) // 3 :] or anonymous
    result = {
        "minutes": args.minutes,
        "rate": args.rate,
        "exit_code": code,
        "sent": server.sent,
        "connections": server.connections,
        "rows": rows.height,
        "duplicates": rows.height - seen.n_unique(),
        "missing": server.sent - seen.n_unique(),
        "gaps": gaps.height,
        "rss_first_mb": rss[0] if rss else None,
        "rss_min_after_warmup_mb": min(later) if later else None,
        "rss_max_after_warmup_mb": max(later) if later else None,
        "anonymous_first_mb": anonymous[0] if anonymous else None,
        "anonymous_max_after_warmup_mb": max(later_anonymous) if later_anonymous else None,
        "folder": str(folder),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    os._exit(0 if result["missing"] == 0 and result["duplicates"] == 0 and code == 0 else 1)


if __name__ == "__main__":
    main()
