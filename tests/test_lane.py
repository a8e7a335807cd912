"""A source's lane keeps its coverage: which stretches become gaps, and with what reason.

The lane is tested by itself here (the supervisors and the committer drive it in every
end-to-end test): real lanes, on a real event loop, with a real buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from lakeflow_testsource import RECORD
from lakeflow_testsource.sources import ClockSource, SequenceConfig, SequenceSource

from harness import wait_until
from lakeflow.config import SinkConfig, SourceSpec
from lakeflow.runtime.buffer import make_batch
from lakeflow.runtime.committer import Committer
from lakeflow.runtime.lane import Landed, Lane
from lakeflow.runtime.stats import SourceState, SourceStats
from lakeflow.sinks.delta import DeltaSink

LOG = logging.LoggerAdapter(logging.getLogger("test_lane"), {"source": "s"})


def make_lane(*, polling: bool = False, covered_until: float | None = None) -> Lane:
    cls = ClockSource if polling else SequenceSource
    config = cls.Config() if polling else SequenceConfig()
    spec = SourceSpec(name="s", cls=cls, config=config, table="records", schema=RECORD)
    return Lane(spec, SourceStats(), SinkConfig(), LOG, covered_until=covered_until)


def reasons(lane: Lane) -> list[str]:
    return [gap.reason for gap in lane.gaps]


@pytest.fixture
def stream() -> Lane:
    lane = make_lane()
    lane.stream_started(silence_timeout=60.0)
    return lane


def test_a_first_attempt_that_connects_leaves_no_gap(stream: Lane) -> None:
    stream.connected("wss://example/ws")

    assert stream.gaps == []
    assert stream.stats.state == SourceState.CONNECTED
    assert stream.stats.uncovered_since is None


def test_a_first_attempt_that_fails_is_a_gap_from_the_start(stream: Lane) -> None:
    started = stream.stats.uncovered_since
    stream.disconnected("ConnectionRefusedError")
    stream.connected()

    assert reasons(stream) == ["not connected yet: ConnectionRefusedError"]
    assert stream.gaps[0].start == datetime.fromtimestamp(started, stream.gaps[0].start.tzinfo)


def test_a_drop_is_a_gap_until_the_next_connection(stream: Lane) -> None:
    stream.connected()
    stream.disconnected("connection closed")
    assert stream.gaps == []  # open until the next connection or the stop
    stream.connected()

    assert reasons(stream) == ["connection closed"]
    assert stream.gaps[0].start <= stream.gaps[0].end


def test_a_drop_asks_for_what_arrived_to_be_committed_now(stream: Lane) -> None:
    stream.connected()
    stream.disconnected("connection closed")

    assert stream.drain
    assert stream.buffer.ready.is_set()


def test_a_stop_in_the_first_handshake_says_what_the_attempt_was_doing(stream: Lane) -> None:
    stream.connecting("waiting for the handshake's answer")
    stream.stopped()

    assert reasons(stream) == [
        "not connected yet: waiting for the handshake's answer, until the stop"
    ]


def test_a_stop_while_reconnecting_keeps_the_reason_the_outage_began(stream: Lane) -> None:
    stream.connected()
    stream.disconnected("ConnectionResetError")
    stream.stopped()

    assert reasons(stream) == ["ConnectionResetError"]
    assert stream.stats.uncovered_since is not None


def test_a_silent_connection_is_a_gap_and_a_silent_state(stream: Lane) -> None:
    stream.connected("wss://example/ws")
    quiet_since = stream.quiet_since()
    assert quiet_since is not None
    stream.silent(quiet_since, "connected to wss://example/ws but no data for 61s")

    assert reasons(stream) == ["silent: connected to wss://example/ws but no data for 61s"]
    assert stream.stats.state == SourceState.SILENT


def test_data_after_a_silence_ends_it(stream: Lane) -> None:
    stream.connected()
    quiet_since = stream.quiet_since()
    assert quiet_since is not None
    stream.silent(quiet_since, "no data")
    assert stream.silent_after is not None
    stream.apply(Landed(rows=1, commits=1, newest_data=stream.silent_after + 5))

    assert stream.data_again() == pytest.approx(5)
    assert stream.stats.state == SourceState.CONNECTED


def test_a_stop_on_a_silent_connection_records_the_silence_until_the_stop(stream: Lane) -> None:
    stream.connected("wss://example/ws")
    quiet_since = stream.quiet_since()
    assert quiet_since is not None
    stream.silent(quiet_since, "no data")
    stream.stopped()

    assert len(stream.gaps) == 2
    assert stream.gaps[1].reason.startswith("silent: connected to wss://example/ws")
    assert stream.gaps[1].reason.endswith("until the stop")


def test_the_time_since_the_previous_run_is_a_not_running_gap() -> None:
    lane = make_lane(covered_until=1_700_000_000.0)
    assert lane.stats.uncovered_since == 1_700_000_000.0
    lane.resumed(last_spooled_ns=None)

    assert reasons(lane) == ["lakeflow was not running"]
    assert lane.gaps[0].start.timestamp() == 1_700_000_000.0


def test_without_a_previous_status_the_last_spooled_payload_stands_in() -> None:
    lane = make_lane()
    lane.resumed(last_spooled_ns=1_700_000_000_000_000_000)

    assert lane.gaps[0].start.timestamp() == 1_700_000_000.0


def test_a_first_run_has_no_not_running_gap() -> None:
    lane = make_lane()
    lane.resumed(last_spooled_ns=None)

    assert lane.gaps == []


def test_failed_polls_are_one_gap_until_the_next_success() -> None:
    lane = make_lane(polling=True)
    lane.polls_started()
    lane.poll_failed("poll timed out")
    lane.poll_failed("poll failed: OSError: down")
    assert lane.gaps == []
    lane.polled([b"{}"])

    assert reasons(lane) == ["poll timed out"]
    assert lane.stats.failed_polls == 2
    assert lane.stats.polls == 1
    assert len(lane.buffer) == 1


def test_a_stop_after_failed_polls_records_them_until_the_stop() -> None:
    lane = make_lane(polling=True)
    lane.polls_started()
    lane.poll_failed("paused: banned", paused=True)
    assert lane.stats.state == SourceState.PAUSED
    lane.stopped()

    assert reasons(lane) == ["paused: banned"]


def test_gaps_taken_for_a_commit_that_is_refused_go_again_first() -> None:
    lane = make_lane()
    lane.add_gap(1.0, 2.0, "first")
    taken = lane.take_gaps()
    lane.add_gap(3.0, 4.0, "second")
    lane.return_gaps(taken)

    assert reasons(lane) == ["first", "second"]
    assert lane.stats.gaps == 2


def test_a_commit_is_counted_once_when_its_result_is_applied() -> None:
    lane = make_lane()
    lane.apply(
        Landed(
            rows=10,
            commits=1,
            dead_letters=2,
            ignored=3,
            newest_data=5.0,
            committed_at=6.0,
            seconds=0.1,
            latency=1.5,
        )
    )
    stats = lane.stats

    assert (stats.rows, stats.commits, stats.dead_letters, stats.ignored) == (10, 1, 2, 3)
    assert (stats.last_data, stats.last_commit) == (5.0, 6.0)
    assert stats.latency.count == stats.commit_seconds.count == 1


def test_a_restart_after_a_crash_is_a_gap_until_the_stream_connects_again(stream: Lane) -> None:
    stream.connected()
    stream.stopped()  # the supervisor's end, as the crash unwinds it
    stream.crashed("KeyError: 'x'")
    stream.stream_started(silence_timeout=60.0)
    stream.connected()

    assert reasons(stream) == ["source crashed: KeyError: 'x'"]


def test_a_restart_after_a_crash_is_a_gap_until_the_polls_start_again() -> None:
    lane = make_lane(polling=True)
    lane.polls_started()
    lane.stopped()
    lane.crashed("TypeError: bad body")
    assert lane.stats.uncovered_since is not None
    lane.polls_started()

    assert reasons(lane) == ["source crashed: TypeError: bad body"]
    assert lane.stats.uncovered_since is None


def test_a_stop_during_a_crashs_restart_wait_records_it_until_the_stop() -> None:
    lane = make_lane()
    lane.crashed("RuntimeError: boom")
    lane.stopped()

    assert reasons(lane) == ["source crashed: RuntimeError: boom"]


def test_a_start_tried_again_queues_the_not_running_gap_once() -> None:
    lane = make_lane(covered_until=1_700_000_000.0)
    lane.resumed(last_spooled_ns=None)
    lane.resumed(last_spooled_ns=None)

    assert reasons(lane) == ["lakeflow was not running"]


class GatedSink(DeltaSink):
    """A Delta sink whose commits wait at a gate: a stop can then be staged exactly while
    a worker thread is inside a commit, which no real store times reliably."""

    gate = threading.Event()
    entered = threading.Event()

    def commit(self, *args: Any, **kwargs: Any) -> bool:
        self.entered.set()
        self.gate.wait(30)
        return super().commit(*args, **kwargs)


def test_rows_a_cancelled_commit_lands_are_counted_when_its_thread_ends(
    tmp_path: Path,
) -> None:
    config = SinkConfig(uri=str(tmp_path / "tables"))
    lane = make_lane()
    committer = Committer(
        lane_spec(), SequenceSource("s", SequenceConfig()), GatedSink(config), lane, config
    )
    payloads = [b'{"n": %d, "value": "1.5"}' % n for n in range(1, 11)]
    batch = make_batch(payloads, array("q", [time.time_ns()] * len(payloads)))

    async def stop_in_the_middle() -> None:
        flush = asyncio.ensure_future(committer._commit_with_retry(1, 10, batch, []))
        await wait_until(GatedSink.entered.is_set, "the commit's worker thread in the sink")
        flush.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flush
        assert lane.stats.rows == 0  # the thread still writes: nothing counted yet
        GatedSink.gate.set()
        await wait_until(lambda: lane.stats.rows == 10, "the landed rows counted")

    asyncio.run(stop_in_the_middle())
    assert lane.stats.commits == 1
    assert lane.stats.last_data is not None


def lane_spec() -> SourceSpec:
    return SourceSpec(
        name="s", cls=SequenceSource, config=SequenceConfig(), table="records", schema=RECORD
    )


def test_a_second_stop_leaves_where_the_coverage_ended(stream: Lane) -> None:
    stream.connected()
    stream.stopped()
    ended = stream.stats.uncovered_since
    stream.stopped()  # the reader's end, after its supervisor's

    assert stream.stats.uncovered_since == ended
    assert stream.gaps == []


def test_a_failure_is_kept_in_words_after_the_source_recovers(stream: Lane) -> None:
    stream.disconnected("ClientConnectorDNSError: cannot resolve ws.okx.com")
    stream.connected()

    assert stream.stats.last_error == "ClientConnectorDNSError: cannot resolve ws.okx.com"
    assert stream.stats.last_error_at is not None
