"""lakeflow's own tables, registered through the same hook as any plugin's schemas.

``_dead_letters`` keeps every payload a decoder could not read, raw, with the reason.
``_gaps`` records every time range a source did not cover (a disconnect, a lost poll).
``_drift`` records what arrived that no source declared: a key nobody reads, a value
outside a field's domain, an instrument no reference list names (one row per source,
kind, path and value, its count and times kept up to date).
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from lakeflow.hookspecs import hookimpl
from lakeflow.schema import TIMESTAMP, TableSchema

DEAD_LETTERS = TableSchema(
    name="_dead_letter",
    table="_dead_letters",
    columns={
        "source": pl.String(),
        "table": pl.String(),
        "received_at": TIMESTAMP,
        "error": pl.String(),
        "payload": pl.Binary(),
    },
    partition_by=(),
    description="Payloads that could not be decoded: raw bytes and the reason.",
)

GAPS = TableSchema(
    name="_gap",
    table="_gaps",
    columns={
        "source": pl.String(),
        "table": pl.String(),
        "gap_start": TIMESTAMP,
        "gap_end": TIMESTAMP,
        "seconds": pl.Float64(),
        "reason": pl.String(),
    },
    partition_by=(),
    description="Time ranges a source did not cover, and why.",
)


DRIFT = TableSchema(
    name="_drift",
    table="_drift",
    columns={
        "source": pl.String(),
        "table": pl.String(),
        "kind": pl.String(),
        "path": pl.String(),
        "value": pl.String(),
        "first_seen": TIMESTAMP,
        "last_seen": TIMESTAMP,
        "count": pl.Int64(),
        "example": pl.Binary(),
    },
    partition_by=(),
    description=(
        "What arrived that no source declared (key, value, instrument): the exchange may "
        "have changed. One row per source, kind, path and value."
    ),
)
#: The columns that name one row of ``_drift``.
DRIFT_KEY = ("source", "table", "kind", "path", "value")


@hookimpl
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    register(DEAD_LETTERS)
    register(GAPS)
    register(DRIFT)
