"""Fixtures of the charts plugin's tests: a pipeline file in a temporary folder, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: The console script of the environment the tests run in.
LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[..., Path]:
    """Write a pipeline file into ``tmp_path`` and return its path."""

    def write(text: str, name: str = "lakeflow.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed ``lakeflow`` command in a subprocess, in ``tmp_path``."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LAKEFLOW, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
        )

    return run
