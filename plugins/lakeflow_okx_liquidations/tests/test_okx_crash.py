"""A crash of the real ``lakeflow run``: what the spool replays is sized like a live row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lakeflow_okx_liquidations import LIQUIDATION

from lakeflow.runtime.spool import Spool
from lakeflow.testing import read_table, write_pipeline

#: The console script of the environment the tests run in.
LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
SOURCE = "okx"
#: Seconds any one wait may take before the test fails: a hang, not a slow machine.
WITHIN = 60.0


def pipeline(folder: Path, ws_url: str, rest_url: str) -> None:
    # Nothing is flushed before the kill: every row of the table comes from the replay.
    write_pipeline(
        folder,
        "okx_liquidations",
        {"ws_url": ws_url, "rest_url": rest_url},
        name=SOURCE,
        flush_interval=600,
        runtime={"spool": True, "state_dir": "state"},
    )


def spawn(folder: Path) -> subprocess.Popen[bytes]:
    with open(folder / "run.log", "ab") as log:
        return subprocess.Popen(
            [LAKEFLOW, "run"], cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )


def spooled(folder: Path) -> list[bytes]:
    """Every payload in the source's spool (read without its lock: changes nothing)."""
    return [p for block in Spool(folder / "state" / SOURCE).read() for p in block.payloads]


def test_okx_rows_spooled_before_a_kill_9_are_sized_on_replay_by_prepare(
    tmp_path, okx_frames, okx_exchange, okx_rest, okx_expected, okx_stored, okx_listed
):
    """Payloads of a run killed while OKX's instrument list was down are replayed sized.

    The run must be the real ``lakeflow run`` in a subprocess, killed with SIGKILL:
    only then does nothing of the first run's shutdown path (a clean stop commits its
    buffer) run, so the payloads exist solely in the spool and the second run's start
    replays them. Before that replay the runtime prepares the source: the core reads the
    instrument list the OKX source declares; without it, the replayed rows would be
    committed before any instrument read and stored with null sizes.
    """
    swap, futures = okx_frames("swap_frames.jsonl"), okx_frames("futures_frames.jsonl")
    frames = swap + futures
    expected = okx_expected(frames, okx_listed)
    assert all(row["notional"] is not None for row in expected)  # every frame's is listed
    table = tmp_path / "tables" / LIQUIDATION.table
    log = tmp_path / "run.log"

    def said() -> str:
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    # 1. OKX's REST API down (every answer a 503: the read before the first decode gives
    # up after its retries, about 3.5 s): this run could only have stored its rows unsized.
    streaming = okx_exchange({"SWAP": swap, "FUTURES": futures})
    down = okx_rest(fail_after=0)
    pipeline(tmp_path, streaming.url, down.url)
    process = spawn(tmp_path)
    try:
        wait(lambda: set(frames) <= set(spooled(tmp_path)), process, said, "frames spooled")
        assert down.requests, "the first run never asked for the instrument list"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(WITHIN) == -signal.SIGKILL
    finally:
        stop(process)
    assert read_table(table).height == 0, "the first run committed before the kill"
    assert len(spooled(tmp_path)) == 2 + len(frames)  # the two subscription acks, the frames

    # 2. The list is back; the stream sends nothing new: every row is a replayed one.
    pipeline(tmp_path, okx_exchange().url, okx_rest().url)
    process = spawn(tmp_path)
    try:
        wait(lambda: committed_rows(table) >= len(expected), process, said, "the replay")
        process.terminate()
        assert process.wait(WITHIN) == 0, said()
    finally:
        stop(process)

    rows = read_table(table)
    for column in ("base_quantity", "notional", "notional_currency"):
        assert rows[column].null_count() == 0, f"replayed rows unsized ({column}):\n{said()}"
    assert okx_stored(rows) == expected  # each event once, with the exact decimals


def committed_rows(table: Path) -> int:
    """Rows in ``table`` now; 0 before its first commit is whole."""
    try:
        return read_table(table).height
    except Exception:  # the first commit is being written
        return 0


def wait(check, process: subprocess.Popen[bytes], said, what: str) -> None:
    """Poll ``check()`` until true; fail with the run's log if it exits or takes too long."""
    deadline = time.monotonic() + WITHIN
    while not check():
        assert process.poll() is None, f"lakeflow run exited ({process.returncode}):\n{said()}"
        assert time.monotonic() < deadline, f"{what}: not reached in {WITHIN:g}s:\n{said()}"
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
