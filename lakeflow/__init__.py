"""lakeflow: collect market data into Delta Lake tables through plugins.

This module is the public API. Plugins import from here and nowhere else in ``lakeflow``.

Names are imported when first used (PEP 562), so that ``import lakeflow`` — and with it
every ``lakeflow`` command, ``--help`` included — does not pay for polars, aiohttp,
pydantic or pluggy until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeflow import hookspecs
    from lakeflow.budgets import Budget
    from lakeflow.decode import Field, decode_json, read_ndjson
    from lakeflow.errors import (
        CommitRefused,
        ConfigError,
        LakeflowError,
        RequestFailed,
        RowsRefused,
        SchemaMismatch,
        SinkError,
        SourceError,
        SourcePaused,
        TableNotFound,
    )
    from lakeflow.hookspecs import hookimpl
    from lakeflow.lake import Lake
    from lakeflow.references import Reference, ReferenceData, ReferenceUnavailable
    from lakeflow.schema import DECIMAL, TIMESTAMP, TableSchema
    from lakeflow.sinks import Sink, TableInfo
    from lakeflow.sources import (
        Batch,
        Decoded,
        Drift,
        Feed,
        PollingConfig,
        PollingSource,
        Source,
        SourceConfig,
        StreamingSource,
    )
    from lakeflow.sources.http import HttpPollingSource, RetryRequest, fetch_json, retry_after
    from lakeflow.sources.websocket import WebSocketSource
    from lakeflow.urls import base_url

#: Where each public name lives.
_EXPORTS: dict[str, str] = {
    "DECIMAL": "lakeflow.schema",
    "TIMESTAMP": "lakeflow.schema",
    "TableSchema": "lakeflow.schema",
    "Batch": "lakeflow.sources",
    "Decoded": "lakeflow.sources",
    "Drift": "lakeflow.sources",
    "Budget": "lakeflow.budgets",
    "Reference": "lakeflow.references",
    "ReferenceData": "lakeflow.references",
    "ReferenceUnavailable": "lakeflow.references",
    "Feed": "lakeflow.sources",
    "PollingConfig": "lakeflow.sources",
    "PollingSource": "lakeflow.sources",
    "Source": "lakeflow.sources",
    "SourceConfig": "lakeflow.sources",
    "StreamingSource": "lakeflow.sources",
    "CommitRefused": "lakeflow.errors",
    "ConfigError": "lakeflow.errors",
    "LakeflowError": "lakeflow.errors",
    "RowsRefused": "lakeflow.errors",
    "SchemaMismatch": "lakeflow.errors",
    "SinkError": "lakeflow.errors",
    "SourceError": "lakeflow.errors",
    "SourcePaused": "lakeflow.errors",
    "TableNotFound": "lakeflow.errors",
    "Lake": "lakeflow.lake",
    "Field": "lakeflow.decode",
    "decode_json": "lakeflow.decode",
    "read_ndjson": "lakeflow.decode",
    "Sink": "lakeflow.sinks",
    "TableInfo": "lakeflow.sinks",
    "WebSocketSource": "lakeflow.sources.websocket",
    "HttpPollingSource": "lakeflow.sources.http",
    "RetryRequest": "lakeflow.sources.http",
    "retry_after": "lakeflow.sources.http",
    "fetch_json": "lakeflow.sources.http",
    "base_url": "lakeflow.urls",
    "RequestFailed": "lakeflow.errors",
    "hookimpl": "lakeflow.hookspecs",
}

__all__ = [
    "DECIMAL",
    "TIMESTAMP",
    "Batch",
    "Budget",
    "CommitRefused",
    "ConfigError",
    "Decoded",
    "Drift",
    "Feed",
    "Field",
    "HttpPollingSource",
    "Lake",
    "LakeflowError",
    "PollingConfig",
    "PollingSource",
    "Reference",
    "ReferenceData",
    "ReferenceUnavailable",
    "RequestFailed",
    "RetryRequest",
    "RowsRefused",
    "SchemaMismatch",
    "Sink",
    "SinkError",
    "Source",
    "SourceConfig",
    "SourceError",
    "SourcePaused",
    "StreamingSource",
    "TableInfo",
    "TableNotFound",
    "TableSchema",
    "WebSocketSource",
    "base_url",
    "decode_json",
    "fetch_json",
    "hookimpl",
    "hookspecs",
    "read_ndjson",
    "retry_after",
]


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
