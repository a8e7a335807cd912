"""Test harness: the real `lakeflow` command, pipelines of in-test plugins run in-process,
and the small helpers the suite's tests share (waiting, reaping a subprocess, a table's
commits, a free port).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import AnyStr, TypeVar

import pytest
from deltalake import DeltaTable
from lakeflow_testsource import RECORD

import lakeflow
from lakeflow.config import load_pipeline
from lakeflow.plugins import load
from lakeflow.runtime import Runtime

#: The console script of the environment the tests run in.
LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
#: The suite's own plugin, not installed: its module and entry point (a dist-info beside
#: it) are found by path, in this process (pytest's ``pythonpath``) and in every
#: ``lakeflow`` subprocess (PYTHONPATH, set by conftest.py).
TEST_PLUGINS = str(Path(__file__).parent / "plugins" / "lakeflow_testsource" / "src")

#: The workspace's first-party plugins (plugins/). The core's tests run without them;
#: the integration tests (the shipped default pipeline, the README's and the notebook's
#: walk-throughs, entry-point discovery) need them, and are marked so.
WORKSPACE_PLUGINS = ("lakeflow_binance_liquidations", "lakeflow_binance_prices", "lakeflow_charts")
needs_workspace_plugins = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in WORKSPACE_PLUGINS),
    reason="needs the workspace's first-party plugins installed (`uv sync` installs them)",
)

T = TypeVar("T")


def with_test_plugins(pythonpath: str | None) -> str:
    """``pythonpath`` with the test plugin's folder first."""
    return os.pathsep.join(p for p in (TEST_PLUGINS, pythonpath) if p)


def run(pm, tmp_path: Path, toml: str, *, until=None, once=False, timeout=20.0):
    """Run a pipeline made of in-test plugins registered on ``pm``."""
    path = tmp_path / "lakeflow.toml"
    path.write_text(toml)
    registry = load(pm, entry_points=False)
    assert not registry.errors, registry.errors
    pipeline = load_pipeline(path, registry)
    runtime = Runtime(pipeline, registry, stop_when=until, once=once)
    return asyncio.run(asyncio.wait_for(runtime.run(), timeout)), tmp_path / "tables"


class Plugin:
    """Registers the given source classes and the test record schema."""

    def __init__(self, *sources, sinks=()):
        self.sources, self.sinks = sources, sinks

    @lakeflow.hookimpl
    def register_schemas(self, register):
        register(RECORD)

    @lakeflow.hookimpl
    def register_sources(self, register):
        for cls in self.sources:
            register(cls)

    @lakeflow.hookimpl
    def register_sinks(self, register):
        for cls in self.sinks:
            register(cls)


def start_run(
    folder: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """The real ``lakeflow run`` started in ``folder``, its log on a pipe (``stderr``).

    Use it inside :func:`reaped`, so that a failing test does not leave it running.
    """
    return subprocess.Popen(
        [LAKEFLOW, "run", *args],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ if env is None else env),
    )


def run_until(
    folder: Path,
    done: Callable[[], bool],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> str:
    """Run the real ``lakeflow run`` in ``folder`` until ``done()``, then stop it (SIGTERM).

    Fails with the run's stderr if it exits early, if ``done()`` does not hold within
    ``timeout`` seconds, or if it does not exit 0 when stopped. Returns its stderr (the log).
    """
    process = start_run(folder, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, f"not done in {timeout:g}s"
            time.sleep(0.1)
        process.terminate()
        log = process.communicate(timeout=60)[1]
        assert process.returncode == 0, log
        return log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def reaped(process: subprocess.Popen[AnyStr]) -> Iterator[subprocess.Popen[AnyStr]]:
    """``process`` for the ``with`` block; on the way out, killed if it still runs, and waited for.

    A test that fails (or times out) between starting a collector and stopping it must not
    leave it running: it would hold its port, its lock and its files past the test.
    """
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_for(
    check: Callable[[], T],
    timeout: float = 30.0,
    what: str = "",
    *,
    log: Path | None = None,
    interval: float = 0.05,
) -> T:
    """Call ``check()`` every ``interval`` seconds until it is truthy; return its value.

    Past ``timeout`` seconds, fail saying ``what`` was awaited (and the end of ``log``).
    """
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            said = f"{what or 'condition'} not reached in {timeout:g}s"
            if log is not None:
                said += f"; the log:\n{log.read_text()[-3000:]}"
            raise AssertionError(said)
        time.sleep(interval)
    return value


async def wait_until(
    check: Callable[[], object], what: str = "", within: float = 30.0, *, interval: float = 0.01
) -> None:
    """:func:`wait_for` inside a running event loop: the loop runs on between looks.

    For a condition that the loop's own timers and tasks make true. Past ``within``
    seconds, fail saying ``what`` was awaited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what or 'condition'} not reached in {within:g}s")
        await asyncio.sleep(interval)


def committed(table: Path | str, app_id: str, storage_options: dict[str, str] | None = None) -> int:
    """The last sequence ``app_id`` committed to ``table`` (its Delta ``txn``), 0 if none yet."""
    try:
        delta = DeltaTable(str(table), storage_options=storage_options)
        return delta.transaction_version(app_id) or 0
    except Exception:  # the table does not exist yet, or its first commit is being written
        return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
