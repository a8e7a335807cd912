"""A secret from the environment stays out of everything a run leaves behind.

A source's URL carries a token as ``${LAKEFLOW_TEST_TOKEN}``; its server answers the
WebSocket handshake with a redirect, so the run's gaps, errors and health quote that URL.
Beside it a second source stores good payloads and dead-letters bad ones. After a real
``lakeflow run`` of a few seconds, the token is in no cell of any table, no file of the
tables or of the state folder (but the spool's segments, which hold payloads as
received), not in /metrics, /healthz, ``lakeflow status --json`` nor the log: the gap's
reason is there, with ``***`` where the token was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from harness import LAKEFLOW, free_port, wait_for
from lakeflow.testing import HttpStandIn, Response, WebSocketStandIn

VARIABLE = "LAKEFLOW_TEST_TOKEN"
SECRET = "s3cr3t-token-value-42"
MASK = "***"
#: The source whose URL holds the secret, and the one that stores and rejects payloads.
PRIVATE = "private_feed"
PUBLIC = "public_feed"
GOOD = [b'{"n": %d, "value": "%d.5"}' % (n, n) for n in range(1, 6)]
BAD = [b'{"n": "seven", "value": "7"}', b"not json at all", b'{"n": 8, "value": "x"}']
#: Seconds the run may take to connect, commit and retry: generous for a loaded machine.
PATIENCE = 60.0


def pipeline(metrics_port: int, redirecting: str, feed: str) -> str:
    return f"""
[sink]
uri = "tables"
flush_interval = 0.5

[metrics]
listen = "127.0.0.1:{metrics_port}"

[maintenance]
enabled = false

[sources.{PRIVATE}]
type = "test_websocket"
url = "{redirecting}/feed?token=${{{VARIABLE}}}"

[sources.{PUBLIC}]
type = "test_websocket"
url = "{feed}"
"""


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def read_table(path: Path) -> pl.DataFrame | None:
    try:
        return pl.read_delta(str(path))
    except Exception:  # not created yet, or its first commit is being written
        return None


@dataclass
class Leftovers:
    """What one run left, and what it showed while it ran."""

    folder: Path
    env: dict[str, str]
    #: Where each text was read (``/metrics``, ``status --json while running``, ...).
    shown: dict[str, str] = field(default_factory=dict)
    #: The query strings of the handshakes the redirecting server refused.
    handshakes: list[str] = field(default_factory=list)

    @property
    def tables(self) -> dict[str, pl.DataFrame]:
        """Every Delta table under the sink folder, by its folder name."""
        found = {}
        for log in sorted((self.folder / "tables").rglob("_delta_log")):
            frame = read_table(log.parent)
            assert frame is not None, f"cannot read {log.parent}"
            found[log.parent.name] = frame
        return found


def status_json(folder: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [LAKEFLOW, "status", "--json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.stdout.strip().startswith("["), result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory) -> Iterator[Leftovers]:
    """One run of both sources, stopped with SIGTERM once it has committed and retried."""
    folder = tmp_path_factory.mktemp("secret")
    env = {**os.environ, VARIABLE: SECRET}
    port = free_port()
    moved = Response(301, b"moved", headers={"Location": "/elsewhere"})
    with (
        HttpStandIn(then=moved) as redirecting,
        WebSocketStandIn([*GOOD[:3], *BAD, *GOOD[3:]]) as feed,
    ):
        (folder / "lakeflow.toml").write_text(
            pipeline(port, redirecting.url.replace("http://", "ws://"), feed.url)
        )
        record = Leftovers(folder, env)
        with (folder / "run.log").open("wb") as log:
            process = subprocess.Popen(
                [LAKEFLOW, "run"],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:

            def settled() -> bool:
                assert process.poll() is None, (folder / "run.log").read_text()[-3000:]
                rows = read_table(folder / "tables" / "test_records")
                letters = read_table(folder / "tables" / "_dead_letters")
                refused = [r for r in redirecting.requests if r.path == "/feed"]
                return (
                    len(refused) >= 2  # refused, then tried again
                    and rows is not None
                    and rows.height == len(GOOD)
                    and letters is not None
                    and letters.height == len(BAD)
                )

            wait_for(settled, PATIENCE, "rows, dead letters and a retried handshake", interval=0.2)
            record.shown["/metrics"] = http_get(f"http://127.0.0.1:{port}/metrics")[1]
            record.shown["/healthz"] = http_get(f"http://127.0.0.1:{port}/healthz")[1]
            record.shown["status --json while running"] = status_json(folder, env)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, (folder / "run.log").read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        # aiohttp follows the redirect, to /elsewhere: only the source's own URL counts.
        record.handshakes = [r.raw_query for r in redirecting.requests if r.path == "/feed"]
    record.shown["status --json after the run"] = status_json(folder, env)
    record.shown["the log"] = (folder / "run.log").read_text(errors="replace")
    yield record


def cells_holding(frame: pl.DataFrame, secret: str) -> list[str]:
    """``column[row]`` of every cell of ``frame`` that holds ``secret``, as text or bytes."""
    found = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == pl.Binary:
            hits = series.bin.contains(secret.encode())
        else:
            hits = series.cast(pl.String).str.contains(secret, literal=True)
        found += [f"{column}[{row}]" for row in hits.fill_null(False).arg_true().to_list()]
    return found


def files_holding(folder: Path, secret: str, *, skip: str | None = None) -> list[str]:
    """The files under ``folder`` whose bytes hold ``secret`` (but those ending in ``skip``)."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file()
        and not (skip and path.name.endswith(skip))
        and secret.encode() in path.read_bytes()
    )


def test_the_source_sent_the_secret_from_the_environment(leftovers):
    assert len(leftovers.handshakes) >= 2
    assert all(query == f"token={SECRET}" for query in leftovers.handshakes)


def test_the_gap_of_the_refused_handshake_quotes_its_url_with_the_secret_masked(leftovers):
    gaps = leftovers.tables["_gaps"].filter(source=PRIVATE)

    assert gaps.height >= 1
    assert all(f"token={MASK}" in reason for reason in gaps["reason"]), gaps["reason"].to_list()


def test_the_other_source_stored_rows_and_dead_letters(leftovers):
    tables = leftovers.tables

    assert tables["test_records"].filter(source=PUBLIC).height == len(GOOD)
    assert tables["_dead_letters"].filter(source=PUBLIC).height == len(BAD)


def test_no_cell_of_any_table_holds_the_secret(leftovers):
    tables = leftovers.tables
    assert {"_gaps", "_dead_letters", "test_records"} <= set(tables)

    found = {name: cells_holding(frame, SECRET) for name, frame in tables.items()}

    assert {name: cells for name, cells in found.items() if cells} == {}


def test_no_file_of_the_tables_holds_the_secret(leftovers):
    # The data files and the Delta log (its statistics quote the smallest and largest text).
    assert files_holding(leftovers.folder / "tables", SECRET) == []


def test_no_file_of_the_state_folder_holds_the_secret_but_the_raw_spool(leftovers):
    state = leftovers.folder / "state"
    assert (state / "status" / f"{PRIVATE}.json").is_file()

    assert files_holding(state, SECRET, skip=".spool") == []


@pytest.mark.parametrize(
    "where",
    [
        "/metrics",
        "/healthz",
        "status --json while running",
        "status --json after the run",
        "the log",
    ],
)
def test_what_the_run_shows_does_not_hold_the_secret(leftovers, where):
    shown = leftovers.shown[where]
    assert shown.strip(), f"{where} showed nothing"

    assert SECRET not in shown
