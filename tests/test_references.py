"""Reference data and budgets: the lists a decoder reads beside its payloads, kept fresh
by the core within the limits an exchange sets.

Each test serves the list from a real aiohttp server on 127.0.0.1 (the test kit's
``HttpStandIn``) that answers a script and notes when each request arrived
(``time.monotonic()``). Periods are fractions of a second; a hold is checked by the
order of arrivals against it, never by how long something took.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
from lakeflow_testsource import SequenceSource

import lakeflow
from harness import Plugin, run
from lakeflow import Budget, Reference, ReferenceData, ReferenceUnavailable, RequestFailed
from lakeflow.budgets import forget_budgets
from lakeflow.testing.standins import HttpStandIn, Request, Response

NAME = "instruments"
LOG = logging.getLogger("test_references")


def listing(*symbols: str) -> dict[str, Any]:
    """An instrument list's JSON body."""
    return {"symbols": [{"symbol": s} for s in symbols]}


def symbols(body: Any) -> pl.DataFrame:
    return pl.DataFrame(body["symbols"], schema={"symbol": pl.String()})


def refused(status: int, retry_after: float) -> Response:
    return Response(status, "slow down", headers={"Retry-After": f"{retry_after:g}"})


class Script:
    """Answers the requests with ``answers`` in order, the last one again and again, and
    notes when each request arrived."""

    def __init__(self, *answers: Any) -> None:
        self.answers = answers
        self.arrivals: list[float] = []

    def __call__(self, request: Request) -> Any:
        self.arrivals.append(time.monotonic())
        return self.answers[min(len(self.arrivals), len(self.answers)) - 1]

    @property
    def requests(self) -> int:
        return len(self.arrivals)


def served(script: Script) -> HttpStandIn:
    return HttpStandIn(then=script, path="/instruments")


def reference(server: HttpStandIn, **options: Any) -> Reference:
    return Reference(NAME, url=f"{server.url}/instruments", parse=symbols, **options)


def listed(refs: ReferenceData) -> list[str]:
    frame = refs.frame(NAME)
    assert frame is not None
    return sorted(frame["symbol"].to_list())


class Noted(logging.Handler):
    """Sets an event when a record containing ``text`` is logged (on the event loop)."""

    def __init__(self, text: str = "") -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = asyncio.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.records.append(record)
            self.seen.set()


@pytest.fixture(autouse=True)
def budgets() -> Iterator[None]:
    """Every test starts without named budgets (they live for the process)."""
    forget_budgets()
    yield
    forget_budgets()


async def running(refs: ReferenceData) -> asyncio.Task[None]:
    """``refs.run()`` as a task, after the first read (what the runtime does)."""
    await refs.prepare()
    return asyncio.create_task(refs.run())


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- reading and keeping ------------------------------------------------------------------


def test_prepare_reads_every_list_once():
    async def scenario() -> None:
        script = Script(listing("AAA", "BBB"))
        async with served(script) as server:
            refs = ReferenceData([reference(server)], log=LOG)
            assert refs.frame(NAME) is None and refs.instruments() is None
            await refs.prepare()
            await refs.close()
        assert listed(refs) == ["AAA", "BBB"]
        assert sorted(refs.instruments() or ()) == ["AAA", "BBB"]
        assert script.requests == 1

    asyncio.run(scenario())


def test_a_prepare_that_fails_is_logged_and_leaves_the_list_unread(caplog):
    caplog.set_level(logging.WARNING)

    async def scenario() -> None:
        async with served(Script(Response(404, "gone"))) as server:
            refs = ReferenceData([reference(server)], log=LOG)
            await refs.prepare()
            await refs.close()
        assert refs.frame(NAME) is None

    asyncio.run(scenario())
    assert any(
        r.levelno == logging.WARNING
        and NAME in r.getMessage()
        and "none read yet" in r.getMessage()
        for r in caplog.records
    )


class Configured(SequenceSource):
    """A numbered stream whose decoder notes the instrument list it first decodes with."""

    type = "test_sequence_with_list"
    url = ""
    seen: list[pl.DataFrame | None] = []

    def reference_data(self) -> list[Reference]:
        return [Reference(NAME, url=self.url, parse=symbols)]

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        type(self).seen.append(self.reference(NAME))
        return super().decode(batch)


def test_the_runtime_reads_the_lists_before_the_first_decode(pm, tmp_path):
    script = Script(listing("AAA"))
    with served(script) as server:
        source = type("Listed", (Configured,), {"url": f"{server.url}/instruments", "seen": []})
        pm.register(Plugin(source), name="t")
        run(
            pm,
            tmp_path,
            '[sink]\nflush_interval = 0.1\n[sources.s]\ntype = "test_sequence_with_list"\n'
            "count = 3\n",
            until=lambda stats: stats["s"].rows >= 3,
        )

    first = source.seen[0]
    assert first is not None
    assert first["symbol"].to_list() == ["AAA"]


def test_a_list_is_read_again_every_period():
    async def scenario() -> None:
        script = Script(listing("AAA"), listing("AAA", "CCC"))
        async with served(script) as server:
            refs = ReferenceData([reference(server, every=0.1)], log=LOG)
            task = await running(refs)
            await asyncio.wait_for(refs.updated(NAME), 10)
            await stopped(task)
        assert listed(refs) == ["AAA", "CCC"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "failure",
    [Response(500, "down"), Response(200, "<html>not json</html>"), listing()],
    ids=["HTTP 500", "not JSON", "empty list"],
)
def test_a_failed_refresh_keeps_the_last_good_copy(failure):
    async def scenario() -> None:
        async with served(Script(listing("AAA"), failure)) as server:
            refs = ReferenceData([reference(server, within=0.2)], log=LOG)
            await refs.prepare()
            with pytest.raises((RequestFailed, ValueError)):
                await refs.refresh(NAME)
            await refs.close()
        assert listed(refs) == ["AAA"]
        assert sorted(refs.instruments() or ()) == ["AAA"]

    asyncio.run(scenario())


def test_a_failed_scheduled_refresh_is_logged_and_tried_again_after_retry_every():
    async def scenario() -> None:
        noted = Noted("keeping the last copy")
        log = logging.getLogger("test_references.retry")
        log.addHandler(noted)
        script = Script(listing("AAA"), Response(500, "down"), listing("AAA", "CCC"))
        try:
            async with served(script) as server:
                options = {"every": 0.05, "retry_every": 0.05, "within": 0.2}
                refs = ReferenceData([reference(server, **options)], log=log)
                task = await running(refs)
                await asyncio.wait_for(refs.updated(NAME), 10)
                await stopped(task)
        finally:
            log.removeHandler(noted)
        assert listed(refs) == ["AAA", "CCC"]
        assert NAME in noted.records[0].getMessage()

    asyncio.run(scenario())


def test_keep_delisted_keeps_rows_that_left_the_list():
    async def scenario() -> None:
        async with served(Script(listing("AAA", "BBB"), listing("AAA", "CCC"))) as server:
            refs = ReferenceData([reference(server, keep_delisted=True)], log=LOG)
            await refs.prepare()
            await refs.refresh(NAME)
            await refs.close()
        assert listed(refs) == ["AAA", "BBB", "CCC"]
        assert sorted(refs.instruments() or ()) == ["AAA", "BBB", "CCC"]

    asyncio.run(scenario())


def test_without_keep_delisted_a_refresh_replaces_the_list():
    async def scenario() -> None:
        async with served(Script(listing("AAA", "BBB"), listing("AAA", "CCC"))) as server:
            refs = ReferenceData([reference(server)], log=LOG)
            await refs.prepare()
            await refs.refresh(NAME)
            await refs.close()
        assert listed(refs) == ["AAA", "CCC"]

    asyncio.run(scenario())


# -- early reads --------------------------------------------------------------------------


def test_an_early_request_from_another_thread_reads_the_list_once():
    async def scenario() -> None:
        script = Script(listing("AAA"), listing("AAA", "NEW"))
        async with served(script) as server:
            refs = ReferenceData([reference(server, early_every=60)], log=LOG)
            task = await running(refs)
            updated = asyncio.ensure_future(refs.updated(NAME))
            await asyncio.to_thread(refs.request_early, "1 instrument(s) no list names: NEW")
            await asyncio.wait_for(updated, 10)
            await stopped(task)
        assert listed(refs) == ["AAA", "NEW"]
        assert script.requests == 2

    asyncio.run(scenario())


def test_a_second_early_request_within_early_every_reads_nothing():
    async def scenario() -> None:
        script = Script(listing("AAA"))
        async with served(script) as server:
            refs = ReferenceData([reference(server, early_every=60)], log=LOG)
            task = await running(refs)
            first = asyncio.ensure_future(refs.updated(NAME))
            await asyncio.to_thread(refs.request_early, "NEW")
            await asyncio.wait_for(first, 10)
            await asyncio.to_thread(refs.request_early, "NEWER")
            # A negative: nothing to wait for but a while in which nothing happens.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(refs.updated(NAME), 0.3)
            await stopped(task)
        assert script.requests == 2

    asyncio.run(scenario())


# -- holds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 418])
def test_a_refusal_with_retry_after_holds_the_list(status):
    async def scenario() -> None:
        script = Script(listing("AAA"), refused(status, 30), listing("AAA", "CCC"))
        async with served(script) as server:
            refs = ReferenceData([reference(server, within=0.2)], log=LOG)
            await refs.prepare()
            with pytest.raises(RequestFailed):
                await refs.refresh(NAME)
            with pytest.raises(ReferenceUnavailable, match=f"HTTP {status}"):
                await refs.refresh(NAME)
            await refs.close()
        assert script.requests == 2
        assert listed(refs) == ["AAA"]

    asyncio.run(scenario())


@pytest.mark.parametrize("status", [429, 418])
def test_no_request_goes_before_the_retry_after_of_a_refusal(status):
    async def scenario() -> None:
        script = Script(listing("AAA"), refused(status, 0.5), listing("AAA", "CCC"))
        async with served(script) as server:
            options = {"within": 0.2, "retry_every": 0.01, "every": 0.01}
            refs = ReferenceData([reference(server, **options)], log=LOG)
            task = await running(refs)
            await asyncio.wait_for(refs.updated(NAME), 10)  # the refusal, then this
            await stopped(task)
        refusal, after = script.arrivals[1], script.arrivals[2]
        assert after >= refusal + 0.5
        assert listed(refs) == ["AAA", "CCC"]

    asyncio.run(scenario())


def test_an_early_request_during_a_hold_waits_for_the_hold():
    async def scenario() -> None:
        noted = Noted()  # every warning
        log = logging.getLogger("test_references.hold")
        log.addHandler(noted)
        script = Script(listing("AAA"), refused(418, 0.5), listing("AAA", "NEW"))
        try:
            async with served(script) as server:
                refs = ReferenceData([reference(server, within=0.2)], log=log)
                task = await running(refs)
                with pytest.raises(RequestFailed):
                    await refs.refresh(NAME)
                updated = asyncio.ensure_future(refs.updated(NAME))
                await asyncio.to_thread(refs.request_early, "NEW")
                await asyncio.wait_for(updated, 10)
                await stopped(task)
        finally:
            log.removeHandler(noted)
        # The request waits for the hold instead of asking again and again meanwhile.
        assert len(noted.records) <= 1
        assert script.arrivals[2] >= script.arrivals[1] + 0.5

    asyncio.run(scenario())


def test_a_refusal_holds_every_list_that_shares_its_budget():
    async def scenario() -> None:
        banned = Script(refused(418, 0.5))
        other = Script(listing("AAA"))
        async with served(banned) as first, served(other) as second:
            budget = {"budget": ("exchange", 1000), "within": 0.2}
            a = ReferenceData([reference(first, **budget)], log=LOG)
            b = ReferenceData([reference(second, **budget)], log=LOG)
            with pytest.raises(RequestFailed):
                await a.refresh(NAME)
            await b.refresh(NAME)  # waits for the hold, rather than failing
            await a.close()
            await b.close()
        assert other.arrivals[0] >= banned.arrivals[0] + 0.5
        assert listed(b) == ["AAA"]

    asyncio.run(scenario())


def test_a_429_waited_out_within_a_fetch_still_holds_every_list_sharing_its_budget():
    async def scenario() -> None:
        noted = Noted("retrying in")
        log = logging.getLogger("test_references.shared")
        log.addHandler(noted)
        slowed = Script(refused(429, 0.5), listing("AAA"))
        other = Script(listing("BBB"))
        try:
            async with served(slowed) as first, served(other) as second:
                budget = {"budget": ("exchange", 1000), "within": 10}
                a = ReferenceData([reference(first, **budget)], log=log)
                b = ReferenceData([reference(second, **budget)], log=log)
                waiting = asyncio.ensure_future(a.refresh(NAME))
                await asyncio.wait_for(noted.seen.wait(), 10)  # a got its 429 and waits
                await b.refresh(NAME)
                await waiting
                await a.close()
                await b.close()
        finally:
            log.removeHandler(noted)
        assert other.arrivals[0] >= slowed.arrivals[0] + 0.5

    asyncio.run(scenario())


# -- budgets --------------------------------------------------------------------------------


def test_a_budget_is_one_instance_per_name_and_the_smaller_capacity_wins():
    first = Budget.named("exchange", 2400)
    second = Budget.named("exchange", 1200)

    assert second is first
    assert first.capacity == 1200
    assert Budget.named("exchange", 6000).capacity == 1200


def test_spending_past_a_budgets_capacity_waits_for_the_window():
    async def scenario() -> None:
        budget = Budget("exchange", 2, per=0.3)
        before = time.monotonic()
        await budget.spend()
        await budget.spend()
        await budget.spend()
        assert time.monotonic() >= before + 0.3

    asyncio.run(scenario())


def test_two_sources_naming_one_budget_share_it():
    async def scenario() -> None:
        Budget.named("exchange", 2, per=0.5)
        first, second = Script(listing("AAA")), Script(listing("BBB"))
        async with served(first) as one, served(second) as two:
            a = ReferenceData([reference(one, budget=("exchange", 2))], log=LOG)
            b = ReferenceData([reference(two, budget=("exchange", 2))], log=LOG)
            before = time.monotonic()
            await a.refresh(NAME)
            await b.refresh(NAME)
            await a.refresh(NAME)  # the third request of the window: waits for it to slide
            await a.close()
            await b.close()
        assert first.arrivals[1] >= before + 0.5

    asyncio.run(scenario())
