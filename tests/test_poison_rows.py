"""Poison payloads: values that decode, but that no table can hold or would hold altered.

The real ``lakeflow run`` reads a loopback Binance stand-in (a ``binance_liquidations``
source of USD-M, its instrument list served too) into Delta tables under a temporary
folder. A payload whose trade time lies past any calendar or outside the years an
exchange can have traded in, or whose decimals arrive as JSON numbers with more digits
than a float keeps, must never hold back the events around it, stop the run, or be
stored altered: it becomes one dead letter naming the field and the value sent, and every
good event lands once, also when a restart replays the spooled batch that held it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from harness import LAKEFLOW, needs_workspace_plugins, wait_for
from lakeflow.testing import HttpStandIn, WebSocketStandIn

pytestmark = needs_workspace_plugins

FIXTURES = Path(__file__).parent / "fixtures"
#: Where a USD-M source reads the all-market stream, and its instrument list.
ALL_MARKET = "/market/ws/!forceOrder@arr"
EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
SOURCE = "liquidations"
TABLE = "liquidations"
#: Seconds for a handful of events to land: generous for a loaded machine. A batch held
#: back by a poison payload never lands at all.
LANDING = 60.0
#: The first day of the plausible trade times: no exchange traded before 2009.
FIRST_DAY = date(2009, 1, 1)
#: 10000-01-01, 2100-01-01 and 1938-01-01 as Binance milliseconds.
YEAR_10000_MS = 253_402_300_800_000
YEAR_2100_MS = 4_102_444_800_000
YEAR_1938_MS = -1_009_843_200_000
#: 9e15 ms: year 287,000-odd, representable as microseconds, writable by no Parquet writer.
PAST_ANY_CALENDAR_MS = 9_000_000_000_000_000
#: 20 integer digits, the most the tables' decimal(38, 18) holds, and a decimal.
LONG_QUANTITY = "12345678901234567890.5"


# -- events ---------------------------------------------------------------------------------


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def restamped(frame: bytes, trade_ms: int, event_ms: int | None = None) -> bytes:
    """``frame`` with its trade time ``o.T`` and its event time ``E`` (default: 2 ms later)."""
    event = json.loads(frame)
    event["o"]["T"] = trade_ms
    event["E"] = trade_ms + 2 if event_ms is None else event_ms
    return json.dumps(event, separators=(",", ":")).encode()


def with_number(frame: bytes, key: str, literal: str) -> bytes:
    """``frame`` with the string value of ``o.<key>`` replaced by a bare JSON number."""
    text, count = re.subn(rf'"{key}":"[^"]*"', f'"{key}":{literal}', frame.decode())
    assert count == 1, f"{key!r} is not a string value of {frame!r}"
    return text.encode()


def key_of(frame: bytes) -> tuple[str, int]:
    """What names one event: its symbol and its trade time in ms, as sent."""
    order = json.loads(frame)["o"]
    return order["s"], int(order["T"])


def fixture_events() -> list[bytes]:
    """Binance's USD-M fixture frames, stamped with distinct trade times of the last minute."""
    frames = (FIXTURES / "binance_usdm_forceOrder.jsonl").read_bytes().splitlines()
    start = now_ms() - 60_000
    return [restamped(frame, start + k * 1000) for k, frame in enumerate(frames)]


@pytest.fixture
def good_events() -> list[bytes]:
    """Good events: see :func:`fixture_events`."""
    return fixture_events()


def among(good: Sequence[bytes], *poison: bytes) -> list[bytes]:
    """The good events with the poison ones spread evenly between them, none first or last."""
    sent, step = list(good), len(good) // (len(poison) + 1)
    for k, payload in enumerate(poison, 1):
        sent.insert(k * step + k - 1, payload)
    return sent


def poisoned(template: bytes, trade_ms: int) -> bytes:
    """A copy of ``template`` whose trade time is ``trade_ms``; its event time is now."""
    return restamped(template, trade_ms, event_ms=now_ms())


# -- the run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instruments() -> Iterator[HttpStandIn]:
    """Binance's USD-M instrument list (``exchangeInfo``) on loopback, naming every symbol."""
    body = (FIXTURES / "binance_usdm_exchangeInfo.json").read_bytes()
    with HttpStandIn(then=json.loads(body), path=EXCHANGE_INFO) as server:
        yield server


def pipeline(ws_url: str, rest_url: str, flush_interval: float) -> str:
    return f"""
[sink]
uri = "tables"
flush_interval = {flush_interval}

[runtime]
spool = true
fsync_interval = 0

[maintenance]
enabled = false

[sources.{SOURCE}]
type = "binance_liquidations"
market = "usdm"
ws_url = "{ws_url}"
usdm_rest_url = "{rest_url}"
"""


class Collector:
    """The real ``lakeflow run`` of a folder, reading ``sent`` from a WebSocket stand-in.

    The stand-in sends ``sent`` to the first connection and nothing to any later one (a
    restart), and keeps each open. The run's log is ``run.log`` in the folder.
    """

    def __init__(self, folder: Path, sent: Sequence[bytes], instruments: HttpStandIn) -> None:
        self.folder = folder
        self.sent = list(sent)
        self.instruments = instruments
        self.feed = WebSocketStandIn(self.sent, path=ALL_MARKET)
        self.log = folder / "run.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Collector:
        self.feed.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.feed.stop()

    def start(self, flush_interval: float = 0.5) -> None:
        (self.folder / "lakeflow.toml").write_text(
            pipeline(self.feed.url, self.instruments.url, flush_interval)
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [LAKEFLOW, "run"], cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def running(self) -> bool:
        """True while the run lives; fails with its log if it ended on its own."""
        assert self.process is not None and self.process.poll() is None, self.tail()
        return True

    def stop(self) -> int:
        """SIGTERM, then the exit code (within a minute: a normal stop takes seconds)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def table(self, name: str) -> pl.DataFrame | None:
        """A table as committed now (None: not created yet, or being created)."""
        try:
            return pl.read_delta(str(self.folder / "tables" / name))
        except Exception:
            return None

    def stored_keys(self) -> list[tuple[str, int]]:
        """(symbol, trade time in ms) of every stored liquidation, one per row."""
        rows = self.table(TABLE)
        if rows is None:
            return []
        return rows.select("symbol", pl.col("trade_time").dt.epoch("ms")).rows()

    def dead_letters(self) -> list[dict[str, object]]:
        """This source's dead letters: ``error`` and ``payload`` (bytes)."""
        rows = self.table("_dead_letters")
        if rows is None:
            return []
        return rows.filter(source=SOURCE).select("error", "payload").to_dicts()

    def accounted(self) -> bool:
        """True once every event sent is a stored row or a dead letter."""
        kept = set(self.stored_keys())
        dead = {key_of(letter["payload"]) for letter in self.dead_letters()}  # type: ignore[arg-type]
        return {key_of(frame) for frame in self.sent} <= kept | dead

    def settle(self) -> None:
        """Wait until every event is accounted for, then stop; the run must exit 0."""
        wait_for(
            lambda: self.running() and self.accounted(),
            LANDING,
            "every event stored or a dead letter",
            log=self.log,
            interval=0.2,
        )
        assert self.stop() == 0, self.tail()


def letter_of(collector: Collector, payload: bytes) -> str:
    """The error of the one dead letter holding ``payload`` (fails unless exactly one)."""
    errors = [d["error"] for d in collector.dead_letters() if d["payload"] == payload]
    assert len(errors) == 1, (payload, collector.dead_letters())
    return str(errors[0])


def names_field_and_value(error: str, path: str, value: str) -> bool:
    """True when ``error`` names the field (``o.T``, or its key ``T`` quoted) and the value."""
    key = path.rpartition(".")[2]
    field = path in error or re.search(rf"""['"`]{re.escape(key)}['"`]""", error) is not None
    return field and value in error


def partition_dates(table: Path) -> list[str]:
    """The ``date=`` partition folders of a table, as written."""
    return sorted(p.name.removeprefix("date=") for p in table.glob("date=*"))


def implausible(day: str) -> bool:
    """True for a partition date before 2009 or later than the day after tomorrow (UTC)."""
    try:
        when = date.fromisoformat(day)
    except ValueError:  # year 10000 and beyond, or garbage: no date of this world
        return True
    return not FIRST_DAY <= when <= datetime.now(UTC).date() + timedelta(days=2)


# -- the specifications -----------------------------------------------------------------------


def test_a_trade_time_past_any_calendar_is_a_dead_letter_and_every_good_event_lands(
    tmp_path, good_events, instruments
):
    poison = poisoned(good_events[0], PAST_ANY_CALENDAR_MS)
    sent = among(good_events, poison)

    with Collector(tmp_path, sent, instruments) as run:
        run.start()
        run.settle()

        assert sorted(run.stored_keys()) == sorted(key_of(frame) for frame in good_events)
        error = letter_of(run, poison)
        assert names_field_and_value(error, "o.T", str(PAST_ANY_CALENDAR_MS)), error


def test_trade_times_outside_2009_to_today_are_dead_letters_and_make_no_partition(
    tmp_path, good_events, instruments
):
    years = {
        "10000": YEAR_10000_MS,
        "2100": YEAR_2100_MS,
        "1938": YEAR_1938_MS,
    }
    poison = {year: poisoned(good_events[k], ms) for k, (year, ms) in enumerate(years.items())}
    sent = among(good_events, *poison.values())

    with Collector(tmp_path, sent, instruments) as run:
        run.start()
        run.settle()

        assert sorted(run.stored_keys()) == sorted(key_of(frame) for frame in good_events)
        for year, payload in poison.items():
            error = letter_of(run, payload)
            assert names_field_and_value(error, "o.T", str(years[year])), (year, error)
        dates = partition_dates(tmp_path / "tables" / TABLE)
        assert dates, "the good events made no partition"
        assert [day for day in dates if implausible(day)] == []


@pytest.fixture(scope="module")
def json_numbers(tmp_path_factory, instruments) -> Iterator[tuple[Collector, dict[str, bytes]]]:
    """One run whose decimals arrive as JSON numbers, among string-valued good events.

    ``long``: a price of 17 decimals and a quantity of 20 integer digits and one decimal,
    neither of which a float holds; ``plain``: a price a float holds exactly;
    ``too_fine``: a price of 19 decimals, one more than the tables keep.
    """
    folder = tmp_path_factory.mktemp("json_numbers")
    good = fixture_events()
    # Trade times between the good ones' (a second apart): every event has its own key.
    later = [restamped(frame, key_of(frame)[1] + 500) for frame in good[:3]]
    long = with_number(with_number(later[0], "p", "1.00000000000000011"), "q", LONG_QUANTITY)
    plain = with_number(later[1], "p", "95000.5")
    too_fine = with_number(later[2], "p", "0.1234567890123456789")
    numbers = {"long": long, "plain": plain, "too_fine": too_fine}
    with Collector(folder, among(good, *numbers.values()), instruments) as run:
        run.start()
        run.settle()
        yield run, numbers


def stored_row(run: Collector, frame: bytes) -> dict[str, object]:
    """The one stored row of the event ``frame`` (fails unless exactly one)."""
    symbol, trade_ms = key_of(frame)
    rows = run.table(TABLE)
    assert rows is not None
    found = rows.filter(pl.col("symbol") == symbol, pl.col("trade_time").dt.epoch("ms") == trade_ms)
    assert found.height == 1, (frame, found)
    return found.row(0, named=True)


def test_decimals_sent_as_json_numbers_are_stored_with_every_digit_sent(json_numbers):
    run, numbers = json_numbers
    row = stored_row(run, numbers["long"])

    assert row["price"] == Decimal("1.00000000000000011")
    assert row["quantity"] == Decimal(LONG_QUANTITY)


def test_a_json_number_a_float_holds_exactly_is_stored_exactly(json_numbers):
    run, numbers = json_numbers

    assert stored_row(run, numbers["plain"])["price"] == Decimal("95000.5")


def test_a_json_number_finer_than_the_tables_scale_is_a_dead_letter_not_a_rounded_row(
    json_numbers,
):
    run, numbers = json_numbers
    error = letter_of(run, numbers["too_fine"])

    assert key_of(numbers["too_fine"]) not in run.stored_keys()
    assert "o.p" in error and "18" in error, error


def spooled(folder: Path) -> bytes:
    """Every byte of the spool's segments under the folder's state directory."""
    return b"".join(path.read_bytes() for path in (folder / "state").rglob("*.spool"))


def test_a_restart_replays_a_spooled_batch_holding_a_poison_payload_once(
    tmp_path, good_events, instruments
):
    poison = poisoned(good_events[0], PAST_ANY_CALENDAR_MS)
    sent = among(good_events, poison)

    with Collector(tmp_path, sent, instruments) as run:
        # Received and spooled, not committed (a flush is 30 s away): then killed.
        run.start(flush_interval=30)
        wait_for(
            lambda: run.running() and all(frame in spooled(tmp_path) for frame in sent),
            LANDING,
            "every event spooled",
            log=run.log,
        )
        run.kill()
        assert run.stored_keys() == [] and run.dead_letters() == []

        run.start(flush_interval=0.5)
        run.settle()

        stored = run.stored_keys()
        assert sorted(stored) == sorted(key_of(frame) for frame in good_events)
        assert len(set(stored)) == len(stored), "an event was stored twice"
        error = letter_of(run, poison)  # once, not once per replay
        assert names_field_and_value(error, "o.T", str(PAST_ANY_CALENDAR_MS)), error
