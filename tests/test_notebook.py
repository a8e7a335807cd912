"""``examples/liquidations.ipynb`` runs top to bottom on tables a real run wrote.

The real ``lakeflow run`` collects from two loopback stand-ins that speak Binance's wire
format: the all-market ``forceOrder`` stream (its first connection dropped after half
the events, so ``_gaps`` holds a disconnect) and the spot 24 h ticker endpoint, polled
every second. Then nbclient executes the notebook in a fresh kernel of this environment,
offline, against that pipeline (``LAKEFLOW_PIPELINE``); any cell's error fails the test.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from deltalake import DeltaTable
from nbclient import NotebookClient

from harness import needs_workspace_plugins, run_until
from lakeflow.testing import HttpStandIn, Request, WebSocketStandIn

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "liquidations.ipynb"
SYMBOLS = {"BTCUSDT": 97_000.0, "ETHUSDT": 3_400.0, "SOLUSDT": 180.0}
EVENTS = 200
#: Binance's routing since 2026-04-23: the all-market stream under /market.
STREAM = "/market/ws/!forceOrder@arr"


def force_orders(now_ms: int) -> list[bytes]:
    """``EVENTS`` forceOrder frames as Binance sends them, 3 s apart.

    The last is a minute ahead of ``now_ms``, so that the notebook's window (the day up
    to the newest liquidation) holds the run's disconnect, as it would for a live feed.
    """
    rng = random.Random(7)
    frames = []
    for i in range(EVENTS):
        symbol = rng.choice(list(SYMBOLS))
        price = SYMBOLS[symbol] * (1 + rng.uniform(-0.01, 0.01))
        quantity = f"{rng.uniform(0.01, 5):.3f}"
        trade = now_ms + 60_000 - (EVENTS - 1 - i) * 3_000
        order = {"s": symbol, "S": rng.choice(["SELL", "BUY"]), "o": "LIMIT", "f": "IOC"}
        order |= {"q": quantity, "p": f"{price * 0.99:.2f}", "ap": f"{price:.2f}", "X": "FILLED"}
        order |= {"l": quantity, "z": quantity, "T": trade, "ps": symbol, "st": 1}
        frames.append(json.dumps({"e": "forceOrder", "E": trade + 3, "o": order}).encode())
    return frames


def tickers(request: Request) -> list[dict[str, object]]:
    """Binance's /api/v3/ticker/24hr answer for the symbols asked, the price moving."""
    now_ms = int(time.time() * 1000)
    asked = json.loads(request.query["symbols"])
    answer = []
    for symbol in asked:
        last = SYMBOLS[symbol] * (1 + 0.001 * (now_ms // 1000 % 7))
        answer.append(
            {
                "symbol": symbol,
                "priceChange": "1.00000000",
                "priceChangePercent": "0.010",
                "weightedAvgPrice": f"{last:.8f}",
                "prevClosePrice": f"{last:.8f}",
                "lastPrice": f"{last:.8f}",
                "lastQty": "0.01000000",
                "bidPrice": f"{last:.8f}",
                "bidQty": "1.00000000",
                "askPrice": f"{last:.8f}",
                "askQty": "1.00000000",
                "openPrice": f"{last:.8f}",
                "highPrice": f"{last * 1.02:.8f}",
                "lowPrice": f"{last * 0.98:.8f}",
                "volume": "1000.00000000",
                "quoteVolume": f"{1000 * last:.8f}",
                "openTime": now_ms - 86_400_000,
                "closeTime": now_ms,
                "firstId": 1,
                "lastId": 1000,
                "count": 1000,
            }
        )
    return answer


def rows(table: Path) -> int:
    try:
        return DeltaTable(str(table)).to_pyarrow_dataset().count_rows()
    except Exception:
        return 0


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A pipeline whose real run collected liquidations (with one gap) and prices."""
    home = tmp_path_factory.mktemp("notebook")
    frames = force_orders(int(datetime.now(UTC).timestamp() * 1000))
    half = EVENTS // 2
    with (
        WebSocketStandIn(frames[:half], frames[half:], path=STREAM) as stream,
        HttpStandIn(then=tickers, path="/api/v3/ticker/24hr") as rest,
    ):
        (home / "lakeflow.toml").write_text(
            f"""
[sink]
uri = "tables"
flush_interval = 0.2

[sources.liquidations]
type = "binance_liquidations"
ws_url = "{stream.url}"
usdm_rest_url = "http://127.0.0.1:9"
routes = ["market"]

[sources.prices]
type = "binance_prices"
base_url = "{rest.url}"
symbols = {json.dumps(list(SYMBOLS))}
interval = 1.0
""",
            encoding="utf-8",
        )
        tables = home / "tables"
        run_until(
            home,
            lambda: (
                rows(tables / "liquidations") >= EVENTS
                and rows(tables / "prices") >= 3 * len(SYMBOLS)
            ),
        )
    assert rows(tables / "_gaps") >= 1  # the dropped first connection
    yield home / "lakeflow.toml"


def test_the_notebook_has_no_outputs_committed():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@needs_workspace_plugins  # the notebook reads the Binance plugins' tables
def test_the_notebook_runs_top_to_bottom_on_a_real_runs_tables(pipeline, monkeypatch):
    monkeypatch.setenv("LAKEFLOW_PIPELINE", str(pipeline))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    text = "\n".join(str(output.get("text", "")) for output in outputs)
    assert f"{EVENTS:,} liquidations from" in text
    assert "gap(s) in the window" in text and " 0 gap(s)" not in text
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 2
    assert os.environ["LAKEFLOW_PIPELINE"] == str(pipeline)
