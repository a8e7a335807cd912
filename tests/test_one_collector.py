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
from pathlib import Path

import pytest

from harness import LAKEFLOW, wait_for

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


@pytest.fixture(params=[False, True], ids=["without-spool", "with-spool"])
def first(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `lakeflow run` collecting the source ``stream`` (connected), stopped at the end."""
    (tmp_path / "lakeflow.toml").write_text(PIPELINE.format(spool=str(request.param).lower()))
    log = tmp_path / "first.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LAKEFLOW, "run"], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
    try:
        wait_for(lambda: connected(tmp_path), what="the first run connected", log=log)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # should a test have left it frozen
            process.terminate()
        process.wait(30)


def test_a_second_run_of_a_collected_source_is_refused_naming_the_pid_that_has_it(first, tmp_path):
    second = lakeflow(tmp_path, "run")

    assert f"source 'stream' is already collected by pid {first.pid}" in second.stderr
    assert "stop that one first" in second.stderr


def test_a_second_run_that_could_start_no_source_exits_non_zero(first, tmp_path):
    second = lakeflow(tmp_path, "run")

    assert second.returncode != 0


def test_a_refused_run_leaves_the_status_file_of_the_run_that_has_the_source_as_it_was(
    first, tmp_path
):
    # Frozen, the first run cannot refresh its status file: any change is the second's.
    first.send_signal(signal.SIGSTOP)
    try:
        before = status_file(tmp_path).read_bytes()
        lakeflow(tmp_path, "run")
        after = status_file(tmp_path).read_bytes()
    finally:
        first.send_signal(signal.SIGCONT)

    assert after == before
    assert json.loads(after)["pid"] == first.pid


def test_status_still_shows_the_first_run_healthy_after_a_refused_second(first, tmp_path):
    lakeflow(tmp_path, "run")

    status = lakeflow(tmp_path, "status", "--json")

    assert status.returncode == 0, status.stdout
    [shown] = json.loads(status.stdout)
    assert (shown["pid"], shown["state"], shown["problem"]) == (first.pid, "connected", None)


def test_the_source_runs_again_once_the_run_that_had_it_stopped(first, tmp_path):
    first.terminate()
    assert first.wait(30) == 0
    second = subprocess.Popen(
        [LAKEFLOW, "run"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
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
