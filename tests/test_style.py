"""Style is part of the suite: ruff's lint and formatting and mypy, as pyproject.toml sets them."""

from __future__ import annotations

import shutil
import subprocess
import sys
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


def test_the_sink_the_committer_and_maintenance_do_not_import_the_config_loader():
    # The lower layers take their settings as models; binding a file to plugins is the
    # CLI's and the runtime's entry point, never something a sink reaches for.
    probe = (
        "import sys, lakeflow.sinks.delta.sink, lakeflow.sinks.delta.maintain, "
        "lakeflow.runtime.committer, lakeflow.runtime.maintenance\n"
        "print('lakeflow.config.loader' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
