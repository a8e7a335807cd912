"""The peer reader of ``bench/ingest.py``: cryptofeed's Binance futures liquidations feed.

Runs inside cryptofeed's own virtual environment (``bench/peer.py`` makes it), never in
lakeflow's: it imports cryptofeed only. cryptofeed is AGPL; nothing of it is copied into
lakeflow, this script only uses it as a user would, with a callback that counts
liquidations and stores nothing.

Pointed at the benchmark's sender at run time, without editing cryptofeed's files: the
``BinanceFutures`` endpoints are replaced by the sender's before the feed is built, so
cryptofeed fetches ``/fapi/v1/exchangeInfo`` from the sender, then connects to
``<ws>/market/stream?streams=<symbol>@forceOrder/...`` (its routing since 2026) and reads
combined-stream frames. Prints one JSON object: messages/s from the first liquidation to
the N-th, CPU time per message over that span, peak RSS of the process.

    <peer venv>/bin/python bench/cryptofeed_reader.py --ws wss://127.0.0.1:PORT/runK \
        --rest https://127.0.0.1:PORT --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Any


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws", required=True, help="the sender's WebSocket base URL")
    parser.add_argument("--rest", required=True, help="the sender's HTTP base URL")
    parser.add_argument("--n", type=int, required=True, help="liquidations to count")
    args = parser.parse_args()
    # A fresh symbol cache, so that every run asks the sender for exchangeInfo.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cryptofeed-cache-")

    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.defines import LIQUIDATIONS
    from cryptofeed.exchanges import BinanceFutures

    BinanceFutures.websocket_endpoints = [WebsocketEndpoint(args.ws, options={"compression": None})]
    BinanceFutures.rest_endpoints = [
        RestEndpoint(args.rest, routes=Routes("/fapi/v1/exchangeInfo"))
    ]
    # cryptofeed adds a premium-index twin of every perpetual, valid for candles only.
    symbols = [s for s in BinanceFutures.symbols() if not s.endswith("-PINDEX")]
    state: dict[str, Any] = {"count": 0}

    async def count(liquidation: object, receipt_timestamp: float) -> None:
        state["count"] += 1
        n = state["count"]
        if n == 1:
            state["first"], state["cpu"] = time.perf_counter(), cpu_seconds()
        elif n == args.n:
            seconds = time.perf_counter() - state["first"]
            result = {
                "reader": f"cryptofeed {version('cryptofeed')}",
                "python": sys.version.split()[0],
                "symbols": len(symbols),
                "messages": n,
                "seconds": seconds,
                "rate": (n - 1) / seconds if seconds > 0 else float("inf"),
                "cpu_us_per_message": 1e6 * (cpu_seconds() - state["cpu"]) / (n - 1),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            print(json.dumps(result), flush=True)
            os._exit(0)  # the count is all that was asked for: no graceful shutdown to time

    # cryptofeed's defaults (uvloop), its warnings to stderr instead of feedhandler.log.
    handler = FeedHandler(config={"uvloop": True, "log": {"filename": "", "level": "WARNING"}})
    handler.add_feed(
        BinanceFutures(symbols=symbols, channels=[LIQUIDATIONS], callbacks={LIQUIDATIONS: count})
    )
    handler.run()
    print(json.dumps({"error": f"the feed ended after {state['count']} liquidations"}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
