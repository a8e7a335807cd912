"""lakeflow.testing: the fixtures, stand-ins and collect helpers plugin authors get."""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import json
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

import lakeflow
from lakeflow.testing import HttpStandIn, Response, WebSocketStandIn, collect

WS = "test_websocket"
HTTP = "test_http"


def record(n: int) -> bytes:
    return json.dumps({"n": n, "value": f"{n}.5"}).encode()


def in_arrival_order(rows: pl.DataFrame) -> list[int]:
    """``n`` of each row in the order the payloads arrived (a table has no row order)."""
    return rows.sort("received_at")["n"].to_list()


def test_ws_standin_payloads_land_in_the_table(ws_standin, lakeflow_collect):
    server = ws_standin([record(1), record(2), record(3)])

    result = lakeflow_collect(WS, {"url": server.url}, payloads=3)

    assert sorted(result.rows["n"]) == [1, 2, 3]
    assert result.rows["value"].to_list() == [Decimal("1.5"), Decimal("2.5"), Decimal("3.5")]
    assert result.dead_letters.is_empty()
    assert server.sent == 3


def test_undecodable_payloads_come_back_as_dead_letters(ws_standin, lakeflow_collect):
    server = ws_standin([record(1), b'{"n": 2, "value": "x"}', b"{broken"])

    result = lakeflow_collect(WS, {"url": server.url}, payloads=3)

    assert result.rows["n"].to_list() == [1]
    assert sorted(result.dead_letters["payload"]) == [b'{"n": 2, "value": "x"}', b"{broken"]


def test_every_connection_but_the_last_is_closed_and_shows_as_a_gap(ws_standin, lakeflow_collect):
    server = ws_standin([record(1)], [record(2)], path="/feed", close=(1001, "maintenance"))

    result = lakeflow_collect(WS, {"url": server.url + "/feed"}, payloads=2, standins=[server])

    assert server.paths == ["/feed", "/feed"]
    assert sorted(result.rows["n"]) == [1, 2]
    (reason,) = result.gaps["reason"]
    assert "1001" in reason and "maintenance" in reason


def test_a_wrong_path_fails_the_run_at_once(ws_standin, lakeflow_collect):
    server = ws_standin([record(1)], path="/right")
    started = time.monotonic()

    with pytest.raises(AssertionError, match="/wrong"):
        lakeflow_collect(WS, {"url": server.url + "/wrong"}, payloads=1, standins=[server])

    assert time.monotonic() - started < 10  # not the 30 s timeout
    assert set(server.unexpected) == {"/wrong"}


def test_what_the_client_sends_is_recorded(ws_standin, lakeflow_collect):
    server = ws_standin([record(1)])

    lakeflow_collect(WS, {"url": server.url, "subscribe": '{"op":"subscribe"}'}, payloads=1)

    assert server.received == ['{"op":"subscribe"}']


def test_a_run_that_misses_its_goal_times_out_saying_how_far_it_got(ws_standin, lakeflow_collect):
    server = ws_standin([record(1)])

    with pytest.raises(TimeoutError, match="received 1 payloads"):
        lakeflow_collect(WS, {"url": server.url}, payloads=5, timeout=2)


def test_http_standin_serves_its_responses_in_order_then_repeats_the_last(
    http_standin, lakeflow_collect
):
    server = http_standin([record(1), record(2)])

    result = lakeflow_collect(HTTP, {"url": server.url + "/p", "interval": 0.1}, polls=4)

    polls = result.result.stats["source"].polls
    assert in_arrival_order(result.rows) == [1, 2] + [2] * (polls - 2)
    assert [r.path for r in server.requests[:4]] == ["/p"] * 4


def test_http_response_status_headers_and_json_body(http_standin):
    server = http_standin(
        [Response(429, {"code": -1003}, {"Retry-After": "1"}), {"ok": True}],
        headers={"X-Used-Weight": "80"},
    )

    async def get() -> list[tuple[int, str | None, str | None, bytes]]:
        import aiohttp

        answers = []
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(server.url + "/x?a=1") as r:
                    answers.append(
                        (
                            r.status,
                            r.headers.get("Retry-After"),
                            r.headers.get("X-Used-Weight"),
                            await r.read(),
                        )
                    )
        return answers

    answers = asyncio.run(get())

    assert answers == [
        (429, "1", "80", b'{"code":-1003}'),
        (200, None, "80", b'{"ok":true}'),
    ]
    assert server.requests[0].query == {"a": "1"}
    assert server.requests[0].raw_query == "a=1"


def test_http_then_computes_answers_from_the_request(http_standin, lakeflow_collect):
    server = http_standin(then=lambda request: record(len(server.requests)))

    result = lakeflow_collect(HTTP, {"url": server.url, "interval": 0.1}, polls=3)

    assert in_arrival_order(result.rows)[:3] == [1, 2, 3]


def test_a_queued_function_answers_the_request_it_is_given(http_standin):
    server = http_standin([lambda request: {"echo": request.query["q"]}, b"plain"])

    async def get(query: str) -> bytes:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(server.url + query) as r:
            return await r.read()

    assert asyncio.run(get("/?q=1")) == b'{"echo":"1"}'
    assert asyncio.run(get("/")) == b"plain"
    assert asyncio.run(get("/")) == b"plain"  # the last answer repeats


def test_a_failed_poll_is_a_gap_and_polling_goes_on(http_standin, lakeflow_collect):
    server = http_standin([Response(503, "down"), record(7)])

    result = lakeflow_collect(HTTP, {"url": server.url, "interval": 0.1}, polls=2)

    assert in_arrival_order(result.rows)[0] == 7
    assert "HTTP 503" in result.gaps["reason"][0]


def test_standins_share_the_event_loop_of_an_async_test(lakeflow_collect):
    async def main():
        async with WebSocketStandIn([record(1), record(2)]) as server:
            return await lakeflow_collect.run_async(WS, {"url": server.url}, payloads=2)

    result = asyncio.run(main())

    assert sorted(result.rows["n"]) == [1, 2]


def test_collect_works_without_pytest_fixtures(tmp_path: Path):
    with HttpStandIn([record(3)]) as server:
        result = collect(HTTP, {"url": server.url, "interval": 0.1}, tmp_path, polls=1)

    assert in_arrival_order(result.rows)[0] == 3
    assert result.pipeline == tmp_path / "lakeflow.toml"
    assert result.table("test_records").height == result.rows.height


def test_a_second_collect_continues_the_same_table(ws_standin, lakeflow_collect):
    first = ws_standin([record(1)])
    lakeflow_collect(WS, {"url": first.url}, payloads=1)
    second = ws_standin([record(2)])

    result = lakeflow_collect(WS, {"url": second.url}, payloads=1)

    assert sorted(result.rows["n"]) == [1, 2]


def test_lakeflow_tables_is_the_sink_folder_collect_writes_to(lakeflow_tables, lakeflow_collect):
    with WebSocketStandIn([record(1)]) as server:
        result = lakeflow_collect(WS, {"url": server.url}, payloads=1)

    assert result.tables == lakeflow_tables
    assert (lakeflow_tables / "test_records" / "_delta_log").is_dir()


def test_the_fixtures_are_a_registered_pytest_plugin():
    (entry,) = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "lakeflow"
    ]
    assert entry.value == "lakeflow.testing.plugin"


def test_a_test_file_without_conftest_gets_the_fixtures(tmp_path: Path):
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            def test_it(ws_standin, lakeflow_collect):
                server = ws_standin([b'{"n": 1, "value": "2"}'])
                result = lakeflow_collect("test_websocket", {"url": server.url}, payloads=1)
                assert result.rows["n"].to_list() == [1]
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_server_pings_are_answered_and_the_connection_stays_up(ws_standin, lakeflow_collect):
    # Frames 0.5 s apart with a ping every 0.2 s: a client that did not answer would be
    # dropped (a gap) before the second frame.
    server = ws_standin([record(1), record(2)], ping_interval=0.2, delay=0.5)

    result = lakeflow_collect(WS, {"url": server.url}, payloads=2)

    assert sorted(result.rows["n"]) == [1, 2]
    assert result.gaps.is_empty()
    assert len(server.paths) == 1


def test_binary_frames_are_payloads_too(ws_standin, lakeflow_collect):
    server = ws_standin([record(1)], binary=True)

    result = lakeflow_collect(WS, {"url": server.url}, payloads=1)

    assert result.rows["n"].to_list() == [1]


def test_the_kit_imports_without_pytest():
    code = "import sys; sys.modules['pytest'] = None; import lakeflow.testing; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.stdout.strip() == "ok", done.stderr


def test_the_pytest_plugin_loads_without_polars_deltalake_or_aiohttp():
    # It loads with every pytest session of any environment that has lakeflow-core.
    probe = (
        "import sys, lakeflow.testing.plugin\n"
        "print(sorted(m for m in ('polars', 'deltalake', 'aiohttp') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


TICKS = lakeflow.TableSchema(
    "in_test_tick", "ticks", {"n": pl.Int64(), "date": pl.Date()}, description="Ticks."
)


class TickSource(lakeflow.PollingSource):
    """A source class no installed plugin registers: only this test knows it."""

    type = "in_test_tick"
    schema = TICKS.name
    description = "counts its polls"
    polled = 0

    async def poll(self) -> bytes:
        TickSource.polled += 1
        return json.dumps({"n": TickSource.polled}).encode()

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        return lakeflow.decode_json(
            batch,
            {"n": lakeflow.Field("n", pl.Int64())},
            received_at=None,
            derive={"date": pl.lit(datetime.date(2026, 12, 3))},
        )


def test_a_source_class_runs_without_being_installed(lakeflow_collect):
    result = lakeflow_collect(TickSource, {"interval": 0.05}, polls=3, schemas=[TICKS])
    assert sorted(result.rows["n"].to_list())[:3] == [1, 2, 3]


def test_schemas_go_with_a_class_not_an_installed_type(lakeflow_collect):
    with pytest.raises(ValueError, match="schemas= goes with a source class"):
        lakeflow_collect("test_clock", {}, polls=1, schemas=[TICKS])


def test_readme_helpers_read_fenced_blocks_and_the_table_after_a_heading():
    from lakeflow.testing import code_blocks, table_after

    text = "# x\n```toml\na = 1\n```\n## Keys\n\n| key | meaning |\n|---|---|\n| `a` | one |\n"

    assert code_blocks(text, "toml") == ["a = 1\n"]
    assert table_after(text, "## Keys") == [["`a`", "one"]]
    with pytest.raises(ValueError, match="no '## Schema'"):
        table_after(text, "## Schema")


def test_collect_is_the_function_whichever_export_of_its_module_came_first():
    # A fresh interpreter: read_table's import binds lakeflow.testing.collect first.
    code = (
        "from lakeflow.testing import read_table\n"
        "from lakeflow.testing import collect\n"
        "assert callable(collect), collect\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
