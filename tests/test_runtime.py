"""The runtime: exactly-once commits, dead letters, restarts, the polling timer, failures."""

from __future__ import annotations

import asyncio
import time

import polars as pl
import pytest
from deltalake import DeltaTable
from lakeflow_testsource import RECORD, ClockSource, SequenceSource

import lakeflow
from harness import Plugin, committed, reaped, run, start_run, wait_for
from lakeflow.config import load_pipeline
from lakeflow.plugins import load
from lakeflow.runtime.spool import Spool
from lakeflow.sinks.delta import DeltaSink
from lakeflow.testing import collect, write_pipeline


def test_every_payload_lands_exactly_once(tmp_path):
    result = collect("test_sequence", {"count": 5000}, tmp_path, payloads=5000)
    assert result.rows.height == 5000
    assert result.rows["n"].n_unique() == 5000
    assert result.dead_letters.is_empty()


def test_undecodable_payloads_land_in_dead_letters_with_their_raw_bytes(tmp_path):
    result = collect("test_sequence", {"count": 100, "bad_every": 25}, tmp_path, payloads=100)
    assert result.rows.height == 96
    dead = result.dead_letters.sort("payload")
    assert dead["payload"].to_list() == [b'{"n": 100', b'{"n": 25', b'{"n": 50', b'{"n": 75']
    assert set(dead["source"]) == {"source"}
    assert set(dead["table"]) == {"test_records"}
    assert dead["error"].str.starts_with("invalid JSON").all()
    assert dead["received_at"].null_count() == 0


def test_a_steady_stream_commits_once_per_flush_interval_not_once_per_arrival(tmp_path):
    # Arrivals during a commit wait for the next flush; chasing them drained a 500/s
    # stream in a commit every few milliseconds.
    started = time.monotonic()
    result = collect("test_sequence", {"count": 1000, "rate": 500}, tmp_path, payloads=1000)
    elapsed = time.monotonic() - started
    assert result.rows.height == 1000
    flush_interval = 0.2  # write_pipeline's default
    assert result.result.stats["source"].commits <= elapsed / flush_interval + 3


def test_restart_continues_the_sequence_recorded_in_the_table(tmp_path):
    collect("test_sequence", {"count": 300}, tmp_path, payloads=300)
    collect("test_sequence", {"count": 200}, tmp_path, payloads=200)
    table = DeltaTable(str(tmp_path / "tables" / "test_records"))
    assert table.transaction_version("source") == 500
    assert pl.read_delta(str(tmp_path / "tables" / "test_records")).height == 500


def test_sink_skips_a_batch_whose_sequence_is_already_committed(tmp_path):
    path = write_pipeline(tmp_path, "test_sequence", {})
    pipeline = load_pipeline(path, load())
    sink = DeltaSink(pipeline.sink)
    rows = RECORD.empty().vstack(
        pl.DataFrame(
            {"source": ["s"], "n": [1], "value": [None], "received_at": [None], "date": [None]},
            schema=RECORD.polars_schema,
        )
    )
    assert sink.commit("t", RECORD, rows, "app", 7) is True
    assert sink.commit("t", RECORD, rows, "app", 7) is False
    assert sink.commit("t", RECORD, rows, "app", 5) is False
    assert sink.committed_sequence("t", "app") == 7
    assert sink.info("t").rows == 1


class FlakySink(DeltaSink):
    """Fails the first commit *after* it landed: the worst case for a retry."""

    type = "flaky"
    failures = 0

    def commit(self, table, schema, rows, app_id, sequence):
        wrote = super().commit(table, schema, rows, app_id, sequence)
        if table == "test_records" and FlakySink.failures == 0:
            FlakySink.failures += 1
            raise OSError("simulated failure after the commit landed")
        return wrote


def test_commit_failing_after_it_landed_is_retried_without_a_duplicate(pm, tmp_path, caplog):
    pm.register(Plugin(SequenceSource, sinks=[FlakySink]), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        '[sink]\ntype = "flaky"\nflush_interval = 0.1\n'
        '[sources.s]\ntype = "test_sequence"\ncount = 50\n',
        until=lambda stats: stats["s"].rows >= 50,
    )
    assert FlakySink.failures == 1
    assert "commit to table test_records failed (attempt 1)" in caplog.text
    assert pl.read_delta(str(tables / "test_records"))["n"].sort().to_list() == list(range(1, 51))


class CrashingDecoder(SequenceSource):
    type = "test_crashing_decoder"

    def decode(self, batch):
        raise ZeroDivisionError("decoder bug")


def test_decoder_that_raises_sends_the_batch_to_dead_letters(pm, tmp_path):
    pm.register(Plugin(CrashingDecoder), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        '[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_crashing_decoder"\ncount = 20\n',
        until=lambda stats: stats["s"].dead_letters >= 20,
    )
    dead = pl.read_delta(str(tables / "_dead_letters"))
    assert dead.height == 20
    assert dead["error"].str.contains("ZeroDivisionError: decoder bug").all()


class DropsOnce(SequenceSource):
    """Fails its first connection before sending anything, then streams normally."""

    type = "test_drops_once"
    attempts = 0

    async def stream(self, feed):
        DropsOnce.attempts += 1
        if DropsOnce.attempts == 1:
            raise ConnectionRefusedError("refused")
        await super().stream(feed)


def test_stream_that_fails_is_reconnected_and_the_gap_recorded(pm, tmp_path):
    pm.register(Plugin(DropsOnce), name="t")
    result, tables = run(
        pm,
        tmp_path,
        '[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_drops_once"\ncount = 10\n',
        until=lambda stats: stats["s"].rows >= 10,
    )
    assert result.stats["s"].reconnects == 1
    gaps = pl.read_delta(str(tables / "_gaps"))
    assert gaps["source"].to_list() == ["s"]
    assert "ConnectionRefusedError: refused" in gaps["reason"][0]
    assert (gaps["gap_end"] >= gaps["gap_start"]).all()


class Overlapping(ClockSource):
    """A poll that takes longer than the interval, and a check that polls never overlap."""

    type = "test_slow_clock"
    active = 0
    most_active = 0
    calls = 0

    async def poll(self):
        Overlapping.calls += 1
        Overlapping.active += 1
        Overlapping.most_active = max(Overlapping.most_active, Overlapping.active)
        try:
            if Overlapping.calls == 2:
                await asyncio.sleep(self.interval * 0.9)  # finishes, but past the next tick
                await asyncio.sleep(self.interval * 0.5)
            return await super().poll()
        finally:
            Overlapping.active -= 1


def test_slow_poll_skips_ticks_instead_of_overlapping_or_drifting(pm, tmp_path):
    pm.register(Plugin(Overlapping), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        '[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_slow_clock"\ninterval = 0.3\n',
        until=lambda stats: stats["s"].polls >= 4,
    )
    assert Overlapping.most_active == 1
    gaps = pl.read_delta(str(tables / "_gaps"))
    assert any("overran" in reason or "timed out" in reason for reason in gaps["reason"])


class Refuses(ClockSource):
    type = "test_refuses"

    async def poll(self):
        raise lakeflow.SourceError("symbol FOO does not exist")


def test_source_error_stops_that_source_and_the_others_run_on(pm, tmp_path):
    pm.register(Plugin(Refuses, ClockSource), name="t")
    result, tables = run(
        pm,
        tmp_path,
        "[sink]\nflush_interval = 0.1\n"
        '[sources.bad]\ntype = "test_refuses"\ninterval = 0.1\n'
        '[sources.good]\ntype = "test_clock"\ninterval = 0.1\n',
        until=lambda stats: stats["good"].polls >= 5,
    )
    assert result.failed == ["bad"]
    assert result.stats["bad"].state == "failed"
    assert pl.read_delta(str(tables / "test_records")).height >= 5


class Banned(ClockSource):
    type = "test_banned"
    calls = 0

    async def poll(self):
        Banned.calls += 1
        if Banned.calls == 1:
            raise lakeflow.SourcePaused(0.3, "IP banned (418)")
        return await super().poll()


def test_paused_source_waits_and_records_the_pause_as_a_gap(pm, tmp_path, caplog):
    pm.register(Plugin(Banned), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        '[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_banned"\ninterval = 0.1\n',
        until=lambda stats: stats["s"].polls >= 2,
    )
    assert "PAUSED for 0s: IP banned (418)" in caplog.text
    gaps = pl.read_delta(str(tables / "_gaps"))
    assert gaps["reason"].to_list() == ["paused: IP banned (418)"]
    assert gaps["seconds"][0] >= 0.3


def test_once_polls_each_polling_source_one_time_and_skips_streams(pm, tmp_path):
    pm.register(Plugin(ClockSource, SequenceSource), name="t")
    result, tables = run(
        pm,
        tmp_path,
        '[sources.c]\ntype = "test_clock"\n[sources.s]\ntype = "test_sequence"\n',
        once=True,
    )
    assert list(result.stats) == ["c"]
    assert pl.read_delta(str(tables / "test_records")).height == 1


@pytest.fixture(autouse=True)
def _reset_class_counters():
    FlakySink.failures = 0
    DropsOnce.attempts = 0
    Overlapping.calls = Overlapping.active = Overlapping.most_active = 0
    Banned.calls = 0


class SlowSink(DeltaSink):
    """A sink ten times slower than the input, recording the size of every batch."""

    type = "slow"
    batches: list[int] = []

    def commit(self, table, schema, rows, app_id, sequence):
        time.sleep(0.05)
        SlowSink.batches.append(rows.height)
        return super().commit(table, schema, rows, app_id, sequence)


def test_slow_sink_holds_the_reader_back_instead_of_growing_memory(pm, tmp_path):
    SlowSink.batches = []
    pm.register(Plugin(SequenceSource, sinks=[SlowSink]), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        '[sink]\ntype = "slow"\nflush_interval = 0.05\nflush_rows = 100\nmax_buffered = 300\n'
        '[sources.s]\ntype = "test_sequence"\ncount = 5000\n',
        until=lambda stats: stats["s"].rows >= 5000,
        timeout=60,
    )
    assert max(SlowSink.batches) <= 300
    assert pl.read_delta(str(tables / "test_records"))["n"].n_unique() == 5000


def test_maintain_while_a_collector_writes_loses_and_doubles_nothing(tmp_path, cli):
    (tmp_path / "lakeflow.toml").write_text(
        "[sink]\nflush_interval = 0.05\n"
        '[sources.s]\ntype = "test_sequence"\ncount = 3000\nrate = 1500\n'
    )
    table = tmp_path / "tables" / "test_records"
    with reaped(start_run(tmp_path)) as collector:
        wait_for(lambda: committed(table, "s") > 0, timeout=60)
        for _ in range(4):
            done = cli("maintain", "--table", "test_records")
            assert done.returncode == 0, done.stderr
        wait_for(lambda: committed(table, "s") >= 3000, timeout=60)
        collector.terminate()
        _, err = collector.communicate(timeout=30)
    assert collector.returncode == 0, err
    assert pl.read_delta(str(table))["n"].sort().to_list() == list(range(1, 3001))


class BrokenSink(DeltaSink):
    """A store that refuses every commit (a full disk that never empties)."""

    type = "broken"

    def commit(self, table, schema, rows, app_id, sequence):
        raise OSError(28, "No space left on device")


def test_stop_with_a_sink_that_keeps_failing_gives_up_and_keeps_the_spool(pm, tmp_path, caplog):
    pm.register(Plugin(SequenceSource, sinks=[BrokenSink]), name="t")
    result, _ = run(
        pm,
        tmp_path,
        '[sink]\ntype = "broken"\nflush_interval = 0.1\n[runtime]\nstop_timeout = 0.5\n'
        '[sources.s]\ntype = "test_sequence"\ncount = 20\n',
        until=lambda stats: stats["s"].received >= 20,
    )
    assert result.failed == ["s"]
    assert "20 payloads not committed (kept in the spool for the next start)" in caplog.text
    spooled = Spool(tmp_path / "state" / "s")
    assert sum(len(block.payloads) for block in spooled.read()) == 20


def test_once_with_a_failing_poll_fails_the_source_instead_of_retrying_forever(pm, tmp_path):
    pm.register(Plugin(Failing), name="t")
    result, _ = run(pm, tmp_path, '[sources.f]\ntype = "test_failing"\ninterval = 0.1\n', once=True)
    assert result.failed == ["f"]


class Failing(ClockSource):
    type = "test_failing"

    async def poll(self):
        raise ConnectionError("no route to host")


class Hanging(ClockSource):
    type = "test_hanging"

    async def poll(self):
        await asyncio.Event().wait()


def test_stop_during_a_poll_records_the_missed_snapshot_as_a_gap(pm, tmp_path):
    pm.register(Plugin(Hanging), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        '[sink]\nflush_interval = 0.1\n[sources.h]\ntype = "test_hanging"\ninterval = 60\n',
        until=lambda stats: stats["h"].state == "polling",
    )
    gaps = pl.read_delta(str(tables / "_gaps"))
    assert gaps["reason"].to_list() == ["stopped before the poll finished"]
