"""Drift: what arrives that a source does not declare is warned about once, recorded in
``_drift`` and shown by ``lakeflow status``, ``lakeflow drift`` and ``/metrics``, while
every row still lands.

The source is the test plugin's ``test_quotes`` (see ``lakeflow_testsource.quotes``): it
declares its fields, a domain for ``side``, ``symbol`` as its instrument column and an
instrument list served by a loopback HTTP stand-in. The quote stream is a loopback
WebSocket stand-in that sends what the test tells it to, when it tells it to, so that
drift can arrive mid-run. The pipeline runs in the real runtime on a thread of its own;
the CLI runs in subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from lakeflow_testsource.quotes import QUOTE, QuoteSource
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.protocol import State

import lakeflow
from harness import LAKEFLOW, wait_for
from lakeflow.config import load_pipeline
from lakeflow.plugins import load, make_manager
from lakeflow.runtime import RunResult, Runtime
from lakeflow.runtime.stats import SourceStats
from lakeflow.testing import read_table
from lakeflow.testing.standins import HttpStandIn, Request

SOURCE = "quotes"


def quote(n: int, symbol: str = "AAA", side: str = "BUY", **extra: Any) -> str:
    """The ``n``-th quote frame; ``extra`` adds keys the source does not declare."""
    return json.dumps({"symbol": symbol, "side": side, "n": n, "value": f"{n}.5", **extra})


def quotes(first: int, last: int, **options: Any) -> list[str]:
    """Quote frames ``first`` to ``last``, inclusive."""
    return [quote(n, **options) for n in range(first, last + 1)]


class LiveFeed:
    """A WebSocket server on its own thread that sends what the test hands it.

    :meth:`send` goes to every open connection, or, while none is open, to the next one.
    """

    def __init__(self) -> None:
        self.url = ""
        self.opened = 0
        self._open: list[tuple[ServerConnection, asyncio.Queue[str]]] = []
        self._backlog: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None

    def __enter__(self) -> LiveFeed:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def send(self, *frames: str) -> None:
        """Send ``frames``, in order (from any thread)."""
        self._loop.call_soon_threadsafe(self._deliver, list(frames))

    def _deliver(self, frames: list[str]) -> None:
        targets = [queue for ws, queue in self._open if ws.state is State.OPEN]
        if not targets:
            self._backlog.extend(frames)
        for queue in targets:
            for frame in frames:
                queue.put_nowait(frame)

    async def _handle(self, ws: ServerConnection) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for frame in self._backlog:
            queue.put_nowait(frame)
        self._backlog.clear()
        entry = (ws, queue)
        self._open.append(entry)
        self.opened += 1

        async def forward() -> None:
            while True:
                await ws.send(await queue.get())

        sender = asyncio.ensure_future(forward())
        try:
            await ws.wait_closed()
        finally:
            sender.cancel()
            self._open.remove(entry)


class Listing:
    """The instrument list on a loopback HTTP stand-in: ``symbols`` as it is now."""

    def __init__(self, *symbols: str) -> None:
        self.symbols = list(symbols)
        self.server = HttpStandIn(then=self._answer, path="/instruments")

    def _answer(self, request: Request) -> dict[str, Any]:
        return {"symbols": [{"symbol": s} for s in self.symbols]}

    @property
    def url(self) -> str:
        return f"{self.server.url}/instruments"

    @property
    def requests(self) -> int:
        """How many times the list was read."""
        return len(self.server.requests)


class QuotesPlugin:
    """Registers the quote source and its record schema."""

    @lakeflow.hookimpl
    def register_schemas(self, register: Callable[[lakeflow.TableSchema], None]) -> None:
        register(QUOTE)

    @lakeflow.hookimpl
    def register_sources(self, register: Callable[[type[lakeflow.Source]], None]) -> None:
        register(QuoteSource)


def pipeline(feed: LiveFeed, listing: Listing | None = None, **options: object) -> str:
    """A pipeline of one quote source reading ``feed``, committing every 0.1 s."""
    lines = [
        "[sink]",
        "flush_interval = 0.1",
        f"[sources.{SOURCE}]",
        'type = "test_quotes"',
        f'url = "{feed.url}"',
    ]
    if listing is not None:
        lines.append(f'instruments_url = "{listing.url}"')
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


class Collecting:
    """A pipeline run by the real runtime on a thread of its own, while the test drives it."""

    def __init__(self, pm: Any, folder: Path, toml: str, metrics: bool = False) -> None:
        path = folder / "lakeflow.toml"
        if metrics:
            toml += '[metrics]\nlisten = "127.0.0.1:0"\n'
        path.write_text(toml)
        registry = load(pm, entry_points=False)
        assert not registry.errors, registry.errors
        self.folder = folder
        self.tables = folder / "tables"
        self.runtime = Runtime(load_pipeline(path, registry), registry)
        self.result: RunResult | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def _main(self) -> None:
        async def main() -> RunResult:
            self._loop = asyncio.get_running_loop()
            self._started.set()
            return await self.runtime.run()

        try:
            self.result = asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    @property
    def stats(self) -> SourceStats:
        return self.runtime.stats[SOURCE]

    @property
    def source(self) -> lakeflow.Source:
        """The running source instance (for its reference lists)."""
        wait_for(lambda: SOURCE in self.runtime.sources, what="the source")
        return self.runtime.sources[SOURCE]

    def lists(self, symbol: str) -> bool:
        """Whether the source's current instrument list names ``symbol``."""
        frame = self.source.reference("instruments")
        return frame is not None and symbol in frame["symbol"].to_list()

    def url(self, path: str) -> str:
        """A URL of the run's metrics server."""
        metrics = self.runtime.metrics
        assert metrics is not None
        wait_for(lambda: metrics.port != 0, what="the metrics server")
        return f"http://127.0.0.1:{metrics.port}{path}"

    def committed(self, payloads: int) -> None:
        """Wait until ``payloads`` payloads were committed: as rows, dead letters or ignored."""
        stats = self.stats
        wait_for(
            lambda: stats.rows + stats.dead_letters + stats.ignored >= payloads,
            what=f"{payloads} payloads committed",
        )

    def stop(self) -> Path:
        """Stop the run the way SIGTERM does; returns the sink's folder."""
        if self._thread.is_alive() and self._loop is not None:
            self._loop.call_soon_threadsafe(self.runtime.stop)
            self._thread.join(60)
        if self._error is not None:
            raise self._error
        assert self.result is not None and self.result.ok, self.result
        return self.tables


@pytest.fixture
def feed() -> Iterator[LiveFeed]:
    with LiveFeed() as live:
        yield live


@pytest.fixture
def listing() -> Iterator[Listing]:
    served = Listing("AAA", "BBB")
    with served.server:
        yield served


@pytest.fixture
def collecting(pm, tmp_path) -> Iterator[Callable[..., Collecting]]:
    """Start runs of pipelines in ``tmp_path``; any still going at teardown is stopped."""
    pm.register(QuotesPlugin(), name="quotes")
    runs: list[Collecting] = []

    def start(toml: str, **options: Any) -> Collecting:
        run = Collecting(pm, tmp_path, toml, **options)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def drift_of(tables: Path) -> pl.DataFrame:
    """``_drift`` as it is now (empty while it does not exist)."""
    try:
        return read_table(tables / "_drift")
    except Exception:  # its first commit is being written
        return pl.DataFrame()


def counted(tables: Path, kind: str, path: str, value: str = "") -> int:
    """The count ``_drift`` holds for one entry (0 while it holds none)."""
    found = drift_of(tables)
    if found.is_empty():
        return 0
    row = found.filter(
        (pl.col("kind") == kind) & (pl.col("path") == path) & (pl.col("value") == value)
    )
    return int(row["count"].sum())


def lakeflow_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def drift_warnings(records: list[logging.LogRecord], text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in records
        if r.levelno == logging.WARNING
        and r.getMessage().startswith("drift:")
        and text in r.getMessage()
    ]


# -- keys ---------------------------------------------------------------------------------


def test_a_key_no_field_reads_is_warned_about_once_naming_the_source_and_path(
    feed, collecting, caplog
):
    caplog.set_level(logging.WARNING)
    run = collecting(pipeline(feed))
    feed.send(*quotes(1, 3))
    run.committed(3)
    # Mid-run, in two batches: the exchange started marking each quote's product.
    feed.send(*quotes(4, 6, o={"st": "C"}))
    run.committed(6)
    feed.send(*quotes(7, 9, o={"st": "C"}))
    run.committed(9)
    run.stop()

    warnings = drift_warnings(caplog.records, "o.st")
    assert len(warnings) == 1
    assert warnings[0].source == SOURCE  # type: ignore[attr-defined]
    assert "a key no field reads: o.st" in warnings[0].getMessage()


def test_a_key_no_field_reads_is_a_drift_row_with_its_count_and_an_example(feed, collecting):
    run = collecting(pipeline(feed))
    feed.send(*quotes(1, 3), *quotes(4, 6, o={"st": "C"}))
    run.committed(6)
    tables = run.stop()

    row = drift_of(tables).row(0, named=True)
    assert drift_of(tables).height == 1
    assert (row["source"], row["table"], row["kind"], row["path"], row["value"]) == (
        SOURCE,
        "test_quotes",
        "key",
        "o.st",
        "",
    )
    assert row["count"] == 3  # key_sample = 1: every payload is examined
    assert b'"st"' in row["example"]


def test_every_row_lands_while_a_key_no_field_reads_arrives(feed, collecting):
    run = collecting(pipeline(feed))
    feed.send(*quotes(1, 3), *quotes(4, 6, o={"st": "C"}), *quotes(7, 8))
    run.committed(8)
    tables = run.stop()

    stored = pl.read_delta(str(tables / "test_quotes"))
    assert sorted(stored["n"].to_list()) == list(range(1, 9))


def test_control_frames_the_decoder_ignores_are_not_examined_for_keys(feed, collecting):
    run = collecting(pipeline(feed))
    feed.send('{"event": "subscribed", "channel": "quotes"}', "pong", quote(1))
    run.committed(3)
    tables = run.stop()

    assert run.stats.ignored == 2
    assert run.stats.drift.get("key", 0) == 0
    assert drift_of(tables).is_empty()


def test_payloads_the_decoder_rejects_are_not_examined_for_keys(feed, collecting):
    run = collecting(pipeline(feed))
    feed.send(quote(1, debug=True).replace('"n": 1', '"n": "one"'), quote(2))
    run.committed(2)
    tables = run.stop()

    assert run.stats.dead_letters == 1
    assert run.stats.drift.get("key", 0) == 0
    assert drift_of(tables).is_empty()


# -- values -------------------------------------------------------------------------------


def test_a_value_outside_the_domain_is_kept_as_sent_and_recorded(feed, collecting):
    run = collecting(pipeline(feed))
    feed.send(quote(1), quote(2, side="HOLD"), quote(3))
    run.committed(3)
    tables = run.stop()

    stored = pl.read_delta(str(tables / "test_quotes")).sort("n")
    assert stored["side"].to_list() == ["BUY", "HOLD", "BUY"]
    row = drift_of(tables).row(0, named=True)
    assert (row["kind"], row["path"], row["value"], row["count"]) == ("value", "side", "HOLD", 1)
    assert b'"HOLD"' in row["example"]


def test_a_value_outside_the_domain_of_a_rejecting_field_is_a_dead_letter_naming_it(
    feed, collecting
):
    run = collecting(pipeline(feed, side_on_drift="reject"))
    feed.send(quote(1), quote(2, side="HOLD"), quote(3))
    run.committed(3)
    tables = run.stop()

    assert pl.read_delta(str(tables / "test_quotes"))["n"].sort().to_list() == [1, 3]
    dead = pl.read_delta(str(tables / "_dead_letters"))
    assert dead.height == 1
    assert "'side'" in dead["error"][0]
    assert "HOLD" in dead["error"][0]


def test_a_value_outside_the_domain_of_a_rejecting_field_is_still_recorded(feed, collecting):
    run = collecting(pipeline(feed, side_on_drift="reject"))
    feed.send(quote(1), quote(2, side="HOLD"))
    run.committed(2)
    tables = run.stop()

    assert counted(tables, "value", "side", "HOLD") == 1


# -- instruments --------------------------------------------------------------------------


def test_an_unknown_instrument_has_the_list_read_again_early_once(feed, listing, collecting):
    run = collecting(pipeline(feed, listing))
    feed.send(quote(1))
    run.committed(1)
    assert listing.requests == 1  # before the first decode
    feed.send(quote(2, symbol="NEW"))
    wait_for(lambda: run.stats.drift.get("instrument", 0) >= 1, what="the early read")
    feed.send(*quotes(3, 5, symbol="NEW"))
    run.committed(5)
    run.stop()

    assert listing.requests == 2


def test_an_instrument_the_early_read_lists_is_not_drift(feed, listing, collecting):
    run = collecting(pipeline(feed, listing))
    feed.send(quote(1))
    run.committed(1)
    listing.symbols.append("NEW")  # listed by the exchange after the run read the list
    feed.send(quote(2, symbol="NEW"))
    wait_for(lambda: run.lists("NEW"), what="the early read")
    feed.send(quote(3, symbol="NEW"))
    run.committed(3)
    tables = run.stop()

    assert listing.requests == 2
    assert run.stats.drift.get("instrument", 0) == 0
    assert drift_of(tables).is_empty()
    assert pl.read_delta(str(tables / "test_quotes"))["symbol"].to_list().count("NEW") == 2


def test_an_instrument_no_list_names_after_the_early_read_is_drift_and_its_rows_land(
    feed, listing, collecting
):
    run = collecting(pipeline(feed, listing))
    feed.send(quote(1), quote(2, symbol="NEW"))
    wait_for(lambda: run.stats.drift.get("instrument", 0) >= 1, what="the early read")
    feed.send(quote(3, symbol="NEW"))
    run.committed(3)
    tables = run.stop()

    assert counted(tables, "instrument", "symbol", "NEW") == 2
    stored = pl.read_delta(str(tables / "test_quotes"))
    assert stored.filter(pl.col("symbol") == "NEW")["n"].sort().to_list() == [2, 3]


# -- the table ------------------------------------------------------------------------------


def test_drift_stays_one_row_per_entry_across_commit_rounds(feed, collecting):
    run = collecting(pipeline(feed))
    feed.send(*quotes(1, 3, o={"st": "C"}))
    wait_for(lambda: counted(run.tables, "key", "o.st") == 3, what="the first write")
    feed.send(*quotes(4, 5, o={"st": "C"}))
    wait_for(lambda: counted(run.tables, "key", "o.st") == 5, what="the second write")
    tables = run.stop()

    found = drift_of(tables)
    assert found.height == 1
    assert found["count"].to_list() == [5]
    assert DeltaTable(str(tables / "_drift")).version() >= 1


def test_drift_counts_add_up_across_runs(feed, collecting):
    first = collecting(pipeline(feed))
    feed.send(*quotes(1, 3, o={"st": "C"}))
    first.committed(3)
    first.stop()
    before = drift_of(first.tables).row(0, named=True)

    second = collecting(pipeline(feed))
    wait_for(lambda: feed.opened == 2, what="the second run's connection")
    feed.send(*quotes(4, 5, o={"st": "C"}))
    second.committed(2)
    tables = second.stop()

    found = drift_of(tables)
    assert found.height == 1
    row = found.row(0, named=True)
    assert row["count"] == 5
    assert row["first_seen"] == before["first_seen"]
    assert row["last_seen"] > before["last_seen"]


# -- seeing it: status, metrics, the drift command --------------------------------------


@pytest.fixture(scope="module")
def drifting(tmp_path_factory) -> Iterator[Collecting]:
    """One run with a key and a value drift, both written to ``_drift``, still going."""
    folder = tmp_path_factory.mktemp("drifting")
    pm = make_manager()
    pm.register(QuotesPlugin(), name="quotes")
    with LiveFeed() as live:
        run = Collecting(pm, folder, pipeline(live), metrics=True)
        try:
            live.send(quote(1), *quotes(2, 4, o={"st": "C"}), quote(5, side="HOLD"))
            wait_for(
                lambda: (
                    counted(run.tables, "key", "o.st") == 3
                    and counted(run.tables, "value", "side", "HOLD") == 1
                ),
                what="drift in _drift",
            )
            wait_for(lambda: status_json(folder)[SOURCE].get("drift"), what="drift in status")
            yield run
        finally:
            run.stop()


def status_json(folder: Path) -> dict[str, dict[str, Any]]:
    done = lakeflow_cli(folder, "status", "--json")
    return {row["source"]: row for row in json.loads(done.stdout)}


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_status_shows_drift_beside_the_state_and_exits_0(drifting):
    done = lakeflow_cli(drifting.folder, "status")

    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith(f"{SOURCE} "))
    assert "connected" in row and ", drift" in row
    assert f"{SOURCE}: drift: " in done.stdout
    assert "key o.st" in done.stdout


def test_status_json_lists_the_drift_entries_and_how_many_are_unseen(drifting):
    row = status_json(drifting.folder)[SOURCE]

    entries = {(e["kind"], e["path"], e["value"]): e["count"] for e in row["drift"]}
    assert entries == {("key", "o.st", ""): 3, ("value", "side", "HOLD"): 1}
    assert row["unseen_drift"] == 2
    assert row["problem"] is None


def test_metrics_count_drift_per_source_and_kind(drifting):
    status, body = http_get(drifting.url("/metrics"))
    assert status == 200
    samples = {
        (sample.name, sample.labels.get("source"), sample.labels.get("kind")): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    assert samples[("lakeflow_drift_total", SOURCE, "key")] >= 1
    assert samples[("lakeflow_drift_total", SOURCE, "value")] >= 1
    assert samples[("lakeflow_drift_total", SOURCE, "instrument")] == 0


def test_healthz_stays_200_with_drift(drifting):
    status, body = http_get(drifting.url("/healthz"))

    assert status == 200, body
    assert json.loads(body)["status"] == "ok"


def test_drift_command_prints_each_entry_with_its_count_and_an_example(drifting):
    done = lakeflow_cli(drifting.folder, "drift", "lakeflow.toml")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    key = next(line for line in lines if " key o.st" in line)
    assert key.startswith(f"{SOURCE} (test_quotes): key o.st: 3 time(s)")
    assert key.endswith("[new]")
    value = next(line for line in lines if " value side" in line)
    assert value.startswith(f"{SOURCE} (test_quotes): value side = 'HOLD': 1 time(s)")
    example = lines[lines.index(key) + 1]
    assert example.startswith("    example: {")
    assert '"st"' in example


def test_drift_command_for_another_source_shows_none_of_it(drifting):
    done = lakeflow_cli(drifting.folder, "drift", "lakeflow.toml", "--source", "other")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no drift recorded for other")
    assert SOURCE not in done.stdout


def test_drift_ack_stops_status_flagging_what_it_showed(feed, collecting, tmp_path):
    run = collecting(pipeline(feed))
    feed.send(*quotes(1, 2, o={"st": "C"}))
    wait_for(lambda: counted(run.tables, "key", "o.st") == 2, what="drift in _drift")
    wait_for(lambda: status_json(tmp_path)[SOURCE].get("unseen_drift"), what="drift in status")

    acked = lakeflow_cli(tmp_path, "drift", "--ack")
    done = lakeflow_cli(tmp_path, "status")

    assert "1 drift entry marked seen" in acked.stdout, acked.stdout + acked.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", drift" not in done.stdout
    assert f"{SOURCE}: drift" not in done.stdout
    assert status_json(tmp_path)[SOURCE]["unseen_drift"] == 0
