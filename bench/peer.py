"""The peer of ``bench/ingest.py``: cryptofeed, in a virtual environment of its own.

cryptofeed is what users pick instead of lakeflow to collect Binance liquidations. It
needs Python >= 3.13 and is AGPL, so it never enters lakeflow's environment: this module
makes (once) a separate virtual environment with ``uv`` under ``bench/.peer/`` (ignored
by git) and runs ``bench/cryptofeed_reader.py`` in it, against the benchmark's sender.

    uv run python bench/peer.py            # make the environment, print its interpreter
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

CRYPTOFEED = "cryptofeed==3.0.1"
HERE = Path(__file__).resolve().parent
VENVS = HERE / ".peer"
READER = HERE / "cryptofeed_reader.py"


class PeerUnavailable(RuntimeError):
    """The peer's environment could not be made (no uv, no Python >= 3.13, no index)."""


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise PeerUnavailable("uv is not on PATH (it makes cryptofeed's environment)")
    return found


def environment(python: str = ">=3.13", requirement: str = CRYPTOFEED) -> Path:
    """The interpreter of cryptofeed's virtual environment, made on first use.

    ``python`` is what ``uv venv --python`` takes: a version request (uv finds an
    installed interpreter or downloads one) or a path to an interpreter.
    """
    name = requirement.replace("==", "-").replace(">=", "-")
    venv = VENVS / name
    interpreter = venv / "bin" / "python"
    marker = venv / ".lakeflow-bench-ready"
    if marker.exists() and interpreter.exists():
        return interpreter
    uv = _uv()
    shutil.rmtree(venv, ignore_errors=True)
    VENVS.mkdir(parents=True, exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n", encoding="utf-8")
    # Outside lakeflow's project: uv must neither read its pyproject nor sync its venv.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT")}
    for command in (
        [uv, "venv", "--no-project", "--python", python, str(venv)],
        [uv, "pip", "install", "--python", str(interpreter), requirement],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise PeerUnavailable(
                f"`{' '.join(command[1:3])}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
    marker.write_text(requirement + "\n", encoding="utf-8")
    return interpreter


def run_reader(
    interpreter: Path, ws_base: str, rest_base: str, n: int, timeout: float, ca_file: str
) -> dict[str, Any]:
    """Run cryptofeed against the sender until it has counted ``n`` liquidations.

    cryptofeed accepts only ``wss://`` addresses: the sender's TLS port, its certificate
    trusted through ``ca_file`` (OpenSSL's ``SSL_CERT_FILE`` for aiohttp and websockets,
    ``REQUESTS_CA_BUNDLE`` for the symbol list that cryptofeed fetches with requests).
    """
    command = [str(interpreter), "-X", "faulthandler", str(READER)]
    command += ["--ws", ws_base, "--rest", rest_base, "--n", str(n)]
    env = {**os.environ, "SSL_CERT_FILE": ca_file, "REQUESTS_CA_BUNDLE": ca_file}
    env.pop("VIRTUAL_ENV", None)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=HERE, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"cryptofeed counted fewer than {n} in {timeout:.0f}s") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0 or "error" in result or "rate" not in result:
        raise RuntimeError(
            f"cryptofeed exited {done.returncode}: {result.get('error', '')} "
            f"{done.stderr.strip()[-1500:]}"
        )
    return result


if __name__ == "__main__":
    print(environment(*sys.argv[1:2]))
