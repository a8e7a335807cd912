"""A stop records the gap it finds open: in a handshake, in a reconnect's backoff, after a drop.

A stream that is not connected when `lakeflow run` stops has not covered its feed since
its outage began (or, on a first connection that never came up, since the run started).
That stretch is recorded in ``_gaps`` up to the stop, with the reason it began; the next
run's "lakeflow was not running" gap then starts at the stop, so the two tile the time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from lakeflow_testsource import SequenceSource, WebSocketTestSource

from harness import LAKEFLOW, Plugin, free_port, run, wait_for
from lakeflow.sinks.delta import DeltaSink
from standin import LoopbackServer, accept_websocket, event

NOT_RUNNING = "lakeflow was not running"


class SlowLoris(LoopbackServer):
    """Accepts TCP connections and never answers: a WebSocket handshake waits forever."""

    def __init__(self) -> None:
        super().__init__()
        #: Epoch seconds of every connection accepted.
        self.accepted: list[float] = []

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._socket.accept()
            except OSError:
                return
            self.accepted.append(time.time())
            self._held.append(client)  # never read, never answered


def pipeline(url: str) -> str:
    return (
        f'[sink]\nflush_interval = 0.2\n\n[sources.feed]\ntype = "test_websocket"\nurl = "{url}"\n'
    )


def gaps(folder: Path) -> pl.DataFrame:
    """Every gap recorded so far, oldest first (empty while the table is being made)."""
    try:
        return pl.read_delta(str(folder / "tables" / "_gaps")).sort("gap_start")
    except Exception:
        return pl.DataFrame()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Stopped:
    """A real `lakeflow run` stopped with SIGTERM: when it was asked to, when it had exited."""

    folder: Path
    asked: datetime
    exited: datetime
    exit_code: int
    log: str


def stop_when(folder: Path, ready: object, name: str = "run") -> Stopped:
    """Run `lakeflow run` in ``folder`` until ``ready()``, then SIGTERM it and wait."""
    log = folder / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LAKEFLOW, "run"], cwd=folder, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
    try:
        wait_for(ready, what=f"{name} ready to be stopped", log=log)  # type: ignore[arg-type]
        asked = time.time()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(30)
        exited = time.time()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Stopped(folder, at(asked), at(exited), exit_code, log.read_text())


@dataclass
class TwoRuns:
    server: SlowLoris
    first: Stopped
    second: Stopped


@pytest.fixture(scope="module")
def stopped_in_handshake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    """A run stopped while its first handshake waits, then a second run of the same source."""
    folder = tmp_path_factory.mktemp("handshake")
    with SlowLoris() as server:
        (folder / "lakeflow.toml").write_text(pipeline(server.url))
        # A few seconds into the handshake, well within its 10 s open_timeout.
        first = stop_when(
            folder, lambda: server.accepted and time.time() - server.accepted[0] > 2, "first"
        )
        second = stop_when(folder, lambda: (gaps(folder)["reason"] == NOT_RUNNING).any(), "second")
        yield TwoRuns(server, first, second)


def first_runs_gap(runs: TwoRuns) -> dict:
    """The one gap the first run recorded."""
    [gap] = gaps(runs.first.folder).filter(pl.col("gap_end") <= runs.first.exited).rows(named=True)
    return gap


def test_a_stop_during_the_handshake_records_the_open_gap_until_the_stop(stopped_in_handshake):
    runs = stopped_in_handshake
    assert runs.first.exit_code == 0, runs.first.log[-3000:]
    gap = first_runs_gap(runs)

    assert runs.first.asked <= gap["gap_end"] <= runs.first.exited


def test_a_first_connection_that_never_came_up_is_a_gap_from_the_runs_start(stopped_in_handshake):
    gap = first_runs_gap(stopped_in_handshake)

    assert gap["gap_start"] <= at(stopped_in_handshake.server.accepted[0])


def test_the_gap_of_a_stop_in_the_handshake_says_the_handshake_went_unanswered_and_where(
    stopped_in_handshake,
):
    gap = first_runs_gap(stopped_in_handshake)

    assert gap["reason"].startswith("not connected yet: ")
    assert "waiting for the answer to the WebSocket handshake" in gap["reason"]
    assert stopped_in_handshake.server.url in gap["reason"]


def test_the_next_runs_not_running_gap_starts_where_the_stopped_runs_gap_ended(
    stopped_in_handshake,
):
    runs = stopped_in_handshake
    gap = first_runs_gap(runs)
    [not_running] = gaps(runs.first.folder).filter(pl.col("reason") == NOT_RUNNING).rows(named=True)

    # Neither an uncovered moment between the two, nor a moment counted twice.
    assert not_running["gap_start"] == gap["gap_end"]


def test_a_stop_in_the_backoff_before_a_reconnect_records_the_gap_with_the_failures_reason(
    tmp_path,
):
    # A refused connection is an unreachable host: its reconnects are logged at DEBUG.
    toml = pipeline(f"ws://127.0.0.1:{free_port()}") + '\n[log]\nlevel = "DEBUG"\n'
    (tmp_path / "lakeflow.toml").write_text(toml)

    stopped = stop_when(tmp_path, lambda: "reconnecting in" in (tmp_path / "run.log").read_text())

    [gap] = gaps(tmp_path).rows(named=True)
    assert stopped.asked <= gap["gap_end"] <= stopped.exited
    assert gap["reason"].startswith("not connected yet: ClientConnectorError")


class GoneAfterAFewEvents(LoopbackServer):
    """Answers one WebSocket handshake, sends a few events, closes (1001) and goes away.

    The connection ends with a reason, and every reconnect after it is refused.
    """

    def _serve(self) -> None:
        client, _ = self._socket.accept()
        self._socket.close()  # from now on, connections are refused
        with client:
            accept_websocket(client)
            for k in range(5):
                payload = event(k).encode()
                client.sendall(bytes([0x81, len(payload)]) + payload)
            client.sendall(bytes([0x88, 2]) + (1001).to_bytes(2, "big"))  # going away
            time.sleep(1)  # the client's close frame, unread: it is leaving anyway


def test_a_stop_while_disconnected_records_the_gap_since_the_drop_with_its_reason(tmp_path):
    with GoneAfterAFewEvents() as server:
        (tmp_path / "lakeflow.toml").write_text(pipeline(server.url))

        stopped = stop_when(
            tmp_path, lambda: "reconnecting in" in (tmp_path / "run.log").read_text()
        )

    [gap] = gaps(tmp_path).rows(named=True)
    assert stopped.asked <= gap["gap_end"] <= stopped.exited
    assert gap["reason"] == "ConnectionError: server closed the connection (code 1001)"


class QuickOpen(WebSocketTestSource):
    """The core's WebSocket source, giving up on a handshake after a fraction of a second."""

    type = "test_quick_open"
    open_timeout = 0.3


def test_a_handshake_that_times_out_says_no_answer_came_within_open_timeout_and_where(pm, tmp_path):
    pm.register(Plugin(QuickOpen), name="t")
    with SlowLoris() as server:
        run(
            pm,
            tmp_path,
            f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_open"\n'
            f'url = "{server.url}"\n',
            until=lambda stats: stats["s"].reconnects >= 1,
        )

    [gap] = gaps(tmp_path).rows(named=True)
    assert gap["reason"] == (
        f"not connected yet: OpenTimeout: no answer to the handshake within 0.3 s from {server.url}"
    )


def test_a_timed_out_handshake_names_the_url_with_its_credentials_masked(pm, tmp_path):
    pm.register(Plugin(QuickOpen), name="t")
    with SlowLoris() as server:
        run(
            pm,
            tmp_path,
            f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_quick_open"\n'
            f'url = "ws://someone:hunter2@127.0.0.1:{server.port}"\n',
            until=lambda stats: stats["s"].reconnects >= 1,
        )

    [gap] = gaps(tmp_path).rows(named=True)
    assert "hunter2" not in gap["reason"]
    assert f"@127.0.0.1:{server.port}" in gap["reason"]


class FullTablesSink(DeltaSink):
    """A Delta sink whose every commit meets a full disk: a start that cannot commit."""

    type = "test_full_tables"

    def commit(self, *args, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        raise OSError("Generic LocalFileSystem error: No space left on device (os error 28)")


def test_a_run_stopped_before_its_source_started_leaves_the_not_running_gap_to_the_next(
    pm, tmp_path
):
    pm.register(Plugin(SequenceSource, sinks=[FullTablesSink]), name="t")
    source = '[sources.s]\ntype = "test_sequence"\ncount = 5\n'
    run(pm, tmp_path, "[sink]\nflush_interval = 0.1\n" + source, until=lambda s: s["s"].rows >= 5)
    first_stop = json.loads((tmp_path / "state" / "status" / "s.json").read_text())
    # Its "not running" gap cannot be committed, and it is stopped before the source starts.
    started = time.monotonic()
    run(
        pm,
        tmp_path,
        '[sink]\ntype = "test_full_tables"\nflush_interval = 0.1\n' + source,
        until=lambda s: time.monotonic() - started > 1.5,
    )

    run(pm, tmp_path, "[sink]\nflush_interval = 0.1\n" + source, until=lambda s: s["s"].rows >= 5)

    [not_running] = gaps(tmp_path).filter(pl.col("reason") == NOT_RUNNING).rows(named=True)
    assert not_running["gap_start"] == at(first_stop["covered_until"])
