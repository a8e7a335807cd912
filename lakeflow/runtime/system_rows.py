"""The rows a source's commit adds to the system tables: ``_dead_letters`` and ``_gaps``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from lakeflow.sources import Batch


@dataclass(frozen=True)
class Gap:
    """A time range a source did not cover."""

    start: datetime
    end: datetime
    reason: str


def dead_letter_rows(
    source: str, table: str, batch: Batch, rejects: list[tuple[int, str]]
) -> pl.DataFrame:
    """One ``_dead_letters`` row per rejected payload: its raw bytes, receipt and reason."""
    index = [i for i, _ in rejects]
    return pl.DataFrame(
        {
            "source": source,
            "table": table,
            "received_at": batch.received_at.gather(index),
            "error": [reason for _, reason in rejects],
            "payload": pl.Series([batch.payloads[i] for i in index], dtype=pl.Binary),
        }
    )


def gap_rows(source: str, table: str, gaps: list[Gap]) -> pl.DataFrame:
    """One ``_gaps`` row per gap, with its length in seconds."""
    return pl.DataFrame(
        {
            "source": source,
            "table": table,
            "gap_start": [g.start for g in gaps],
            "gap_end": [g.end for g in gaps],
            "seconds": [(g.end - g.start).total_seconds() for g in gaps],
            "reason": [g.reason for g in gaps],
        }
    )


def gap_key(gaps: list[Gap]) -> int:
    """The transaction key of a ``_gaps`` commit: the last gap's end in µs, which only grows."""
    return int(gaps[-1].end.timestamp() * 1_000_000)
