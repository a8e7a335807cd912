"""The pytest plugin of :mod:`lakeflow.testing`, registered as the ``pytest11`` entry point.

Installing ``lakeflow-core`` makes these fixtures available to every test, with no
conftest and no import:

- ``lakeflow_tables``: the temporary sink folder runs of this test write into;
- ``lakeflow_collect``: run one installed source for N payloads or N polls and get back
  its table, dead letters and gaps (sync call, or ``await lakeflow_collect.run_async``);
- ``ws_standin`` / ``http_standin``: start a loopback WebSocket / HTTP stand-in that
  serves a list of payloads / responses, stopped when the test ends.
- ``exchange_standin``: start an :class:`~lakeflow.testing.ExchangeStandIn`, a WebSocket
  stand-in that converses (subscriptions, pings), stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    # Imported inside the fixtures: this module loads with every pytest session of an
    # environment that has lakeflow-core, and these bring polars, deltalake and aiohttp.
    from lakeflow.testing.collect import Collector
    from lakeflow.testing.exchange import ExchangeStandIn
    from lakeflow.testing.standins import HttpStandIn, WebSocketStandIn


@pytest.fixture
def lakeflow_tables(tmp_path: Path) -> Path:
    """The sink folder of this test's runs: ``tmp_path / "tables"``, one Delta table each.

    ``lakeflow_collect`` writes its pipeline file beside it (``tmp_path/lakeflow.toml``),
    so ``lakeflow query`` and ``lakeflow tables`` can be pointed at that file.
    """
    tables = tmp_path / "tables"
    tables.mkdir(exist_ok=True)
    return tables


@pytest.fixture
def lakeflow_collect(lakeflow_tables: Path) -> Collector:
    """Runs one installed source until N payloads or N polls; see :class:`Collector`."""
    from lakeflow.testing.collect import Collector

    return Collector(lakeflow_tables.parent)


@pytest.fixture
def ws_standin() -> Iterator[Callable[..., WebSocketStandIn]]:
    """``ws_standin(frames, ...)``: a started :class:`~lakeflow.testing.WebSocketStandIn`.

    Takes the class's arguments (one list of frames per connection, ``path``, ``close``,
    ...). It runs on its own thread, so it serves sync and async tests alike, and is
    stopped when the test ends.
    """
    from lakeflow.testing.standins import WebSocketStandIn

    started: list[WebSocketStandIn] = []

    def start(*connections: Sequence[bytes | str], **options: Any) -> WebSocketStandIn:
        server = WebSocketStandIn(*connections, **options)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def exchange_standin() -> Iterator[Callable[..., ExchangeStandIn]]:
    """``exchange_standin(subscribe, answer=..., topics=...)``: a started ExchangeStandIn.

    Takes :class:`~lakeflow.testing.ExchangeStandIn`'s arguments; it runs on its own
    thread and is stopped when the test ends.
    """
    from lakeflow.testing.exchange import ExchangeStandIn

    started: list[ExchangeStandIn] = []

    def start(*args: Any, **options: Any) -> ExchangeStandIn:
        server = ExchangeStandIn(*args, **options)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def http_standin() -> Iterator[Callable[..., HttpStandIn]]:
    """``http_standin(responses, ...)``: a started :class:`~lakeflow.testing.HttpStandIn`.

    Takes the class's arguments (a list of responses or bodies, ``then``, ``path``,
    ``headers``). It runs on its own thread and is stopped when the test ends.
    """
    from lakeflow.testing.standins import HttpStandIn

    started: list[HttpStandIn] = []

    def start(*args: Any, **options: Any) -> HttpStandIn:
        server = HttpStandIn(*args, **options)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
