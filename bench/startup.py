"""How long `lakeflow` commands take to answer: a process launch each, as a person types them.

Runs each command ``--runs`` times in a fresh folder holding the repository's
``lakeflow.toml`` (no state and no tables yet: ``status`` reads the status folder and
finds none, ``tables`` opens the sink and finds none, each importing what it always
imports), and prints per command the first launch ("cold": the first in this
invocation; with ``--drop-caches``, as root, after dropping the page cache) and the
median of the others ("warm"). Nothing leaves the machine: no command here connects
anywhere.

    uv run python bench/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
COMMANDS = (["--help"], ["validate"], ["status"], ["tables"], ["list-sources"])


def launch(args: list[str], cwd: Path) -> float:
    """Seconds from the launch of ``lakeflow ARGS`` to its exit."""
    started = time.perf_counter()
    subprocess.run(
        [LAKEFLOW, *args], cwd=cwd, capture_output=True, check=False, stdin=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def drop_caches() -> bool:
    """Drop the page cache (root only); False where that is not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="launches per command (default 7)")
    parser.add_argument("--drop-caches", action="store_true", help="cold = after a cache drop")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lakeflow-startup-"))
    try:
        shutil.copy(REPO / "lakeflow.toml", folder / "lakeflow.toml")
        figures = {}
        for args in COMMANDS:
            dropped = options.drop_caches and drop_caches()
            cold = launch(args, folder)
            warm = [launch(args, folder) for _ in range(max(1, options.runs - 1))]
            figures[" ".join(args)] = {
                "cold": round(cold, 3),
                "cold_after_cache_drop": dropped,
                "warm_median": round(statistics.median(warm), 3),
                "warm_min": round(min(warm), 3),
            }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if options.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"# lakeflow start-up, {options.runs} launches each; {os.cpu_count()} CPUs")
    for command, figure in figures.items():
        cold = "cold (cache dropped)" if figure["cold_after_cache_drop"] else "first"
        print(
            f"lakeflow {command:<14} {cold} {figure['cold']:.2f} s, "
            f"warm median {figure['warm_median']:.2f} s (min {figure['warm_min']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
