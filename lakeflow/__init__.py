"""lakeflow: collect market data into Delta Lake tables through plugins.

This module is the public API. Plugins import from here and nowhere else in ``lakeflow``.
"""

from lakeflow.decode import Field, decode_json, read_ndjson
from lakeflow.errors import (
    CommitRefused,
    ConfigError,
    LakeflowError,
    SchemaMismatch,
    SourceError,
    SourcePaused,
)
from lakeflow.hookspecs import hookimpl
from lakeflow.schema import DECIMAL, TIMESTAMP, TableSchema
from lakeflow.sinks import Sink, TableInfo
from lakeflow.sources import (
    Batch,
    Decoded,
    Feed,
    PollingConfig,
    PollingSource,
    Source,
    SourceConfig,
    StreamingSource,
)
from lakeflow.websocket import WebSocketSource

__all__ = [
    "DECIMAL",
    "TIMESTAMP",
    "Batch",
    "CommitRefused",
    "ConfigError",
    "Decoded",
    "Feed",
    "Field",
    "LakeflowError",
    "PollingConfig",
    "PollingSource",
    "SchemaMismatch",
    "Sink",
    "Source",
    "SourceConfig",
    "SourceError",
    "SourcePaused",
    "StreamingSource",
    "TableInfo",
    "TableSchema",
    "WebSocketSource",
    "decode_json",
    "hookimpl",
    "hookspecs",
    "read_ndjson",
]

from lakeflow import hookspecs
