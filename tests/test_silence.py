"""A stream that stays connected but sends nothing is noticed, for every streaming source.

Exchanges retire a stream by going silent (Binance's legacy futures paths since April 2026
accept the connection, answer pings and forward nothing), so silence past a source's
``silence_timeout`` is a problem: warned about, shown, recorded, reconnected, fallen over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator

import polars as pl
import pytest
from lakeflow_testsource import SequenceSource, WebSocketTestSource
from pydantic import Field as ConfigField
from websockets.asyncio.server import ServerConnection, serve

import lakeflow
from harness import Plugin, run
from lakeflow.config import load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load
from lakeflow.runtime.status import read_status, status_dir


class UrlsConfig(lakeflow.StreamingConfig):
    silence_timeout: float | None = 0.6
    urls: list[str] = ConfigField(description="Endpoints, preferred first.")
    subscribe: str | None = ConfigField(default=None, description="Sent once per connection.")


class FallOverSource(WebSocketTestSource):
    """A WebSocket source that knows several endpoints of its stream."""

    type = "test_fall_over"
    Config = UrlsConfig

    def urls(self) -> list[str]:
        return list(self.config.urls)  # type: ignore[attr-defined]


class RoutedServer:
    """``/live`` streams numbered frames every 20 ms; ``/silent`` accepts and sends nothing.

    Like Binance's legacy paths: the silent one answers pings and JSON requests, so only
    the absence of payloads gives it away. Runs on its own thread.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.sent = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RoutedServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        self.paths.append(path)
        try:
            if path == "/live":
                while True:
                    self.sent += 1
                    await ws.send(json.dumps({"n": self.sent, "value": "1.5"}))
                    await asyncio.sleep(0.02)
            async for message in ws:  # silent: replies to requests, forwards nothing
                request = json.loads(message)
                await ws.send(json.dumps({"result": None, "id": request.get("id")}))
        except Exception:
            return


@pytest.fixture
def server() -> Iterator[RoutedServer]:
    with RoutedServer() as routed:
        yield routed


def quiet_sequence(timeout: str = '"1s"', count: int = 3) -> str:
    return (
        "[sink]\nflush_interval = 0.1\n"
        f'[sources.s]\ntype = "test_sequence"\ncount = {count}\nsilence_timeout = {timeout}\n'
    )


def gaps(tables) -> pl.DataFrame:
    return pl.read_delta(str(tables / "_gaps")).sort("gap_start")


def test_a_silent_connection_is_warned_about_with_url_and_likely_causes(pm, tmp_path, caplog):
    pm.register(Plugin(SequenceSource), name="t")
    caplog.set_level(logging.WARNING)

    result, _ = run(pm, tmp_path, quiet_sequence(), until=lambda s: s["s"].reconnects >= 1)

    warning = next(r.getMessage() for r in caplog.records if "SILENT" in r.getMessage())
    assert "connected to memory but no data for 1s" in warning
    assert "moved or retired the stream" in warning
    assert "`symbols` entry is wrong" in warning
    assert "blocks this region" in warning
    assert result.stats["s"].reconnects >= 1


def test_a_silent_stretch_is_a_gap_from_the_last_payload_told_apart_by_its_reason(pm, tmp_path):
    pm.register(Plugin(SequenceSource), name="t")

    _result, tables = run(pm, tmp_path, quiet_sequence(), until=lambda s: s["s"].reconnects >= 1)

    silent = gaps(tables).filter(pl.col("reason").str.starts_with("silent: "))
    assert silent.height >= 1
    first = silent.row(0, named=True)
    assert first["seconds"] > 1.0
    assert "more than the 1s that is normal for this source" in first["reason"]
    # The disconnect that follows is a gap of its own, with the reason it ended.
    assert gaps(tables)["reason"].str.starts_with("silent for ").any()


def test_a_quiet_connection_within_its_silence_timeout_is_coverage_not_a_gap(pm, tmp_path):
    pm.register(Plugin(SequenceSource), name="t")
    started = time.monotonic()

    result, tables = run(
        pm, tmp_path, quiet_sequence('"30s"'), until=lambda s: time.monotonic() - started > 1.5
    )

    assert result.stats["s"].gaps == 0
    assert not (tables / "_gaps").exists()


def test_silence_timeout_zero_turns_the_check_off(pm, tmp_path):
    pm.register(Plugin(SequenceSource), name="t")
    path = tmp_path / "lakeflow.toml"
    path.write_text(quiet_sequence("0"))

    spec = load_pipeline(path, load(pm, entry_points=False)).sources["s"]

    assert isinstance(spec.config, lakeflow.StreamingConfig)
    assert spec.config.silence_limit() is None


def test_the_pipeline_overrides_the_source_types_silence_timeout(pm, tmp_path, server):
    pm.register(Plugin(FallOverSource), name="t")
    path = tmp_path / "lakeflow.toml"
    path.write_text('[sources.s]\ntype = "test_fall_over"\nurls = ["x"]\nsilence_timeout = "2m"\n')

    spec = load_pipeline(path, load(pm, entry_points=False)).sources["s"]

    assert UrlsConfig(urls=["x"]).silence_limit() == 0.6
    assert isinstance(spec.config, lakeflow.StreamingConfig)
    assert spec.config.silence_limit() == 120.0


@pytest.mark.parametrize(("value", "problem"), [('"soon"', "not a duration"), ("-1", "negative")])
def test_a_bad_silence_timeout_names_the_key(pm, tmp_path, value, problem):
    pm.register(Plugin(SequenceSource), name="t")
    path = tmp_path / "lakeflow.toml"
    path.write_text(quiet_sequence(value))

    with pytest.raises(ConfigError, match=rf"sources\.s\.silence_timeout: .*{problem}"):
        load_pipeline(path, load(pm, entry_points=False))


def test_silence_falls_over_to_the_next_endpoint_and_logs_the_one_that_works(
    pm, tmp_path, server, caplog
):
    pm.register(Plugin(FallOverSource), name="t")
    caplog.set_level(logging.INFO)
    urls = json.dumps([server.url("/silent"), server.url("/live")])

    _result, tables = run(
        pm,
        tmp_path,
        f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_fall_over"\nurls = {urls}\n',
        until=lambda s: s["s"].rows >= 20,
    )

    assert server.paths[:2] == ["/silent", "/live"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"to the next known endpoint, {server.url('/live')}" in m for m in messages)
    assert f"receiving on {server.url('/live')} (endpoint 2 of 2)" in messages
    assert pl.read_delta(str(tables / "test_records")).height >= 20


def test_payloads_after_silence_clear_the_silent_state(pm, tmp_path, server):
    pm.register(Plugin(FallOverSource), name="t")
    urls = json.dumps([server.url("/silent"), server.url("/live")])
    states: list[str] = []

    def until(stats) -> bool:
        states.append(str(stats["s"].state))
        return stats["s"].rows >= 20

    run(
        pm,
        tmp_path,
        f'[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_fall_over"\nurls = {urls}\n',
        until=until,
    )

    assert "silent" in states
    assert states[-1] == "connected"


def test_the_status_file_says_silent_with_the_url_and_what_is_normal(pm, tmp_path):
    pm.register(Plugin(SequenceSource), name="t")
    seen = {}

    def until(stats) -> bool:
        statuses = read_status(status_dir(tmp_path / "state"), ["s"])
        if statuses and statuses[0].state == "silent":
            seen["status"] = statuses[0]
        return "status" in seen

    run(pm, tmp_path, quiet_sequence(), until=until)

    problem = seen["status"].problem(seen["status"].updated)
    assert problem.startswith("silent: no data for ")
    assert "on memory (normal: at most 1s)" in problem


def test_after_a_clean_stop_the_not_running_gap_starts_at_the_stop(pm, tmp_path):
    """A quiet connection covers until the stop, not until its last payload."""
    pm.register(Plugin(SequenceSource), name="t")
    toml = quiet_sequence('"60s"')
    started = time.monotonic()
    run(pm, tmp_path, toml, until=lambda s: time.monotonic() - started > 2.5)
    stopped = time.time()
    time.sleep(1.0)

    run(pm, tmp_path, toml, until=lambda s: s["s"].gaps >= 1)

    gap = gaps(tmp_path / "tables").row(0, named=True)
    assert gap["reason"] == "lakeflow was not running"
    # The last payload arrived ~2.5 s before the stop; the gap starts at the stop (the
    # run's last status file is written as it stops), not at that payload.
    assert stopped - 0.5 < gap["gap_start"].timestamp() <= stopped
    assert gap["seconds"] >= 1.0
