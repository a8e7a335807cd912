"""Test-only sources: a numbered stream and a polled counter (no network), and a
WebSocket reader and an HTTP poller of a URL (for loopback stand-ins).

The sources live in :mod:`lakeflow_testsource.sources`, imported by the hooks: every
``lakeflow`` command imports this module, so it stays light, as a plugin should.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import lakeflow


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    from lakeflow_testsource.sources import RECORD

    register(RECORD)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    from lakeflow_testsource import sources

    register(sources.SequenceSource)
    register(sources.ClockSource)
    register(sources.WebSocketTestSource)
    register(sources.HttpTestSource)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module("lakeflow_testsource.sources"), name)
