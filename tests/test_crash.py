"""kill -9 of `lakeflow run` while a stand-in streams: nothing received is lost or doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from harness import LAKEFLOW, reaped, wait_for
from standin import Connection, StreamStandIn

KILLS = 10
#: Events in flight at a kill at 1,000/s: in the server's and the kernel's socket buffers,
#: sent but not yet read (what was read is on disk). Usually a few dozen; on a loaded
#: machine the reader can fall a few hundred milliseconds behind.
MAX_LOST_PER_KILL = 500


def pipeline(url: str) -> str:
    return f"""
[sink]
uri = "tables"
flush_interval = 0.5

[sources.stream]
type = "test_websocket"
url = "{url}"
"""


def spawn(folder: Path) -> subprocess.Popen[bytes]:
    with open(folder / "run.log", "ab") as log:
        return subprocess.Popen(
            [LAKEFLOW, "run"], cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )


def connections_seen(server: StreamStandIn) -> int:
    return len(server.connections)


def wait_connected(server: StreamStandIn, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(server.connections) < count or len(server.connections[-1].sent) < 50:
        assert time.monotonic() < deadline, "collector did not connect"
        time.sleep(0.02)


def landed_from(connection: Connection, table: Path) -> bool:
    """Whether ``table`` holds an event sent on ``connection``.

    Events are numbered in the order sent, across connections, and the connections before
    this one are closed: any event from its first one on is one of its own.
    """
    try:
        newest = pl.read_delta(str(table))["n"].max()
    except Exception:  # the table does not exist yet, or its first commit is being written
        return False
    return bool(connection.sent) and newest is not None and newest >= connection.sent[0]


def test_kill_9_at_random_moments_loses_only_in_flight_events_and_duplicates_none(tmp_path):
    rng = random.Random(7)
    table = tmp_path / "tables" / "test_records"
    (tmp_path / "lakeflow.toml").write_text("")
    with StreamStandIn(rate=1000) as server:
        (tmp_path / "lakeflow.toml").write_text(pipeline(server.url))
        for kill in range(KILLS):
            with reaped(spawn(tmp_path)) as process:
                wait_connected(server, kill + 1)
                time.sleep(rng.uniform(0.05, 1.5))  # the random moment of the kill
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        # A last run that stops cleanly commits everything, the crashes' spools included.
        with reaped(spawn(tmp_path)) as process:
            wait_connected(server, KILLS + 1)
            last = server.connections[-1]
            wait_for(
                lambda: landed_from(last, table),
                what="a row of the last connection",
                log=tmp_path / "run.log",
            )
            process.terminate()
            assert process.wait(30) == 0, (tmp_path / "run.log").read_text()[-3000:]

    rows = pl.read_delta(str(table))
    seen = rows["n"]
    assert seen.n_unique() == rows.height, "a payload was committed twice"
    committed = set(seen.to_list())
    sent_total = 0
    lost: list[int] = []
    for index, connection in enumerate(server.connections):
        sent_total += len(connection.sent)
        missing = [k for k in connection.sent if k not in committed]
        if index == len(server.connections) - 1:
            # The clean stop: everything it received landed; only events the server sent
            # after the collector stopped reading are absent.
            landed = [k for k in connection.sent if k in committed]
            assert all(k > max(landed) for k in missing)
            continue
        lost.append(len(missing))
        assert len(missing) <= MAX_LOST_PER_KILL, (index, len(missing))
        # Only the tail of a killed connection may be missing (what was in flight), and
        # all of it: an event read after one that never landed was lost on the way.
        tail = connection.sent[len(connection.sent) - len(missing) :]
        assert missing == tail, (index, sorted(set(missing) - set(tail))[:10])
    assert rows.height >= sent_total - (KILLS + 1) * MAX_LOST_PER_KILL
    assert DeltaTable(str(tmp_path / "tables" / "test_records")).transaction_version("stream")
    gaps = pl.read_delta(str(tmp_path / "tables" / "_gaps"))
    assert (gaps["reason"] == "lakeflow was not running").sum() == KILLS
    print(
        f"kills={KILLS} sent={sent_total} committed={rows.height} duplicates=0 lost per kill={lost}"
    )
