"""One collector per source: a second `lakeflow run` of a source already collected is refused.

Two collectors of one source would commit under the same name (the second's commits all
refused, its payloads lost at stop) and overwrite each other's status files, so that
`lakeflow status` shows whichever wrote last. The per-source lock refuses the second at
its start, with or without the spool, and names the process that has the source.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import LAKEFLOW, reaped, start_run, wait_for

PIPELINE = """
[sink]
flush_interval = 0.2

[runtime]
spool = {spool}

[sources.stream]
type = "test_sequence"
count = 1000000
rate = 50
"""


def lakeflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``lakeflow`` command in ``folder``, to its end."""
    return subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def status_file(folder: Path) -> Path:
    return folder / "state" / "status" / "stream.json"


def connected(folder: Path) -> bool:
    try:
        return json.loads(status_file(folder).read_text())["state"] == "connected"
    except (OSError, ValueError):
        return False


def start_first(folder: Path, spool: bool) -> subprocess.Popen[bytes]:
    """A `lakeflow run` collecting the source ``stream``, once it is connected."""
    (folder / "lakeflow.toml").write_text(PIPELINE.format(spool=str(spool).lower()))
    log = folder / "first.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LAKEFLOW, "run"], cwd=folder, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
    try:
        wait_for(lambda: connected(folder), what="the first run connected", log=log)
    except BaseException:
        # Not handed to a fixture yet: nothing else would stop it.
        process.kill()
        process.wait()
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    with reaped(process):  # killed if it does not stop within the 30 s
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # should a test have left it frozen
            process.terminate()
        process.wait(30)


@pytest.fixture(params=[False, True], ids=["without-spool", "with-spool"])
def first(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `lakeflow run` collecting the source ``stream`` (connected), stopped at the end."""
    process = start_first(tmp_path, request.param)
    try:
        yield process
    finally:
        stop(process)


@dataclass
class Refused:
    """A second `lakeflow run` tried beside a first that collects the source."""

    first_pid: int
    second: subprocess.CompletedProcess[str]
    status_before: bytes
    status_after: bytes
    status_json: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module", params=[False, True], ids=["without-spool", "with-spool"])
def refused(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Refused]:
    """One first run, one refused second run (the first frozen meanwhile), then status.

    Shared by the tests that each check one consequence: one pair of runs per spool
    setting instead of one per test.
    """
    folder = tmp_path_factory.mktemp("refused")
    process = start_first(folder, request.param)
    try:
        # Frozen, the first run cannot refresh its status file: any change is the second's.
        process.send_signal(signal.SIGSTOP)
        try:
            before = status_file(folder).read_bytes()
            second = lakeflow(folder, "run")
            after = status_file(folder).read_bytes()
        finally:
            process.send_signal(signal.SIGCONT)
        status = lakeflow(folder, "status", "--json")
        yield Refused(process.pid, second, before, after, status)
    finally:
        stop(process)


def test_a_second_run_of_a_collected_source_is_refused_naming_the_pid_that_has_it(refused):
    assert f"source 'stream' is already collected by pid {refused.first_pid}" in (
        refused.second.stderr
    )
    assert "stop that one first" in refused.second.stderr


def test_a_second_run_that_could_start_no_source_exits_non_zero(refused):
    assert refused.second.returncode != 0


def test_a_refused_run_leaves_the_status_file_of_the_run_that_has_the_source_as_it_was(
    refused,
):
    assert refused.status_after == refused.status_before
    assert json.loads(refused.status_after)["pid"] == refused.first_pid


def test_status_still_shows_the_first_run_healthy_after_a_refused_second(refused):
    assert refused.status_json.returncode == 0, refused.status_json.stdout
    [shown] = json.loads(refused.status_json.stdout)
    assert (shown["pid"], shown["state"], shown["problem"]) == (
        refused.first_pid,
        "connected",
        None,
    )


def test_the_source_runs_again_once_the_run_that_had_it_stopped(first, tmp_path):
    first.terminate()
    assert first.wait(30) == 0
    with reaped(start_run(tmp_path)) as second:
        try:
            wait_for(
                lambda: (
                    connected(tmp_path)
                    and json.loads(status_file(tmp_path).read_text())["pid"] == second.pid
                ),
                what="the second run connected",
            )
        finally:
            second.terminate()
            said = second.communicate(timeout=30)[1]
    assert second.returncode == 0, said


@pytest.mark.parametrize("first", [True], ids=["with-spool"], indirect=True)
def test_replay_into_the_table_of_a_collected_source_is_refused_naming_the_pid(first, tmp_path):
    replay = lakeflow(tmp_path, "replay", "--source", "stream")

    assert replay.returncode != 0
    assert f"source 'stream' is already collected by pid {first.pid}" in replay.stderr
    assert "or replay into another --table" in replay.stderr
