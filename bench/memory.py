"""Where a collector's memory goes: RSS after each step of decode + commit, no network.

One process builds ``--batches`` x ``--rows`` liquidation payloads (``ingest.py``'s
generator, the shape of ``!forceOrder@arr``), then for each batch decodes it with the
real ``binance_liquidations`` source in slices of ``--slice`` payloads (as the committer
does), concatenates the rows and commits them with the real Delta sink to a temporary
table, printing RSS and its anonymous part after each step (``/proc/self/smaps_rollup``).
What grows and is not given back after a batch is allocator retention; compare with
the allocators told to return freed pages at once::

    uv run python bench/memory.py
    _RJEM_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0 uv run python bench/memory.py

(polars and deltalake each bring a jemalloc that reads ``_RJEM_MALLOC_CONF`` when it
loads, so it must be set before the process starts.)
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from array import array

import polars as pl
from ingest import make_payloads  # the payload generator, shared

from lakeflow.config import SinkConfig
from lakeflow.plugins import load
from lakeflow.runtime.buffer import make_batch
from lakeflow.runtime.decoding import DECODE_SLICE
from lakeflow.sinks.delta import DeltaSink
from lakeflow.sources import Batch


def rss() -> str:
    """``RSS 117 MB (82 anonymous)`` of this process, now."""
    values: dict[str, int] = {}
    with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Anonymous"):
                values[name] = int(rest.split()[0]) // 1024
    return f"RSS {values['Rss']} MB ({values['Anonymous']} anonymous)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rows = SinkConfig.model_fields["flush_rows"].default
    parser.add_argument(
        "--rows", type=int, default=rows, help=f"payloads per batch (flush_rows: {rows})"
    )
    parser.add_argument("--batches", type=int, default=3, help="batches in a row (3)")
    parser.add_argument("--slice", type=int, default=DECODE_SLICE, help="payloads per decode")
    args = parser.parse_args()
    print(f"imported: {rss()}")
    registry = load()
    info = registry.sources.get("binance_liquidations")
    if info is None:
        raise SystemExit(f"binance_liquidations is not installed ({registry.errors or 'none'})")
    source = info.cls("liquidations", info.cls.Config())
    schema = registry.schemas[info.cls.schema]
    payloads = make_payloads(args.rows * args.batches)
    print(f"{len(payloads):,} payloads built: {rss()}")
    root = tempfile.mkdtemp(prefix="lakeflow-memory-")
    try:
        sink = DeltaSink(SinkConfig(uri=root))
        for index in range(args.batches):
            chunk = payloads[index * args.rows : (index + 1) * args.rows]
            batch = make_batch(chunk, array("q", [time.time_ns()] * len(chunk)))
            parts = [
                source.decode(
                    Batch(
                        payloads=batch.payloads[start : start + args.slice],
                        received_at=batch.received_at.slice(start, args.slice),
                    )
                ).rows
                for start in range(0, len(chunk), args.slice)
            ]
            print(f"batch {index + 1}: decoded: {rss()}")
            rows = pl.concat(parts, how="diagonal_relaxed")
            del parts
            size = rows.estimated_size() / 2**20
            print(f"batch {index + 1}: {rows.height:,} rows ({size:.0f} MB): {rss()}")
            sink.commit(schema.table, schema, rows, "liquidations", (index + 1) * args.rows)
            print(f"batch {index + 1}: committed: {rss()}")
            del rows, batch
            gc.collect()
            print(f"batch {index + 1}: released: {rss()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
