"""Style is part of the suite: ruff's lint and formatting and mypy, as pyproject.toml sets them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which(name)
    if found is None:  # in the dev group that `uv run pytest` installs
        pytest.fail(f"{name} is not installed in the test environment (the dev group has it)")
    return subprocess.run(
        [found, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return tool("ruff", *args)


def test_ruff_finds_no_lint_errors():
    done = ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_file_is_formatted():
    done = ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_no_type_errors_in_the_core_and_the_plugins():
    done = tool("mypy")  # the files and settings are pyproject.toml's [tool.mypy]
    assert done.returncode == 0, done.stdout + done.stderr
