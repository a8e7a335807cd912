"""Test-only sources: a numbered stream and a polled counter (no network), a
WebSocket reader and an HTTP poller of a URL (for loopback stand-ins), and a quote
stream that declares its fields, a domain and an instrument list (for drift).

The sources live in :mod:`lakeflow_testsource.sources` and
:mod:`lakeflow_testsource.quotes`, imported by the hooks: every
``lakeflow`` command imports this module, so it stays light, as a plugin should.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import lakeflow


@lakeflow.hookimpl
def register_schemas(register: Callable[[lakeflow.TableSchema], None]) -> None:
    from lakeflow_testsource.quotes import QUOTE
    from lakeflow_testsource.sources import RECORD

    register(RECORD)
    register(QUOTE)


@lakeflow.hookimpl
def register_sources(register: Callable[[type[lakeflow.Source]], None]) -> None:
    from lakeflow_testsource import quotes, sources

    register(sources.SequenceSource)
    register(sources.ClockSource)
    register(sources.WebSocketTestSource)
    register(sources.HttpTestSource)
    register(quotes.QuoteSource)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    for module in ("lakeflow_testsource.sources", "lakeflow_testsource.quotes"):
        found = importlib.import_module(module)
        if hasattr(found, name):
            return getattr(found, name)
    raise AttributeError(f"module 'lakeflow_testsource' has no attribute {name!r}")
