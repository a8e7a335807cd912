"""lakeflow's own tables, registered through the same hook as any plugin's schemas.

``_dead_letters`` keeps every payload a decoder could not read, raw, with the reason.
``_gaps`` records every time range a source did not cover (a disconnect, a lost poll).
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


@hookimpl
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    register(DEAD_LETTERS)
    register(GAPS)
