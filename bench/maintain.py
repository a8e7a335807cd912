"""A simulated month of 24 h ticker polls, then `lakeflow maintain`, timed with queries.

Writes ``--polls`` commits (43,200: one poll a minute for 30 days) of ``--symbols`` rows
(600) through the real sink (``DeltaSink.commit``, one commit per poll, exactly what the
runtime does per flush of the ``binance_prices`` source), then times two queries
through the real ``lakeflow query`` command, ``lakeflow maintain``, and the same two
queries again. See bench/README.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from lakeflow_binance_prices import TICKER_24H

from lakeflow.config import SinkConfig
from lakeflow.sinks.delta import DeltaSink

LAKEFLOW = str(Path(sys.executable).parent / "lakeflow")
START = datetime(2026, 10, 1, tzinfo=UTC)
POLL_SECONDS = 60
#: Polls per scratch table: delta-rs commits slow down as a log grows (17 ms a commit
#: at 100 versions, 108 ms on average over the first 1,000 on this machine), so the
#: month is committed in short logs and stitched.
CHUNK = 50
SEED = 11
DECIMALS = [name for name, dtype in TICKER_24H.columns.items() if isinstance(dtype, pl.Decimal)]

PIPELINE = """\
[sink]
uri = "tables"

[maintenance]
enabled = false   # the benchmark runs `lakeflow maintain` itself

[sources.prices]
type = "binance_prices"
market = "spot"
"""


def symbols(count: int) -> list[str]:
    """``count`` distinct spot-like symbols: a base asset and a quote asset."""
    rng = random.Random(SEED)
    quotes = ["USDT", "BTC", "ETH", "BNB", "FDUSD", "TRY"]
    names: dict[str, None] = {}
    while len(names) < count:
        base = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(2, 6)))
        names[base + rng.choice(quotes)] = None
    return list(names)


class Month:
    """Builds each poll's rows: one row per symbol, a price that wanders through the day.

    A poll's rows depend only on its index, so chunks of the month can be built by
    several processes in any order.
    """

    def __init__(self, count: int) -> None:
        rng = random.Random(SEED)
        self.symbols = pl.Series("symbol", symbols(count))
        self.base = pl.Series([10 ** rng.uniform(-4, 5) for _ in range(count)])
        self.phase = pl.Series([rng.uniform(0, 6.283) for _ in range(count)])
        self.trade_id = pl.Series([rng.randint(1_000, 10_000_000) for _ in range(count)])

    def poll(self, index: int) -> pl.DataFrame:
        """The rows of poll ``index`` (0-based), as the decoder would return them."""
        rng = random.Random(index)
        n = self.symbols.len()

        def noise(low: float, high: float) -> pl.Series:
            return pl.Series([rng.uniform(low, high) for _ in range(n)])

        price = self.base * (1 + 0.05 * (self.phase + index / 240).sin()) * noise(0.999, 1.001)
        at = START + timedelta(seconds=index * POLL_SECONDS)
        values = {
            name: price * noise(0.9, 1.1) if "price" in name else noise(0, 1e6) for name in DECIMALS
        }
        values["last_price"] = price
        trade_id = self.trade_id + index * 30
        # Exchange values are decimal strings of at most 8 places; going through the
        # same strings gives the same exact decimals the real decoder produces.
        return pl.DataFrame(
            {
                "exchange": "binance",
                "market": "spot",
                "symbol": self.symbols,
                "pair": pl.Series([None] * len(self.symbols), dtype=pl.String),
                **{
                    name: v.round(8).cast(pl.String).cast(TICKER_24H.columns[name])
                    for name, v in values.items()
                },
                "open_time": at - timedelta(days=1),
                "close_time": at,
                "first_trade_id": trade_id - 50_000,
                "last_trade_id": trade_id,
                "trade_count": noise(0, 200_000).cast(pl.Int64),
                "polled_at": at,
                "date": at.date(),
            }
        )


def write_chunk(job: tuple[Path, int, int, int]) -> Path:
    """Commit polls ``first .. last-1`` through the real sink into a scratch table."""
    scratch, first, last, count = job
    sink = DeltaSink(SinkConfig(uri=str(scratch)))
    month = Month(count)
    for index in range(first, last):
        sink.commit("prices", TICKER_24H, month.poll(index), "prices", index + 1)
    return scratch / "prices"


def stitch(chunk: Path, table: Path, first: int) -> None:
    """Append a scratch table's commits to ``table`` as versions ``first, first + 1, ...``.

    The data files and every ``add``/``txn`` action are the sink's own; only the version
    numbers change (and the table-creating protocol/metaData actions of later chunks
    are dropped, as a real table holds them once).
    """
    log = table / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    for source in sorted((chunk / "_delta_log").glob("*.json")):
        version = first + int(source.stem)
        lines = []
        for line in source.read_text().splitlines():
            action = json.loads(line)
            if first and ("protocol" in action or "metaData" in action):
                continue
            if "commitInfo" in action and "readVersion" in action["commitInfo"]:
                action["commitInfo"]["readVersion"] = version - 1
            lines.append(json.dumps(action, separators=(",", ":")))
        (log / f"{version:020d}.json").write_text("\n".join(lines) + "\n")
    for data in chunk.rglob("*.parquet"):
        if "_delta_log" in data.parts:
            continue
        target = table / data.relative_to(chunk)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(data, target)
    shutil.rmtree(chunk.parent)


def age_log(table: Path, polls: int) -> None:
    """Date each log entry as if the month had been collected up to now, a poll a minute.

    Log cleanup removes entries by file age (``delta.logRetentionDuration``); without
    this, every entry of the simulated month would be minutes old and kept.
    """
    now = time.time()
    for version in range(polls):
        moment = now - (polls - version) * POLL_SECONDS
        os.utime(table / "_delta_log" / f"{version:020d}.json", (moment, moment))


def checkpoints(table: Path, polls: int) -> None:
    """The checkpoints that matter of the ones delta-rs writes every 100 versions.

    The latest one is where readers start; the latest one older than the log retention
    (7 days) is where log cleanup may delete up to. Each is dated like its version.
    """
    from deltalake import DeltaTable

    newest = (polls - 1) // 100 * 100
    week_old = (polls - 7 * 86_400 // POLL_SECONDS) // 100 * 100
    now = time.time()
    for version in sorted({v for v in (week_old, newest) if v > 0}):
        DeltaTable(str(table), version=version).create_checkpoint()
        moment = now - (polls - version) * POLL_SECONDS
        path = table / "_delta_log" / f"{version:020d}.checkpoint.parquet"
        os.utime(path, (moment, moment))


def generate(folder: Path, polls: int, count: int, workers: int) -> dict[str, Any]:
    """Write the month to ``folder/tables/prices``: ``polls`` commits of ``count`` rows.

    Chunks of :data:`CHUNK` polls are committed through ``DeltaSink.commit`` into
    scratch tables by ``workers`` processes, then stitched in order into one table, one
    Delta version per poll; checkpoints are then written where delta-rs writes them
    (every 100 versions), so reading the log costs what it costs on a real month.
    """

    table = folder / "tables" / "prices"
    started = time.perf_counter()
    jobs = [
        (folder / "scratch" / f"{first:06d}", first, min(first + CHUNK, polls), count)
        for first in range(0, polls, CHUNK)
    ]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, (job, chunk) in enumerate(zip(jobs, pool.imap(write_chunk, jobs), strict=True)):
            stitch(chunk, table, job[1])
            if (done + 1) % 20 == 0:
                rate = job[2] / (time.perf_counter() - started)
                print(f"  {job[2]}/{polls} commits, {rate:.0f}/s", file=sys.stderr, flush=True)
    written = time.perf_counter() - started
    age_log(table, polls)
    checkpoints(table, polls)
    return {
        "seconds": written,
        "checkpoint_seconds": time.perf_counter() - started - written,
        "commits": polls,
        "chunk": CHUNK,
        "workers": workers,
    }


def lakeflow(folder: Path, *args: str) -> tuple[float, str]:
    """Run the real ``lakeflow`` command in ``folder``; seconds and stdout."""
    started = time.perf_counter()
    done = subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"lakeflow {args[0]} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def queries(polls: int, symbol: str) -> dict[str, str]:
    """The two queries: one symbol over the last 24 h, all symbols over one hour."""
    end = START + timedelta(seconds=polls * POLL_SECONDS)
    day = end - timedelta(hours=24)
    hour = end - timedelta(hours=12)

    def ts(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S+00:00")

    return {
        "one symbol, last 24 h": (
            f"SELECT polled_at, CAST(last_price AS DOUBLE) AS price FROM prices "
            f"WHERE symbol = '{symbol}' AND date >= DATE '{day.date()}' "
            f"AND polled_at >= '{ts(day)}' ORDER BY polled_at"
        ),
        "all symbols, one hour, aggregated": (
            "SELECT symbol, min(CAST(last_price AS DOUBLE)) AS low, "
            "max(CAST(last_price AS DOUBLE)) AS high, "
            "sum(CAST(volume AS DOUBLE)) AS volume, count(*) AS polls FROM prices "
            f"WHERE date = DATE '{hour.date()}' AND polled_at >= '{ts(hour)}' "
            f"AND polled_at < '{ts(hour + timedelta(hours=1))}' GROUP BY symbol"
        ),
    }


def time_queries(folder: Path, sql: dict[str, str], repeat: int) -> dict[str, Any]:
    """Median seconds of each query over ``repeat`` runs, and its rows.

    ``seconds`` is the wall time of ``lakeflow query`` (a new process each time, as a user
    runs it); ``inside`` is the part of it after start-up: opening the tables (reading
    their logs) and running the query, measured in a fresh process by the same calls the
    command makes (``sink.scan`` per table, ``SQLContext.execute().collect()``).
    """
    out: dict[str, Any] = {}
    for name, text in sql.items():
        runs, inside = [], []
        rows = 0
        for _ in range(repeat):
            seconds, stdout = lakeflow(folder, "query", text, "--format", "csv")
            runs.append(seconds)
            rows = max(0, len(stdout.splitlines()) - 1)
            done = subprocess.run(
                [sys.executable, __file__, "--inside", text],
                cwd=folder,
                capture_output=True,
                text=True,
                check=True,
            )
            inside.append(float(done.stdout))
        out[name] = {
            "seconds": sorted(runs)[len(runs) // 2],
            "inside": sorted(inside)[len(inside) // 2],
            "runs": runs,
            "inside_runs": inside,
            "rows": rows,
        }
    return out


def query_inside(sql: str) -> float:
    """Seconds to open the pipeline's tables and run ``sql``, as ``lakeflow query`` does."""
    from lakeflow.config import load_pipeline
    from lakeflow.lake import Lake
    from lakeflow.plugins import load

    registry = load()
    spec = load_pipeline("lakeflow.toml", registry)
    started = time.perf_counter()
    sink = registry.sinks[spec.sink.type](spec.sink)
    sink.check()
    Lake.of(spec, sink).sql(sql)
    return time.perf_counter() - started


def one_more_hour(folder: Path, polls: int, count: int) -> dict[str, Any]:
    """Commit the next hour of polls through the sink, then time ``lakeflow maintain``.

    What the schedule does every hour on a maintained month: rewrite one partition.
    """
    sink = DeltaSink(SinkConfig(uri=str(folder / "tables")))
    month = Month(count)
    for index in range(polls, polls + 3600 // POLL_SECONDS):
        sink.commit("prices", TICKER_24H, month.poll(index), "prices", index + 1)
    seconds, output = lakeflow(folder, "maintain")
    return {"seconds": seconds, "output": output.strip().splitlines()}


def table_state(folder: Path) -> dict[str, Any]:
    """Data files, bytes, version and files per partition of the prices table."""
    from deltalake import DeltaTable

    table = DeltaTable(str(folder / "tables" / "prices"))
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    per_partition = actions.group_by("partition.date").len()["len"]
    log = folder / "tables" / "prices" / "_delta_log"
    return {
        "version": table.version(),
        "files": actions.height,
        "bytes": int(actions["size_bytes"].sum()),
        "rows": int(actions["num_records"].sum()),
        "partitions": per_partition.len(),
        "max_files_per_partition": int(per_partition.max()),
        "max_file_bytes": int(actions["size_bytes"].max()),
        "log_files": sum(1 for p in log.iterdir() if p.suffix == ".json"),
        "checkpoints": sum(1 for p in log.iterdir() if "checkpoint" in p.name),
        "folder_bytes": sum(
            p.stat().st_size for p in (folder / "tables").rglob("*") if p.is_file()
        ),
    }


def within_target(folder: Path) -> bool:
    """True when no partition holds more files than ``ceil(bytes / 128 MiB)``."""
    from deltalake import DeltaTable

    actions = pl.DataFrame(DeltaTable(str(folder / "tables" / "prices")).get_add_actions(True))
    per = actions.group_by("partition.date").agg(pl.len(), pl.col("size_bytes").sum())
    return bool((per["len"] <= (per["size_bytes"] / (128 << 20)).ceil()).all())


def main() -> None:
    """Parse the flags, run the benchmark, print a summary (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=43_200, help="commits (default: 30 days)")
    parser.add_argument("--symbols", type=int, default=600, help="rows per commit")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query (median)")
    parser.add_argument("--folder", type=Path, help="keep the tables here (default: a temp dir)")
    parser.add_argument("--workers", type=int, default=2, help="processes writing chunks")
    parser.add_argument(
        "--skip-write", action="store_true", help="--folder already holds the unmaintained month"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--inside", metavar="SQL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(query_inside(args.inside))
        return

    folder = args.folder or Path(tempfile.mkdtemp(prefix="lakeflow-maintain-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lakeflow.toml").write_text(PIPELINE)
    try:
        if args.skip_write:
            written: dict[str, Any] = {"skipped": True}
        else:
            print(
                f"writing {args.polls} commits of {args.symbols} rows in {folder}", file=sys.stderr
            )
            written = generate(folder, args.polls, args.symbols, args.workers)
        sql = queries(args.polls, symbols(args.symbols)[0])
        result: dict[str, Any] = {"polls": args.polls, "symbols": args.symbols, "write": written}
        result["startup_seconds"], _ = lakeflow(folder, "validate")
        result["before"] = table_state(folder)
        result["queries_before"] = time_queries(folder, sql, args.repeat)
        seconds, output = lakeflow(folder, "maintain")
        result["maintain"] = {"seconds": seconds, "output": output.strip().splitlines()}
        result["after"] = table_state(folder)
        result["queries_after"] = time_queries(folder, sql, args.repeat)
        seconds, output = lakeflow(folder, "maintain")
        result["maintain_again"] = {"seconds": seconds, "output": output.strip().splitlines()}
        result["after"]["files_within_target"] = within_target(folder)
        result["one_more_hour"] = one_more_hour(folder, args.polls, args.symbols)
        result["sql"] = sql
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    print_summary(result)


def print_summary(result: dict[str, Any]) -> None:
    """Human-readable figures."""
    b, a = result["before"], result["after"]
    print(f"{result['polls']} polls x {result['symbols']} symbols = {b['rows']:,} rows")
    if not result["write"].get("skipped"):
        print(f"written in {result['write']['seconds']:.0f}s through DeltaSink.commit")
    for key in ("files", "bytes", "version", "max_files_per_partition", "log_files"):
        print(f"  {key:<24} {b[key]:>14,} -> {a[key]:>14,}")
    print(f"lakeflow maintain: {result['maintain']['seconds']:.1f}s (process wall time)")
    for line in result["maintain"]["output"]:
        print(f"    {line}")
    print(f"lakeflow validate (process start, plugins, config): {result['startup_seconds']:.2f}s")
    print(f"lakeflow maintain again: {result['maintain_again']['seconds']:.1f}s")
    print(f"one more hour, then lakeflow maintain: {result['one_more_hour']['seconds']:.1f}s")
    for line in result["one_more_hour"]["output"]:
        print(f"    {line}")
    print("query: lakeflow query wall time; inside (tables opened + query, no start-up)")
    for name in result["queries_before"]:
        b, a = result["queries_before"][name], result["queries_after"][name]
        print(
            f"  {name:<36} {b['seconds']:6.2f}s -> {a['seconds']:5.2f}s "
            f"({b['seconds'] / a['seconds']:.1f}x); inside {b['inside']:6.3f}s -> "
            f"{a['inside']:6.3f}s ({b['inside'] / a['inside']:.1f}x)"
        )


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "2")
    main()
