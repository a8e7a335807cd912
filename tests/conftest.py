"""Shared fixtures of the core test suite."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

from harness import LAKEFLOW, with_test_plugins
from lakeflow.plugins import make_manager
from seaweedfs import SeaweedFS, WeedUnavailable

# Every `lakeflow` the suite starts finds the test plugin (see harness.TEST_PLUGINS).
os.environ["PYTHONPATH"] = with_test_plugins(os.environ.get("PYTHONPATH"))


@pytest.fixture
def pm() -> Iterator[pluggy.PluginManager]:
    """A plugin manager without entry points: tests register in-test plugins on it."""
    yield make_manager()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS S3 server on loopback for the session, with a bucket ``lakeflow``.

    Tests skip (saying why) only where the ``weed`` binary cannot run.
    """
    try:
        server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    except WeedUnavailable as exc:
        pytest.skip(f"no S3 server: {exc}")
    with server:
        yield server


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``lakeflow`` command in a subprocess, in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
        return subprocess.run(
            [LAKEFLOW, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline file into ``tmp_path`` and return its path."""

    def write(text: str, name: str = "lakeflow.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
