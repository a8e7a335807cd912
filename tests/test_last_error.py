"""A source that keeps failing says why: in its status, in /healthz, and at the stop.

A run with no network looked like noise before: `lakeflow status` said `not connected
(disconnected)` with no cause, and a run that stored nothing exited 0 without saying so.
"""

from __future__ import annotations

import logging
import time

import pytest
from lakeflow_testsource.sources import WebSocketTestSource

from harness import Plugin, free_port, run
from lakeflow.runtime.status import SourceStatus


def status(**changes: object) -> SourceStatus:
    base: dict[str, object] = dict(
        source="s", type="t", kind="streaming", table="records", interval=None, pid=1,
        state="disconnected", received=0, rows=0, rows_per_second=0.0, commits=0,
        dead_letters=0, ignored=0, reconnects=3, gaps=1, polls=0, failed_polls=0, backlog=0,
        started=time.time() - 300, updated=time.time(), last_commit=None, last_poll=None,
        connected_since=None,
    )  # fmt: skip
    base.update(changes)
    return SourceStatus(**base)  # type: ignore[arg-type]


def test_a_disconnected_stream_says_its_last_error_in_its_problem() -> None:
    problem = status(last_error="ClientConnectorError: Cannot connect to host ws.okx.com:443")

    assert problem.problem() == (
        "not connected (disconnected): ClientConnectorError: Cannot connect to host ws.okx.com:443"
    )


def test_a_polling_source_behind_its_schedule_says_its_last_error() -> None:
    late = status(
        kind="polling", state="idle", interval=60.0, last_error="poll failed: TimeoutError"
    )

    assert late.problem() == (
        "no successful poll for 300s (interval 60s); last error: poll failed: TimeoutError"
    )


def test_a_source_without_an_error_keeps_the_short_problem() -> None:
    assert status().problem() == "not connected (disconnected)"


@pytest.fixture
def unreachable_run(pm, tmp_path, caplog):
    """A stream pointed at a port nobody listens on, run for two seconds."""
    pm.register(Plugin(WebSocketTestSource))
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    toml = (
        '[sink]\nuri = "tables"\n\n[sources.s]\ntype = "test_websocket"\n'
        f'url = "ws://127.0.0.1:{free_port()}/ws"\n'
    )
    result, _ = run(pm, tmp_path, toml, until=lambda stats: time.monotonic() - started > 2)
    return result, caplog


def test_a_run_that_stored_nothing_says_so_at_the_stop_with_the_last_error(unreachable_run):
    result, caplog = unreachable_run
    logged = [r.getMessage() for r in caplog.get_records("setup")]
    [line] = [message for message in logged if "collected nothing" in message]

    assert result.stats["s"].rows == 0
    assert line.startswith("collected nothing in ")
    assert "last error: " in line and "127.0.0.1" in line


def test_the_last_error_is_in_the_sources_stats(unreachable_run):
    result, _ = unreachable_run

    assert result.stats["s"].last_error is not None
    assert result.stats["s"].last_error_at is not None
