"""Poll benchmark: one 24 h ticker snapshot of N spot symbols, decoded and committed.

Each cycle hands the real ``binance_prices`` source's ``decode`` one response body (a
JSON array of ``--symbols`` tickers in the shape of ``GET /api/v3/ticker/24hr``,
generated once up front), then commits the rows through the real
``lakeflow.sinks.delta.DeltaSink`` into a temporary folder, as the runtime does after a
poll. The network is excluded. Prints p50/p99 of decode + commit over ``--cycles``.

Usage (from the repository root)::

    uv run python bench/poll.py [--symbols 3000] [--cycles 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

import lakeflow
from lakeflow.config import SinkConfig
from lakeflow.plugins import load
from lakeflow.sinks.delta import DeltaSink

SEED = 20261125
#: closeTime of the first cycle's tickers: 2024-11-25T00:00:00Z minus 1 ms.
CLOSE_MS = 1_732_492_800_000 - 1
QUOTES = ("USDT", "BTC", "ETH", "BNB", "FDUSD", "USDC", "TRY", "EUR", "BRL", "JPY")


def make_symbols(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct spot symbols (BTCUSDT, ETHBTC, and made-up ones of that shape)."""
    symbols = ["BTCUSDT", "ETHBTC", "PEPEUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"][:count]
    seen = set(symbols)
    while len(symbols) < count:
        base = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(2, 7)))
        symbol = base + rng.choice(QUOTES)
        if symbol not in seen:
            seen.add(symbol)
            symbols.append(symbol)
    return symbols


def make_body(count: int, seed: int = SEED) -> bytes:
    """A compact JSON body of ``count`` spot 24 h tickers, as Binance sends it."""
    rng = random.Random(seed)
    tickers = []
    for symbol in make_symbols(rng, count):
        last = 10 ** rng.uniform(-6, 5)
        open_ = last * rng.uniform(0.8, 1.2)
        high, low = max(last, open_) * rng.uniform(1, 1.1), min(last, open_) * rng.uniform(0.9, 1)
        volume = 10 ** rng.uniform(0, 9)
        traded = rng.random() > 0.03  # a few symbols without a trade in 24 h
        first_id = rng.randint(0, 4_000_000_000) if traded else -1
        count_ = rng.randint(1, 5_000_000) if traded else 0
        tickers.append(
            {
                "symbol": symbol,
                "priceChange": f"{last - open_:.8f}",
                "priceChangePercent": f"{(last - open_) / open_ * 100:.3f}",
                "weightedAvgPrice": f"{(high + low) / 2:.8f}",
                "prevClosePrice": f"{open_ * rng.uniform(0.999, 1.001):.8f}",
                "lastPrice": f"{last:.8f}",
                "lastQty": f"{10 ** rng.uniform(-3, 4):.8f}",
                "bidPrice": f"{last * 0.9999:.8f}",
                "bidQty": f"{10 ** rng.uniform(-3, 5):.8f}",
                "askPrice": f"{last * 1.0001:.8f}",
                "askQty": f"{10 ** rng.uniform(-3, 5):.8f}",
                "openPrice": f"{open_:.8f}",
                "highPrice": f"{high:.8f}",
                "lowPrice": f"{low:.8f}",
                "volume": f"{volume:.8f}",
                "quoteVolume": f"{volume * last:.8f}",
                "openTime": CLOSE_MS + 1 - 86_400_000 + rng.randint(0, 999),
                "closeTime": CLOSE_MS - rng.randint(0, 999),
                "firstId": first_id,
                "lastId": first_id + count_ - 1 if traded else -1,
                "count": count_,
            }
        )
    return json.dumps(tickers, separators=(",", ":")).encode()


def batch_of(body: bytes) -> lakeflow.Batch:
    """The batch the runtime hands ``decode`` after one poll: one body, received now."""
    received = pl.Series("received_at", [time.time_ns()], dtype=pl.Int64)
    received = received.cast(pl.Datetime("ns", "UTC")).cast(lakeflow.TIMESTAMP)
    return lakeflow.Batch(payloads=[body], received_at=received)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(symbols: int, cycles: int, warmup: int) -> dict[str, Any]:
    body = make_body(symbols)
    registry = load()
    info = registry.sources.get("binance_prices")
    if info is None:
        raise SystemExit(
            "source type binance_prices is not installed "
            f"(plugin errors: {registry.errors or 'none'})"
        )
    cls = info.cls
    config: type[lakeflow.SourceConfig] = cls.Config
    source = cls("prices", config())
    schema = registry.schemas[cls.schema]
    decode_ms: list[float] = []
    commit_ms: list[float] = []
    total_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lakeflow-bench-poll-") as folder:
        sink = DeltaSink(SinkConfig(uri=folder))
        for cycle in range(warmup + cycles):
            started = time.perf_counter()
            decoded = source.decode(batch_of(body))
            decoded_at = time.perf_counter()
            if decoded.rows.height != symbols or decoded.rejects:
                raise RuntimeError(
                    f"decoded {decoded.rows.height} rows of {symbols}, "
                    f"{len(decoded.rejects)} rejects: {decoded.rejects[:3]}"
                )
            sink.commit(schema.table, schema, decoded.rows, "prices", cycle + 1)
            done = time.perf_counter()
            if cycle >= warmup:
                decode_ms.append((decoded_at - started) * 1000)
                commit_ms.append((done - decoded_at) * 1000)
                total_ms.append((done - started) * 1000)
        table = sink.info(schema.table)
        if table is None or table.rows != symbols * (warmup + cycles):
            raise RuntimeError(f"the table holds {table and table.rows} rows, not all of them")
        versions = table.version + 1
    import deltalake

    return {
        "symbols": symbols,
        "body_bytes": len(body),
        "cycles": cycles,
        "warmup": warmup,
        "p50_ms": statistics.median(total_ms),
        "p99_ms": percentile(total_ms, 0.99),
        "decode_p50_ms": statistics.median(decode_ms),
        "decode_p99_ms": percentile(decode_ms, 0.99),
        "commit_p50_ms": statistics.median(commit_ms),
        "commit_p99_ms": percentile(commit_ms, 0.99),
        "table_versions": versions,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "target_p50<=60ms": statistics.median(total_ms) <= 60,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "deltalake": deltalake.__version__,
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=3000, help="tickers per body (3000)")
    parser.add_argument("--cycles", type=int, default=50, help="timed cycles (50)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed cycles first (1: creates the table)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.symbols < 1 or args.cycles < 1 or args.warmup < 0:
        parser.error("--symbols >= 1, --cycles >= 1 and --warmup >= 0 please")
    r = measure(args.symbols, args.cycles, args.warmup)
    if args.json:
        print(json.dumps(r))
        return 0
    m = r["machine"]
    print(
        f"# {r['symbols']:,} symbols ({r['body_bytes'] / 1e6:.2f} MB body), {r['cycles']} cycles "
        f"after {r['warmup']} warm-up; {m['cpus']} CPUs; python {m['python']} "
        f"polars {m['polars']} deltalake {m['deltalake']}; {m['date']}"
    )
    verdict = "PASS" if r["target_p50<=60ms"] else "FAIL"
    print(
        f"decode + commit : p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        f"  [target p50 <= 60 ms: {verdict}]"
    )
    print(f"decode          : p50 {r['decode_p50_ms']:.1f} ms, p99 {r['decode_p99_ms']:.1f} ms")
    print(f"commit          : p50 {r['commit_p50_ms']:.1f} ms, p99 {r['commit_p99_ms']:.1f} ms")
    print(f"table versions  : {r['table_versions']}; peak RSS {r['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
