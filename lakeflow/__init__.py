"""lakeflow: collect market data into Delta Lake tables through plugins.

This module is the public API. Plugins import from here and nowhere else in ``lakeflow``
(their tests may use :mod:`lakeflow.testing` too); ``tests/test_public_api.py`` holds
the workspace's plugins to it.

Names are imported when first used (PEP 562), so that ``import lakeflow`` — and with it
every ``lakeflow`` command, ``--help`` included — does not pay for polars, aiohttp,
pydantic or pluggy until something needs them. ``_EXPORTS`` is the one list of them:
``__getattr__``, ``__dir__`` and ``__all__`` read it. The ``TYPE_CHECKING`` block says
the same to type checkers, which do not run ``__getattr__``; a test checks that the two
agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow import hookspecs as hookspecs
    from lakeflow.budgets import Budget as Budget
    from lakeflow.decode import Field as Field
    from lakeflow.decode import decode_json as decode_json
    from lakeflow.decode import read_ndjson as read_ndjson
    from lakeflow.errors import CommitRefused as CommitRefused
    from lakeflow.errors import ConfigError as ConfigError
    from lakeflow.errors import LakeflowError as LakeflowError
    from lakeflow.errors import RequestFailed as RequestFailed
    from lakeflow.errors import RowsRefused as RowsRefused
    from lakeflow.errors import SchemaMismatch as SchemaMismatch
    from lakeflow.errors import SinkError as SinkError
    from lakeflow.errors import SourceError as SourceError
    from lakeflow.errors import SourcePaused as SourcePaused
    from lakeflow.errors import TableNotFound as TableNotFound
    from lakeflow.exports import lazy_exports as lazy_exports
    from lakeflow.fetch import fetch_json as fetch_json
    from lakeflow.fetch import retry_after as retry_after
    from lakeflow.hookspecs import hookimpl as hookimpl
    from lakeflow.lake import Lake as Lake
    from lakeflow.references import Reference as Reference
    from lakeflow.references import ReferenceData as ReferenceData
    from lakeflow.references import ReferenceUnavailable as ReferenceUnavailable
    from lakeflow.schema import DECIMAL as DECIMAL
    from lakeflow.schema import TIMESTAMP as TIMESTAMP
    from lakeflow.schema import TableSchema as TableSchema
    from lakeflow.sinks import Sink as Sink
    from lakeflow.sinks import SinkSettings as SinkSettings
    from lakeflow.sinks import TableInfo as TableInfo
    from lakeflow.sources import Batch as Batch
    from lakeflow.sources import Decoded as Decoded
    from lakeflow.sources import Drift as Drift
    from lakeflow.sources import Feed as Feed
    from lakeflow.sources import PollingConfig as PollingConfig
    from lakeflow.sources import PollingSource as PollingSource
    from lakeflow.sources import Source as Source
    from lakeflow.sources import SourceConfig as SourceConfig
    from lakeflow.sources import StreamingConfig as StreamingConfig
    from lakeflow.sources import StreamingSource as StreamingSource
    from lakeflow.sources.http import HttpPollingSource as HttpPollingSource
    from lakeflow.sources.http import RetryRequest as RetryRequest
    from lakeflow.sources.websocket import WebSocket as WebSocket
    from lakeflow.sources.websocket import WebSocketSource as WebSocketSource
    from lakeflow.units import Duration as Duration
    from lakeflow.units import parse_duration as parse_duration
    from lakeflow.urls import base_url as base_url

#: Every public name and the module it lives in.
_EXPORTS: dict[str, str] = {
    "lazy_exports": "lakeflow.exports",
    "Budget": "lakeflow.budgets",
    "Field": "lakeflow.decode",
    "decode_json": "lakeflow.decode",
    "read_ndjson": "lakeflow.decode",
    "CommitRefused": "lakeflow.errors",
    "ConfigError": "lakeflow.errors",
    "LakeflowError": "lakeflow.errors",
    "RequestFailed": "lakeflow.errors",
    "RowsRefused": "lakeflow.errors",
    "SchemaMismatch": "lakeflow.errors",
    "SinkError": "lakeflow.errors",
    "SourceError": "lakeflow.errors",
    "SourcePaused": "lakeflow.errors",
    "TableNotFound": "lakeflow.errors",
    "hookimpl": "lakeflow.hookspecs",
    "Lake": "lakeflow.lake",
    "Reference": "lakeflow.references",
    "ReferenceData": "lakeflow.references",
    "ReferenceUnavailable": "lakeflow.references",
    "DECIMAL": "lakeflow.schema",
    "TIMESTAMP": "lakeflow.schema",
    "TableSchema": "lakeflow.schema",
    "Sink": "lakeflow.sinks",
    "SinkSettings": "lakeflow.sinks",
    "TableInfo": "lakeflow.sinks",
    "Batch": "lakeflow.sources",
    "Decoded": "lakeflow.sources",
    "Drift": "lakeflow.sources",
    "Feed": "lakeflow.sources",
    "PollingConfig": "lakeflow.sources",
    "PollingSource": "lakeflow.sources",
    "Source": "lakeflow.sources",
    "SourceConfig": "lakeflow.sources",
    "StreamingConfig": "lakeflow.sources",
    "StreamingSource": "lakeflow.sources",
    "HttpPollingSource": "lakeflow.sources.http",
    "RetryRequest": "lakeflow.sources.http",
    "fetch_json": "lakeflow.fetch",
    "retry_after": "lakeflow.fetch",
    "WebSocket": "lakeflow.sources.websocket",
    "WebSocketSource": "lakeflow.sources.websocket",
    "Duration": "lakeflow.units",
    "parse_duration": "lakeflow.units",
    "base_url": "lakeflow.urls",
}

#: ``hookspecs`` is a module: the hook specifications, for a plugin author to read.
__all__ = ["hookspecs", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "hookspecs":
        return importlib.import_module("lakeflow.hookspecs")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return __all__
