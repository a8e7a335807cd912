"""Code style is part of the suite: ruff lint and formatting, as pyproject.toml sets them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("ruff")
    if found is None:  # ruff is in the dev group that `uv run pytest` installs
        pytest.fail("ruff is not installed in the test environment (the dev group has it)")
    return subprocess.run(
        [found, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_ruff_finds_no_lint_errors():
    done = ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_file_is_formatted():
    done = ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr
