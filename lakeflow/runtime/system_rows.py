"""The rows a source's commit adds to the system tables: ``_dead_letters`` and ``_gaps``.

Every text lakeflow writes there goes through :func:`lakeflow.secrets.redact`, the
logs' masking: a reason quotes URLs and errors, and a ``${VAR}`` secret in a URL must not
outlive the run in a table that is shared, backed up and queried by others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from lakeflow.secrets import redact
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
            "error": [redact(reason) for _, reason in rejects],
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
            "reason": [redact(g.reason) for g in gaps],
        }
    )


def gap_key(gaps: list[Gap]) -> int:
    """The transaction key of a ``_gaps`` commit: the latest gap end in µs, which only grows.

    The latest, not the last listed: a gap found in the spool at start (damage) ends
    before the "not running" gap recorded ahead of it.
    """
    return int(max(g.end for g in gaps).timestamp() * 1_000_000)
