"""Long run: one collector, tens of thousands of commits into one table, with and without
scheduled maintenance; does a commit cost the same at the end as at the start?

One real runtime (``lakeflow.runtime.Runtime``, the real Delta sink, default
``[runtime]``) with one ``test_sequence`` source (numbered JSON payloads at ``--rate``
per second, no network), ``flush_interval`` ``--flush-interval``, runs in a fresh child
process until ``--commits`` commits have landed in its table (or ``--timeout``). The
maintenance schedule is compressed by the same factor as the flush interval (defaults:
5 s flush and [maintenance]'s 1 h schedule, 1 day vacuum, 1 h log retention), so one round
covers as many commits as it would with the defaults. The sink's ``commit`` is wrapped
in the child to time each commit of the data table; RSS is sampled once a second.

Reported per 1,000 commits: p50/p99 commit time, commits/s and RSS; and the first
1,000 against the last 1,000. Once with ``[maintenance]`` on, once off, beside it.

Usage (from the repository root)::

    uv run python bench/longrun.py [--commits 20000] [--flush-interval 0.05]
        [--maintenance-every 36] [--rate 400] [--only on,off] [--timeout 3600] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The child-process runner and the machine description are ingest.py's, shared. The
# test suite's plugin (``test_sequence``) is not installed: it is found by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "tests/plugins/lakeflow_testsource/src")
)
from ingest import machine, run_child

SOURCE = "long"
#: The flush interval the schedule is compressed from (``[sink] flush_interval``'s default).
DEFAULT_FLUSH = 5.0
BLOCK = 1000


def defaults() -> dict[str, float]:
    """The maintenance defaults (``[maintenance]``'s interval, the delta sink's vacuum and
    log retention), as lakeflow has them."""
    from lakeflow.config import MaintenanceConfig
    from lakeflow.sinks.delta import DeltaSettings

    sink = DeltaSettings.model_fields
    return {
        "interval": MaintenanceConfig.model_fields["interval"].default,
        "vacuum_retention": sink["vacuum_retention"].default,
        "log_retention": sink["log_retention"].default,
    }


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_pipeline(folder: Path, args: dict[str, Any], maintenance: bool) -> Path:
    """One ``test_sequence`` source at ``rate``, and the compressed maintenance schedule."""
    lines = [
        "[sink]",
        'uri = "tables"',
        f"flush_interval = {args['flush_interval']!r}",
        f"vacuum_retention = {args['vacuum_retention']!r}",
        f"log_retention = {args['log_retention']!r}",
        "",
        "[maintenance]",
        f"enabled = {'true' if maintenance else 'false'}",
        f"interval = {args['maintenance_every']!r}",
        "",
        f"[sources.{SOURCE}]",
        'type = "test_sequence"',
        "count = 1_000_000_000",
        f"rate = {args['rate']!r}",
    ]
    path = folder / "lakeflow.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class _Recorder(logging.Handler):
    """Keeps the maintenance reports and the sink's warnings, with the commit count then."""

    def __init__(self, commits: list[tuple[float, float, int]]) -> None:
        super().__init__(logging.INFO)
        self.commits = commits
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(
            {
                "at_commit": len(self.commits),
                "logger": record.name,
                "level": record.levelname,
                "message": record.getMessage()[:300],
            }
        )


def collector(args: dict[str, Any], maintenance: bool) -> dict[str, Any]:
    """The child: run the collector until ``commits`` commits landed; timings and RSS."""
    from lakeflow.config import load_pipeline
    from lakeflow.plugins import load
    from lakeflow.runtime import Runtime, SourceStats

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    commits: list[tuple[float, float, int]] = []  # (wall time at start, seconds, rows)
    recorder = _Recorder(commits)
    for name in (
        "lakeflow.runtime.maintenance",
        "lakeflow.sinks.delta.sink",
        "lakeflow.sinks.delta.maintain",
    ):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).addHandler(recorder)
        logging.getLogger(name).propagate = False  # kept for the report, not printed
    rss: list[tuple[float, int, float]] = []  # (wall time, commits so far, MB)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(1.0):
            rss.append((time.time(), len(commits), _rss_mb()))

    with tempfile.TemporaryDirectory(prefix="lakeflow-longrun-") as folder:
        registry = load()
        pipeline = load_pipeline(write_pipeline(Path(folder), args, maintenance), registry)
        table = pipeline.sources[SOURCE].table
        started = time.time()
        deadline = started + args["timeout"]

        def done(_: dict[str, SourceStats]) -> bool:
            return len(commits) >= args["commits"] or time.time() > deadline

        runtime = Runtime(pipeline, registry, stop_when=done)
        sink = runtime.sink
        inner = sink.commit

        def timed(table_name: str, schema: Any, rows: Any, app_id: str, sequence: int) -> bool:
            began = time.perf_counter()
            wrote = inner(table_name, schema, rows, app_id, sequence)
            if table_name == table:
                commits.append((time.time(), time.perf_counter() - began, rows.height))
            return wrote

        sink.commit = timed  # type: ignore[method-assign]
        threading.Thread(target=sample, daemon=True).start()
        rss.append((time.time(), 0, _rss_mb()))
        asyncio.run(runtime.run())
        sampling.set()
        stopped = time.time()
        stats = runtime.stats[SOURCE]

        from deltalake import DeltaTable

        path = Path(pipeline.sink.uri) / table
        handle = DeltaTable(str(path))
        log = list((path / "_delta_log").iterdir())
        final = {
            "version": handle.version(),
            "files": handle.get_add_actions().num_rows,
            "log_json": sum(p.name.endswith(".json") for p in log),
            "checkpoints": sum(p.name.endswith(".checkpoint.parquet") for p in log),
            "checkpoint_interval": handle.metadata().configuration.get("delta.checkpointInterval"),
        }
    return {
        "maintenance": maintenance,
        "commits": len(commits),
        "stopped_by": "commits" if len(commits) >= args["commits"] else "timeout",
        "seconds": stopped - started,
        "rows": stats.rows,
        "started": started,
        "timeline": [[round(t - started, 3), round(s * 1000, 2), n] for t, s, n in commits],
        "rss": [[round(t - started, 1), n, round(mb, 1)] for t, n, mb in rss],
        "table": final,
        "opens": getattr(sink, "opens", None),
        "log": recorder.lines,
    }


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def blocks(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per 1,000 commits: p50/p99/mean ms, commits/s, RSS at the block's end."""
    timeline, rss = run["timeline"], run["rss"]
    out = []
    for first in range(0, len(timeline) - BLOCK + 1, BLOCK):
        chunk = timeline[first : first + BLOCK]
        ms = [c[1] for c in chunk]
        end = chunk[-1][0]
        span = end - (timeline[first - 1][0] if first else chunk[0][0])
        # The sample nearest the block's last commit.
        mb = min(rss, key=lambda r: abs(r[0] - end))[2] if rss else None
        out.append(
            {
                "commits": f"{first + 1}-{first + BLOCK}",
                "p50_ms": round(_quantile(ms, 0.5), 1),
                "p99_ms": round(_quantile(ms, 0.99), 1),
                "mean_ms": round(statistics.fmean(ms), 1),
                "per_s": round(BLOCK / span, 1) if span > 0 else None,
                "rss_mb": mb,
                "at_s": round(end),
            }
        )
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One child per mode, one after the other (the machine has two cores)."""
    ctx = mp.get_context("spawn")
    options = {
        "commits": args.commits,
        "flush_interval": args.flush_interval,
        "maintenance_every": args.maintenance_every,
        "rate": args.rate,
        "timeout": args.timeout,
        "vacuum_retention": args.vacuum_retention,
        "log_retention": args.log_retention,
    }
    runs = {}
    for mode in args.only:
        run = run_child(ctx, collector, (options, mode == "on"), args.timeout + 600)
        run["blocks"] = blocks(run)
        runs[mode] = run
        if not args.json:
            print_run(mode, run, flush=True)
    return {"options": options, "runs": runs, "machine": machine()}


def print_run(mode: str, run: dict[str, Any], flush: bool = False) -> None:
    """The per-1,000 table of one run, then first against last."""
    t = run["table"]
    rounds = sum("maintained" in line["message"] for line in run["log"])
    print(
        f"## maintenance {mode}: {run['commits']:,} commits in {run['seconds']:.0f} s "
        f"(stopped by {run['stopped_by']}), {run['rows']:,} rows; table version {t['version']}, "
        f"{t['files']:,} files, {t['log_json']:,} log entries, {t['checkpoints']} checkpoints "
        f"(interval {t['checkpoint_interval'] or 'unset'}); {rounds} maintenance rounds; "
        f"handle opens {run['opens'] if run['opens'] is not None else 'n/a'}",
        flush=flush,
    )
    print("| commits | p50 ms | p99 ms | mean ms | commits/s | RSS MB | at s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b in run["blocks"]:
        print(
            f"| {b['commits']} | {b['p50_ms']} | {b['p99_ms']} | {b['mean_ms']} | "
            f"{b['per_s']} | {b['rss_mb']:.0f} | {b['at_s']} |"
        )
    if run["blocks"]:
        a, z = run["blocks"][0], run["blocks"][-1]
        print(
            f"first 1,000: p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, RSS {a['rss_mb']:.0f} MB; "
            f"last 1,000: p50 {z['p50_ms']} ms, p99 {z['p99_ms']} ms, RSS {z['rss_mb']:.0f} MB; "
            f"peak RSS {max(r[2] for r in run['rss']):.0f} MB"
        )
    for line in run["log"]:
        if line["level"] != "INFO":
            print(f"  at commit {line['at_commit']}: {line['level']} {line['message']}")
    print(flush=flush)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=20_000, help="commits per run (20000)")
    parser.add_argument(
        "--flush-interval", type=float, default=0.05, help="sink.flush_interval (0.05)"
    )
    parser.add_argument(
        "--maintenance-every",
        type=float,
        default=None,
        help="seconds between maintenance rounds (default: 1 h scaled as 5 s to the flush)",
    )
    parser.add_argument("--rate", type=float, default=400.0, help="payloads per second (400)")
    parser.add_argument(
        "--log-retention",
        default=None,
        help="log_retention before compression, e.g. 1h (default: the delta sink's, 1h)",
    )
    parser.add_argument("--only", default="on,off", help="maintenance modes to run: on, off")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="stop a run after this many seconds"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.only = [mode.strip() for mode in args.only.split(",") if mode.strip()]
    if not args.only or set(args.only) - {"on", "off"}:
        parser.error("--only takes on, off or on,off")
    if args.commits < BLOCK or args.flush_interval <= 0 or args.rate <= 0:
        parser.error(f"--commits >= {BLOCK}, --flush-interval > 0 and --rate > 0 please")
    # Every duration shrinks by the flush interval's factor: a round, a vacuum, a log
    # retention cover as many commits as they would at the defaults.
    scale = args.flush_interval / DEFAULT_FLUSH
    base = defaults()
    if args.log_retention is not None:
        from lakeflow.units import parse_duration

        base["log_retention"] = parse_duration(args.log_retention)
    if args.maintenance_every is None:
        args.maintenance_every = base["interval"] * scale
    args.vacuum_retention = base["vacuum_retention"] * scale
    args.log_retention = base["log_retention"] * scale
    # SIGTERM unwinds like Ctrl-C, so that the child is always killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.json:
        m = machine()
        print(
            f"# {m['cpus']} CPUs {m['cpu_model']}; python {m['python']} polars {m['polars']} "
            f"deltalake {m['deltalake']}; {m['date']}; pid {os.getpid()}; "
            f"flush {args.flush_interval:g} s, maintenance every {args.maintenance_every:g} s, "
            f"vacuum after {args.vacuum_retention:g} s, log kept {args.log_retention:g} s, "
            f"{args.rate:g} payloads/s, {args.commits:,} commits\n",
            flush=True,
        )
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
