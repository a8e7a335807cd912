"""State files are their owner's only: folders 0700, files 0600, whatever the umask.

The state folder holds raw payloads (the spool), the endpoints a source connects to (its
status) and the pid that collects it (its lock); URLs may carry credentials.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

from harness import LAKEFLOW, wait_for

PIPELINE = """
[sink]
flush_interval = 0.2

[runtime]
keep_raw = true
segment_bytes = 65536

[sources.stream]
type = "test_sequence"
count = 1000000
rate = 500

[sources.clock]
type = "test_clock"
interval = 0.2
"""


def modes(folder: Path) -> dict[str, str]:
    """Every folder and file under ``folder`` (itself included), with its mode in octal."""
    found = {".": oct(stat.S_IMODE(folder.stat().st_mode))}
    for path in sorted(folder.rglob("*")):
        found[str(path.relative_to(folder))] = oct(stat.S_IMODE(path.stat().st_mode))
    return found


def open_to_others(found: dict[str, str], state: Path) -> dict[str, str]:
    """The entries of ``found`` whose mode is not 0700 (a folder) or 0600 (a file)."""
    return {
        name: mode
        for name, mode in found.items()
        if mode != ("0o700" if (state / name).is_dir() else "0o600")
    }


def committed_once(folder: Path) -> bool:
    """Both sources reported, and the stream rolled a compressed segment over."""
    state = folder / "state"
    return (
        (state / "status" / "stream.json").exists()
        and (state / "status" / "clock.json").exists()
        and any(state.glob("stream/*.spool.gz"))
    )


def run_under_umask_022(folder: Path) -> None:
    """The real `lakeflow run` with umask 022 until it has written state, then stopped."""
    log = folder / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [LAKEFLOW, "run"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            umask=0o022,
        )
    try:
        wait_for(lambda: committed_once(folder), what="state written", log=log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_every_state_folder_and_file_is_private_after_a_run_under_umask_022(tmp_path):
    (tmp_path / "lakeflow.toml").write_text(PIPELINE)

    run_under_umask_022(tmp_path)

    state = tmp_path / "state"
    found = modes(state)
    assert {"status/stream.json", "stream/lock"} <= set(found)  # what is looked at
    assert any(name.endswith(".spool") for name in found)
    assert open_to_others(found, state) == {}


def test_state_an_older_lakeflow_left_open_is_made_private_by_the_next_run(tmp_path):
    (tmp_path / "lakeflow.toml").write_text(PIPELINE)
    state = tmp_path / "state"
    for folder in (state, state / "stream", state / "clock", state / "status"):
        folder.mkdir()
        folder.chmod(0o755)
    for file in (state / "stream" / "lock", state / "status" / "stream.json"):
        file.write_text("{}")
        file.chmod(0o644)

    run_under_umask_022(tmp_path)

    found = modes(state)
    # The state folder itself is left as it was: it may be a folder shared on purpose.
    assert found.pop(".") == "0o755"
    assert open_to_others(found, state) == {}


def test_the_list_of_drift_marked_seen_is_private_under_umask_022(tmp_path):
    state = tmp_path / "state"
    mark = (
        "import sys; from lakeflow.runtime.status import mark_seen; "
        "mark_seen(sys.argv[1], {('stream', 'key', 'extra', '')})"
    )

    subprocess.run([sys.executable, "-c", mark, str(state)], check=True, umask=0o022, timeout=60)

    assert json.loads((state / "drift_seen.json").read_text()) == [["stream", "key", "extra", ""]]
    assert modes(state) == {".": "0o700", "drift_seen.json": "0o600"}
