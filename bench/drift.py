"""What drift detection costs per message, beside the decode it watches.

The committer decodes a batch, then runs the source's ``DriftWatch.check`` on it: the
keys of a sample of the payloads (one in ``key_sample``, parsed in one polars call with
the schema inferred, against the paths the decoder read), and each row's instrument
against the reference lists. Values outside a field's domain are found inside the decode
itself, so their cost is part of the decode figure here.

The payloads are Binance ``forceOrder`` events of the merged all-market stream (USD-M
and COIN-M interleaved, ``ps``/``st`` inside ``o``), as ``bench/ingest.py`` generates
them, decoded by the real ``binance_liquidations`` source (``market = "all"``) with both
instrument lists loaded. Each figure is the mean over enough calls on one batch size
(``--payloads`` in all, at least ``--repeat`` calls) in this process, warm: CPU time of
the process (``time.process_time``, polars' threads included) and wall time. The
sample's parse runs once ``MAX_SAMPLE`` payloads are gathered or ``KEY_INTERVAL``
seconds passed; a run this short only meets the first, so small batches show the parse
at its rarest: ``--interval 0`` parses at every batch, the dearest case.

    uv run python bench/drift.py                 # batch sizes 20, 200, 2000, 25000
    uv run python bench/drift.py --sizes 5000 --repeat 50
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import polars as pl
from lakeflow_binance_liquidations.config import LiquidationsConfig
from lakeflow_binance_liquidations.source import BinanceLiquidationsSource

from lakeflow import DECIMAL, TIMESTAMP, Batch
from lakeflow.runtime import drift as drift_module
from lakeflow.runtime.drift import DriftWatch

USDM = [f"SYM{i}USDT" for i in range(400)] + ["BTCUSDT", "ETHUSDT", "BTCUSDT_261225"]
COINM = {"BTCUSD_PERP": "100", "ETHUSD_PERP": "10", "ETHUSD_261225": "10", "SOLUSD_PERP": "10"}


def payloads(n: int, seed: int = 7) -> list[bytes]:
    """``n`` merged-stream events: one in five COIN-M, the rest USD-M."""
    rng = random.Random(seed)
    start = int(time.time() * 1000)
    out = []
    for k in range(n):
        coinm = k % 5 == 4
        symbol = rng.choice(list(COINM)) if coinm else rng.choice(USDM)
        quantity = str(rng.randint(1, 500)) if coinm else f"{rng.randint(0, 999)}.{k % 1000:03d}"
        price = f"{rng.randint(1, 99_999)}.{rng.randint(0, 99):02d}"
        order = {
            "s": symbol,
            "S": rng.choice(("BUY", "SELL")),
            "o": "LIMIT",
            "f": "IOC",
            "q": quantity,
            "p": price,
            "ap": price,
            "X": "FILLED",
            "l": quantity,
            "z": quantity,
            "T": start + k,
            "ps": symbol.split("_")[0] if coinm else symbol,
            "st": 2 if coinm else 1,
        }
        event = {"e": "forceOrder", "E": start + k + 1000, "o": order}
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def source() -> BinanceLiquidationsSource:
    """The real source, both products, both instrument lists as if just read."""
    made = BinanceLiquidationsSource("bench", LiquidationsConfig(market="all"))
    made.refs.put("usdm", pl.DataFrame({"symbol": USDM}))
    sizes = pl.DataFrame({"symbol": list(COINM), "contract_size": list(COINM.values())})
    made.refs.put("coinm", sizes.with_columns(pl.col("contract_size").cast(DECIMAL)))
    return made


def timed(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Mean CPU seconds (the process) and wall seconds of ``work`` over ``repeat`` calls.

    The mean, not the median: the sample's parse runs in some calls only, and its cost
    is spread over all of them, as in a run.
    """
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.process_time() - c0) / repeat, (time.perf_counter() - w0) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 2000, 25_000])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--payloads", type=int, default=500_000)
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="KEY_INTERVAL in seconds for this run (default: the module's)",
    )
    parser.add_argument("--key-sample", type=int, default=BinanceLiquidationsSource.key_sample)
    args = parser.parse_args()
    if args.interval is not None:
        drift_module.KEY_INTERVAL = args.interval
    src = source()
    instruments = src.refs.instruments()
    print(
        f"polars {pl.__version__}; key_sample {args.key_sample}; KEY_INTERVAL "
        f"{drift_module.KEY_INTERVAL:g}s; mean over {args.payloads:,} payloads per size; "
        "µs per message (CPU of the process / wall)"
    )
    print(f"{'batch':>7} {'decode':>17} {'drift check':>17} {'drift/decode':>17}")
    for size in args.sizes:
        sent = payloads(size)
        now = datetime.now(UTC)
        batch = Batch(sent, pl.Series([now] * size, dtype=TIMESTAMP))
        decoded = src.decode(batch)
        assert decoded.rows.height == size and not decoded.rejects, decoded.rejects[:3]
        watch = DriftWatch("bench", "liquidations", key_sample=args.key_sample)
        watch.instrument_column = "symbol"
        # A warm-up of each, then the medians; the watch must find nothing (no warnings).
        watch.check(batch, decoded, instruments)
        assert not watch.entries, watch.entries
        calls = max(args.repeat, args.payloads // size)
        d_cpu, d_wall = timed(lambda b=batch: src.decode(b), calls)
        w_cpu, w_wall = timed(lambda b=batch, d=decoded, w=watch: w.check(b, d, instruments), calls)
        assert not watch.entries
        print(
            f"{size:>7} {d_cpu / size * 1e6:>8.2f} /{d_wall / size * 1e6:>7.2f} "
            f"{w_cpu / size * 1e6:>8.3f} /{w_wall / size * 1e6:>7.3f} "
            f"{100 * w_cpu / d_cpu:>7.2f}% /{100 * w_wall / d_wall:>6.2f}%"
        )


if __name__ == "__main__":
    main()
