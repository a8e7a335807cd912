"""Running a source's decoder on a batch: in bounded slices, and never losing a payload.

Decoding peaks at several times a batch's size in memory, so a large batch (a replay, a
``flush_rows`` set high) is decoded ``DECODE_SLICE`` payloads at a time and the parts
joined. A decoder that raises is a plugin's bug, not bad input: its whole slice becomes
dead letters with the exception as the reason, so the payloads are kept for a replay
once the plugin is fixed.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import replace

import polars as pl

from lakeflow.schema import TableSchema
from lakeflow.sources import Batch, Decoded, Source

#: Payloads decoded at once; keeps the decode's peak flat whatever ``flush_rows`` is (see
#: bench/README.md, "memory.py").
DECODE_SLICE = 25_000


def decode_batch(
    source: Source,
    schema: TableSchema,
    batch: Batch,
    log: logging.Logger | logging.LoggerAdapter,
) -> Decoded:
    """``source.decode(batch)``, ``DECODE_SLICE`` payloads at a time; see the module."""
    if len(batch) <= DECODE_SLICE:
        return _decode_slice(source, schema, batch, log)
    parts: list[Decoded] = []
    for start in range(0, len(batch), DECODE_SLICE):
        part = Batch(
            payloads=batch.payloads[start : start + DECODE_SLICE],
            received_at=batch.received_at.slice(start, DECODE_SLICE),
        )
        decoded = _decode_slice(source, schema, part, log)
        decoded.rejects = [(start + i, reason) for i, reason in decoded.rejects]
        decoded.ignored_at = [start + i for i in decoded.ignored_at]
        decoded.drift = [
            replace(d, example=None if d.example is None else start + d.example)
            for d in decoded.drift
        ]
        parts.append(decoded)
    reads = [p.reads for p in parts if p.reads is not None]
    return Decoded(
        rows=pl.concat([p.rows for p in parts], how="diagonal_relaxed"),
        rejects=[r for p in parts for r in p.rejects],
        ignored=sum(p.ignored for p in parts),
        ignored_at=[i for p in parts for i in p.ignored_at],
        reads=frozenset().union(*reads) if reads else None,
        drift=[d for p in parts for d in p.drift],
    )


def _decode_slice(
    source: Source,
    schema: TableSchema,
    batch: Batch,
    log: logging.Logger | logging.LoggerAdapter,
) -> Decoded:
    try:
        return source.decode(batch)
    except Exception as exc:
        log.error(
            "decoder of %s raised; %d payloads kept as dead letters\n%s",
            source.type,
            len(batch),
            traceback.format_exc(),
        )
        reason = f"decoder raised {type(exc).__name__}: {exc}"
        return Decoded(rows=schema.empty(), rejects=[(i, reason) for i in range(len(batch))])
