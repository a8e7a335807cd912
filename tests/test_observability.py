"""Seeing a run: `lakeflow status`, the live view, status lines, JSON logs, /metrics, /healthz."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import LAKEFLOW, free_port, reaped, wait_for
from lakeflow.runtime.status import SourceStatus, write_status


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


PIPELINE = """
[sink]
flush_interval = 0.2

[metrics]
listen = "127.0.0.1:{port}"

[log]
status_interval = 0.5

[sources.stream]
type = "test_sequence"
count = 1000000
rate = 200
bad_every = 100

[sources.clock]
type = "test_clock"
interval = 1.0
"""


class Run:
    """A real `lakeflow run` in the background, its stderr collected in a file."""

    def __init__(self, folder: Path, *args: str, port: int | None = None) -> None:
        self.folder = folder
        self.port = port
        self.log = folder / "run.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [LAKEFLOW, "run", *args],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> int:
        """SIGINT, then the exit code; killed if it has not exited within 30 s."""
        with reaped(self.process):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            return self.process.wait(30)

    def snapshot(self, source: str) -> dict:
        """The status file of ``source`` as last written ({} before the first)."""
        try:
            return json.loads((self.folder / "state" / "status" / f"{source}.json").read_text())
        except (OSError, ValueError):
            return {}

    def has_shown_everything(self) -> bool:
        """Whether each source did what this module's tests look at: the stream committed
        rows and a dead letter, the clock polled and committed, a status line was logged."""
        stream, clock = self.snapshot("stream"), self.snapshot("clock")
        return (
            stream.get("rows", 0) > 0
            and stream.get("commits", 0) > 0
            and stream.get("dead_letters", 0) > 0
            and clock.get("polls", 0) > 0
            and clock.get("rows", 0) > 0
            and "[stream] connected," in self.log.read_text()
        )


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Run]:
    """One healthy pipeline (a stream and a poll) with metrics, shared by this module."""
    folder = tmp_path_factory.mktemp("observed")
    port = free_port()
    (folder / "lakeflow.toml").write_text(PIPELINE.format(port=port))
    run = Run(folder, port=port)
    try:
        wait_for(lambda: http_get(run.url("/healthz"))[0] == 200, what="a healthy run")
        wait_for(run.has_shown_everything, what="commits, a dead letter, polls", log=run.log)
        yield run
    finally:
        run.stop()


def lakeflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def metrics(run: Run) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(run.url("/metrics"))
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def labels(source: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"source": source, "table": "test_records", **more}.items()))


def test_status_shows_each_running_source_with_its_state_and_counts(running):
    result = lakeflow(running.folder, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["source", "state", "rows/s", "rows"]
    stream = next(line for line in lines if line.startswith("stream "))
    clock = next(line for line in lines if line.startswith("clock "))
    # The state, then rows/s and the rows so far (none of them zero by now).
    assert re.match(r"stream +connected \S+ +[\d,.]+ +[1-9][\d,]* ", stream), stream
    assert re.match(r"clock +\w+, polled \S+ ago +[\d,.]+ +[1-9][\d,]* ", clock), clock
    assert "test_records" in stream


def test_status_json_has_the_figures_of_every_source(running):
    result = lakeflow(running.folder, "status", "--json")
    assert result.returncode == 0
    rows = {row["source"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"stream", "clock"}
    assert rows["stream"]["rows"] > 0
    assert rows["stream"]["dead_letters"] > 0
    assert rows["stream"]["kind"] == "streaming"
    assert rows["clock"]["polls"] > 0
    assert rows["clock"]["problem"] is None
    assert rows["stream"]["running"] is True


def test_metrics_count_payloads_rows_dead_letters_and_polls_per_source_and_table(running):
    samples = metrics(running)
    stream, clock = labels("stream"), labels("clock")
    assert samples[("lakeflow_payloads_received_total", stream)] > 0
    assert samples[("lakeflow_rows_committed_total", stream)] > 0
    assert samples[("lakeflow_dead_letters_total", stream)] > 0
    assert samples[("lakeflow_polls_total", clock)] > 0
    assert ("lakeflow_reconnects_total", stream) in samples
    assert ("lakeflow_gaps_total", stream) in samples
    assert ("lakeflow_spool_backlog_payloads", stream) in samples


def test_metrics_commit_latency_is_a_histogram_of_every_commit(running):
    samples = metrics(running)
    stream = labels("stream")
    count = samples[("lakeflow_commit_latency_seconds_count", stream)]
    assert count > 0
    assert samples[("lakeflow_commit_latency_seconds_bucket", labels("stream", le="+Inf"))] == count
    assert samples[("lakeflow_commit_latency_seconds_sum", stream)] > 0


def test_metrics_counters_only_grow_between_scrapes(running):
    key = ("lakeflow_payloads_received_total", labels("stream"))
    first = metrics(running)[key]
    wait_for(lambda: metrics(running)[key] > first, what="more payloads")


def test_metrics_include_the_process_memory(running):
    names = {name for name, _ in metrics(running)}
    assert "process_resident_memory_bytes" in names


def test_healthz_is_200_with_every_source_ok_while_all_are_healthy(running):
    status, body = http_get(running.url("/healthz"))
    assert status == 200
    report = json.loads(body)
    assert report["status"] == "ok"
    problems = {source: shown["problem"] for source, shown in report["sources"].items()}
    assert problems == {"stream": None, "clock": None}
    assert report["sources"]["stream"]["state"] == "connected"


def test_status_lines_are_logged_when_stdout_is_not_a_terminal(running):
    log = running.log.read_text()
    assert "[stream] connected," in log
    assert "rows (" in log and "/s)" in log


def test_healthz_is_503_naming_the_source_that_cannot_connect(tmp_path):
    port = free_port()
    dead = free_port()  # nothing listens here
    (tmp_path / "lakeflow.toml").write_text(
        f"""
[metrics]
listen = "127.0.0.1:{port}"

[sources.feed]
type = "test_websocket"
url = "ws://127.0.0.1:{dead}"
"""
    )
    run = Run(tmp_path, port=port)
    try:
        _, body = wait_for(
            lambda: (r := http_get(run.url("/healthz")))[0] == 503 and r, what="a 503"
        )
        report = json.loads(body)
        assert report["status"] == "unhealthy"
        assert report["reason"].startswith("feed: ")
        assert "not connected" in report["reason"]
    finally:
        run.stop()


def test_status_after_the_run_stopped_says_not_running_and_exits_1(tmp_path):
    (tmp_path / "lakeflow.toml").write_text(
        '[sources.clock]\ntype = "test_clock"\ninterval = 0.2\n'
    )
    run = Run(tmp_path)
    try:
        wait_for(lambda: (tmp_path / "state" / "status" / "clock.json").exists(), what="status")
    finally:
        exit_code = run.stop()
    assert exit_code == 0
    result = lakeflow(tmp_path, "status")
    assert result.returncode == 1
    assert "not running" in result.stdout


def test_status_of_a_pipeline_that_never_ran_says_so(tmp_path):
    (tmp_path / "lakeflow.toml").write_text('[sources.clock]\ntype = "test_clock"\n')
    result = lakeflow(tmp_path, "status")
    assert result.returncode == 1
    assert "clock: never ran" in result.stdout


def test_status_judges_health_as_of_the_snapshot_not_of_the_read(tmp_path):
    # Snapshot 3 s old (fresh), a poll 0.2 s before it, 0.5 s interval: healthy then.
    (tmp_path / "lakeflow.toml").write_text('[sources.s]\ntype = "test_clock"\n')
    taken = time.time() - 3
    snapshot = status(
        interval=0.5, pid=os.getpid(), started=taken - 10, updated=taken, last_poll=taken - 0.2
    )
    write_status(tmp_path / "state" / "status", [snapshot])

    result = lakeflow(tmp_path, "status")

    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_port_in_use_fails_the_run_before_collecting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "lakeflow.toml").write_text(
            f'[metrics]\nlisten = "127.0.0.1:{port}"\n\n[sources.clock]\ntype = "test_clock"\n'
        )
        result = lakeflow(tmp_path, "run")
    assert result.returncode == 2
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_bad_metrics_address_is_a_config_error_naming_the_key(tmp_path):
    (tmp_path / "lakeflow.toml").write_text('[metrics]\nlisten = "9464"\n')
    result = lakeflow(tmp_path, "validate")
    assert result.returncode == 2
    assert "metrics.listen: Value error, must be host:port" in result.stderr


def test_json_logs_are_one_object_per_line_each_naming_its_source(tmp_path):
    (tmp_path / "lakeflow.toml").write_text('[sources.clock]\ntype = "test_clock"\n')
    result = lakeflow(tmp_path, "run", "--once", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries
    assert all({"time", "level", "logger", "source", "message"} <= set(e) for e in entries)
    assert any(e["source"] == "clock" and "rows in" in e["message"] for e in entries)


def test_live_view_draws_the_status_table_on_a_terminal(tmp_path):
    (tmp_path / "lakeflow.toml").write_text(
        '[sources.clock]\ntype = "test_clock"\ninterval = 0.2\n'
    )
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [LAKEFLOW, "run"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        while b"polled" not in screen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    screen += os.read(leader, 65536)
                except OSError:
                    break
    finally:
        with reaped(process):  # killed if SIGINT does not stop it within 30 s
            process.send_signal(signal.SIGINT)
            process.wait(30)
        os.close(leader)
    text = screen.decode(errors="replace")
    assert "rows/s" in text and "dead letters" in text
    assert "clock" in text and "polled" in text
    # Log lines still reach the terminal, above the table.
    assert "polling source test_clock -> table test_records" in text


def status(**changes: object) -> SourceStatus:
    base = dict(
        source="s",
        type="t",
        kind="polling",
        table="x",
        interval=60.0,
        pid=1,
        state="idle",
        received=0,
        rows=0,
        rows_per_second=0.0,
        commits=0,
        dead_letters=0,
        ignored=0,
        reconnects=0,
        gaps=0,
        polls=0,
        failed_polls=0,
        backlog=0,
        started=1000.0,
        updated=1000.0,
        last_commit=None,
        last_poll=None,
        connected_since=None,
    )
    return SourceStatus(**{**base, **changes})  # type: ignore[arg-type]


def test_a_polling_source_is_healthy_within_two_intervals_of_its_last_poll():
    assert status(last_poll=1000.0).problem(now=1000.0 + 119) is None


def test_a_polling_source_without_a_poll_for_two_intervals_is_unhealthy():
    problem = status(last_poll=1000.0).problem(now=1000.0 + 121)
    assert problem == "last successful poll for 121s (interval 60s)"


def test_a_new_polling_source_gets_two_intervals_for_its_first_poll():
    assert status().problem(now=1000.0 + 100) is None
    assert status().problem(now=1000.0 + 130) == "no successful poll for 130s (interval 60s)"


def test_a_disconnected_stream_is_unhealthy():
    problem = status(kind="streaming", state="disconnected").problem()
    assert problem == "not connected (disconnected)"


def test_a_failed_source_is_unhealthy():
    assert status(state="failed").problem() == "stopped on an error (see the log)"


def test_every_counter_is_in_the_status_snapshot_and_the_metrics():
    from dataclasses import fields

    from lakeflow.runtime.metrics import _COUNTERS
    from lakeflow.runtime.stats import COUNTERS, SourceStats
    from lakeflow.runtime.status import SourceStatus

    snapshot = {f.name for f in fields(SourceStatus)}
    assert set(COUNTERS) <= snapshot
    assert all(hasattr(SourceStats(), name) for name in COUNTERS)
    assert [metric for metric, _, _ in _COUNTERS] == [metric for metric, _ in COUNTERS.values()]
