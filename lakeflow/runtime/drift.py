"""Drift: what arrives compared with what a source declares, recorded as data.

Three kinds, per source:

- ``key``: a key path in the payloads that no declared field reads (``o.st`` when
  Binance started to mark the product of each event). Found on a sample of payloads:
  one in ``key_sample``, at a phase that moves at random from batch to batch so that a
  periodic feed cannot hide a shape, at most ``MAX_SAMPLE`` per batch; the sample is
  gathered across batches and parsed in one polars call with the schema inferred once
  ``MAX_SAMPLE`` wait or ``KEY_INTERVAL`` seconds passed (bench/drift.py: the call's
  fixed cost is what a per-batch parse of a small batch would pay).
- ``value``: a value outside a field's declared domain or plausible window, found by
  the decoder itself over every row (:class:`lakeflow.Field`).
- ``instrument``: an instrument that no reference list names, after the lists were
  read again because of it (:mod:`lakeflow.references`).

The first sighting of each (kind, path, value) logs one WARNING; later ones are
counted. :class:`DriftWatch` keeps the entries of one source; the runtime writes the
entries that changed to ``_drift`` once per commit round, never a row per payload.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from lakeflow.secrets import redact
from lakeflow.sources import Batch, Decoded, Drift

if TYPE_CHECKING:  # polars' own alias: a dtype class or instance
    from polars._typing import PolarsDataType

logger = logging.getLogger(__name__)

#: Bytes of a payload kept as a drift entry's example.
EXAMPLE_BYTES = 600
#: Payloads examined for keys per batch at most, and the sample size that is parsed.
MAX_SAMPLE = 128
#: Seconds a smaller sample waits before it is parsed anyway.
KEY_INTERVAL = 10.0
#: Rows up to which a batch's instruments are compared in Python rather than polars.
SMALL_BATCH = 2000
#: Entries one source keeps; past it new ones are counted under one overflow entry.
MAX_ENTRIES = 500
OVERFLOW = Drift("key", "(too many drift entries)", "")

MEANINGS = {
    "key": "the exchange may have changed its stream: a key no field reads",
    "value": "the exchange may have changed its stream: a value outside the field's domain",
    "instrument": (
        "the exchange may have changed its stream, or listed something the instrument "
        "list does not (yet) show: an instrument no reference list names"
    ),
}


def key_paths(payloads: Sequence[bytes]) -> set[str]:
    """Every key path found in ``payloads`` (JSON objects or arrays of them).

    Nested objects are walked (``o.st``); an array of objects counts at its own level
    (``data.instId``, not ``data.0.instId``), as the decoders that explode it read it.
    A payload that is not JSON adds nothing (the decoder rejects it anyway).
    """
    if not payloads:
        return set()
    # A top-level array becomes the value of a key with an empty name, so that its
    # elements' keys come out as paths of their own ("lastPrice", not ".lastPrice").
    lines = [
        b'{"":' + p + b"}" if p.lstrip()[:1] == b"[" else p
        for p in (q.replace(b"\n", b" ").replace(b"\r", b" ") for q in payloads)
    ]
    try:
        dtypes = list(_inferred(b"\n".join(lines)).items())
    except Exception:
        dtypes = []
        for line in lines:
            try:
                dtypes.extend(_inferred(line).items())
            except Exception:  # not JSON: the decoder's dead letter says so
                continue
    found: set[str] = set()
    for name, dtype in dtypes:
        _walk(name, dtype, found)
    return found


def _inferred(data: bytes) -> pl.Schema:
    """The schema polars infers from every line of ``data``, without building columns
    (a third of what a read costs; bench/drift.py)."""
    return pl.scan_ndjson(io.BytesIO(data), infer_schema_length=None).collect_schema()


def _walk(path: str, dtype: PolarsDataType, found: set[str]) -> None:
    while isinstance(dtype, pl.List | pl.Array):
        dtype = dtype.inner
    if isinstance(dtype, pl.Struct) and dtype.fields:
        for child in dtype.fields:
            _walk(f"{path}.{child.name}" if path else child.name, child.dtype, found)
    elif path:
        found.add(path)


def unread(paths: Iterable[str], reads: frozenset[str]) -> list[str]:
    """The paths no declared path covers, sorted.

    A declared path covers its subtree (a field may read an object whole, ``known`` may
    name one) and its ancestors (``data`` of ``data.instId``: an array that arrived
    empty, or an object whose keys were all null, shows as a leaf of its own).
    """
    prefixes = tuple(f"{r}." for r in reads)
    ancestors = {r.rsplit(".", i)[0] for r in reads for i in range(1, r.count(".") + 1)}
    return sorted(
        p for p in paths if p not in reads and p not in ancestors and not p.startswith(prefixes)
    )


@dataclass
class Entry:
    """One (kind, path, value) of one source, as ``_drift`` shows it."""

    kind: str
    path: str
    value: str
    first_seen: datetime
    last_seen: datetime
    count: int
    example: bytes
    #: Occurrences not yet written to ``_drift`` (0: nothing new since the last write).
    pending: int = 0
    #: Whether this process has written the entry to ``_drift`` once.
    written: bool = False


class DriftWatch:
    """The drift of one source instance: sampling, counting, warning once, pending rows.

    ``check`` runs in the committer's worker thread, once per decoded batch;
    ``take_pending``/``put_back`` are called by the writer of ``_drift``.
    """

    def __init__(
        self,
        source: str,
        table: str,
        *,
        key_sample: int = 32,
        instrument_column: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        seed: int | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.key_sample = max(1, key_sample)
        self.instrument_column = instrument_column
        self.log = log or logging.LoggerAdapter(logger, {"source": source})
        self._random = random.Random(seed if seed is not None else source)
        #: Payloads to skip before the next one examined for keys (0: the next one).
        self._skip = 0
        #: Payloads sampled for keys and not parsed yet, and the paths their decoder read.
        self._sampled: list[bytes] = []
        self._reads: frozenset[str] = frozenset()
        #: time.monotonic() of the last parse of a sample (-inf: the first is parsed at once).
        self._parsed_at = float("-inf")
        self.entries: dict[tuple[str, str, str], Entry] = {}
        #: Occurrences counted per kind, for the metrics.
        self.totals: dict[str, int] = {"key": 0, "value": 0, "instrument": 0}
        self._lock = threading.Lock()
        #: Unknown instruments waiting for a refreshed list: count and an example.
        self._unsettled: dict[str, tuple[int, bytes]] = {}
        #: Instruments a refreshed list still did not name: drift on every sighting.
        self._confirmed: set[str] = set()
        #: Called with a reason when unknown instruments want the lists read early.
        self.request_refresh: Callable[[str], None] | None = None

    # -- per batch (worker thread) -------------------------------------------------------

    def check(
        self, batch: Batch, decoded: Decoded, instruments: frozenset[str] | None = None
    ) -> list[Drift]:
        """Record the drift of one decoded batch; returns what it found (for tests)."""
        found = list(decoded.drift)
        if found:
            self.record(found, batch.payloads)
        if decoded.reads is not None and len(batch):
            self._gather(batch, decoded)
            if self._sampled and (
                self.key_sample == 1
                or len(self._sampled) >= MAX_SAMPLE
                or time.monotonic() - self._parsed_at >= KEY_INTERVAL
            ):
                found.extend(self.parse_sample())
        if self.instrument_column is not None and instruments is not None:
            unknown = self._instruments(batch, decoded.rows, instruments)
            if unknown:
                self.record(unknown, batch.payloads)
                found.extend(unknown)
        return found

    def _sample(self, size: int) -> list[int]:
        """Indices of the payloads of a batch of ``size`` to examine for keys.

        Every ``key_sample``-th (more apart in a batch past ``MAX_SAMPLE`` of them), from
        where the last batch left off, the phase moved at random at each batch's end.
        """
        if self._skip >= size:
            self._skip -= size
            return []
        stride = max(self.key_sample, -(-size // MAX_SAMPLE))
        picked = list(range(self._skip, size, stride))
        gap = 1 + self._random.randrange(2 * stride - 1) if stride > 1 else 1
        # Past this batch's end: a gap that would land inside it starts the next one.
        self._skip = max(0, picked[-1] + gap - size)
        return picked

    def _gather(self, batch: Batch, decoded: Decoded) -> None:
        """Keep this batch's sampled data payloads for the next parse."""
        picked = self._sample(len(batch))
        if picked and (decoded.rejects or decoded.ignored_at):
            # Only data: a dead letter says why of itself, a control frame is not data.
            skip = {i for i, _ in decoded.rejects}.union(decoded.ignored_at)
            picked = [i for i in picked if i not in skip]
        if picked:
            assert decoded.reads is not None
            self._reads = decoded.reads
            self._sampled.extend(batch.payloads[i] for i in picked)

    def parse_sample(self) -> list[Drift]:
        """Parse the payloads sampled so far: their keys that no field reads are drift."""
        sample, self._sampled = self._sampled, []
        self._parsed_at = time.monotonic()
        if not sample:
            return []
        new = unread(key_paths(sample), self._reads)
        if not new:
            return []
        # Rare: how many of the sample carry each key, and one that does.
        column = pl.Series(sample, dtype=pl.Binary)
        drift = []
        for path in new:
            leaf = path.rsplit(".", 1)[-1]
            hits = column.bin.contains(f'"{leaf}"'.encode())
            count = int(hits.sum())
            example = int(hits.arg_max() or 0) if count else 0
            drift.append(Drift("key", path, "", max(1, count), example))
        self.record(drift, sample)
        return drift

    def _instruments(
        self, batch: Batch, rows: pl.DataFrame, instruments: frozenset[str]
    ) -> list[Drift]:
        column = self.instrument_column
        if column is None or column not in rows.columns or not rows.height:
            return []
        names = rows[column]
        # A set difference in Python beats a polars query's fixed cost up to a few
        # thousand rows (bench/drift.py); past that, polars makes the names distinct first.
        listed = names.to_list() if names.len() <= SMALL_BATCH else names.unique().to_list()
        unknown = {name for name in listed if name is not None} - instruments
        if not unknown:
            return []
        counts = (names.filter(names.is_in(list(unknown))).value_counts(sort=True)).rows()
        found: list[Drift] = []
        waiting = []
        for name, count in counts:
            example = _find(batch.payloads, name)
            with self._lock:
                if name in self._confirmed:
                    found.append(Drift("instrument", column, name, count, example))
                    continue
                before = self._unsettled.get(name)
                sample = batch.payloads[example] if example is not None else b""
                if before is None:
                    self._unsettled[name] = (count, sample)
                    waiting.append(name)
                else:
                    self._unsettled[name] = (before[0] + count, before[1] or sample)
        if waiting and self.request_refresh is not None:
            shown = ", ".join(waiting[:5]) + (" ..." if len(waiting) > 5 else "")
            self.request_refresh(f"{len(waiting)} instrument(s) no list names: {shown}")
        return found

    def settle(self, instruments: frozenset[str]) -> None:
        """After a refresh of the lists: what is still unknown is drift (any thread)."""
        with self._lock:
            if not self._unsettled:
                return
            still = set(self._unsettled) - instruments
            settled, self._unsettled = self._unsettled, {}
            self._confirmed |= still
        column = self.instrument_column or "instrument"
        drift: list[Drift] = []
        examples: list[bytes] = []
        for name, (count, example) in settled.items():
            if name in still:
                drift.append(Drift("instrument", column, name, count, len(examples)))
                examples.append(example)
        if drift:
            self.record(drift, examples)

    # -- entries ----------------------------------------------------------------------

    def record(self, found: Iterable[Drift], payloads: Sequence[bytes]) -> None:
        """Count ``found``; the first sighting of each logs one WARNING."""
        now = datetime.now(UTC)
        with self._lock:
            for drift in found:
                key = (drift.kind, drift.path, drift.value)
                self.totals[drift.kind] = self.totals.get(drift.kind, 0) + drift.count
                entry = self.entries.get(key)
                if entry is None and len(self.entries) >= MAX_ENTRIES:
                    key = (OVERFLOW.kind, OVERFLOW.path, OVERFLOW.value)
                    entry = self.entries.get(key)
                if entry is not None:
                    entry.last_seen = now
                    entry.count += drift.count
                    entry.pending += drift.count
                    continue
                example = b""
                if drift.example is not None and 0 <= drift.example < len(payloads):
                    example = payloads[drift.example][:EXAMPLE_BYTES]
                self.entries[key] = Entry(
                    kind=key[0],
                    path=key[1],
                    value=key[2],
                    first_seen=now,
                    last_seen=now,
                    count=drift.count,
                    example=example,
                    pending=drift.count,
                )
                self._warn(drift, example)

    def _warn(self, drift: Drift, example: bytes) -> None:
        what = {
            "key": f"a key no field reads: {drift.path}",
            "value": f"{drift.path} = {drift.value!r}, outside what the field declares",
            "instrument": f"{drift.path} {drift.value!r}, which no instrument list names",
        }[drift.kind]
        shown = example.decode("utf-8", "replace")
        if len(shown) > 200:
            shown = shown[:200] + "..."
        self.log.warning(
            "drift: %s (table %s); %s. Example: %s. Recorded in _drift; see `lakeflow drift`",
            what,
            self.table,
            MEANINGS[drift.kind],
            shown or "(none)",
        )

    @property
    def total(self) -> int:
        """Drift occurrences so far, every kind."""
        return sum(self.totals.values())

    def summary(self, limit: int = 50) -> list[dict[str, object]]:
        """The entries for a status file: the newest ``limit``, without examples."""
        with self._lock:
            entries = sorted(self.entries.values(), key=lambda e: e.last_seen, reverse=True)
            return [
                {
                    "kind": e.kind,
                    "path": e.path,
                    "value": e.value,
                    "count": e.count,
                    "first_seen": e.first_seen.timestamp(),
                    "last_seen": e.last_seen.timestamp(),
                }
                for e in entries[:limit]
            ]

    def take_pending(self) -> list[Entry]:
        """The entries with sightings not yet written, their pending counts reset."""
        with self._lock:
            taken = []
            for entry in self.entries.values():
                if entry.pending:
                    taken.append(
                        Entry(
                            entry.kind,
                            entry.path,
                            entry.value,
                            entry.first_seen,
                            entry.last_seen,
                            entry.pending,
                            entry.example,
                        )
                    )
                    entry.pending = 0
            return taken

    def put_back(self, taken: Iterable[Entry]) -> None:
        """Return entries whose write failed, so the next round writes them."""
        with self._lock:
            for piece in taken:
                entry = self.entries.get((piece.kind, piece.path, piece.value))
                if entry is not None:
                    entry.pending += piece.count


def _find(payloads: Sequence[bytes], text: str) -> int | None:
    """The index of the first payload that contains ``text`` as a JSON string."""
    hits = pl.Series(payloads, dtype=pl.Binary).bin.contains(f'"{text}"'.encode())
    index = hits.arg_max()
    return int(index) if index is not None and hits[index] else None


def drift_rows(
    watches: Iterable[DriftWatch],
) -> tuple[pl.DataFrame, list[tuple[DriftWatch, list[Entry]]]]:
    """The ``_drift`` rows of every entry with new sightings, and what was taken."""
    taken = [(watch, watch.take_pending()) for watch in watches]
    rows = [
        {
            "source": watch.source,
            "table": watch.table,
            "kind": e.kind,
            "path": redact(e.path),
            "value": redact(e.value),
            "first_seen": e.first_seen,
            "last_seen": e.last_seen,
            "count": e.count,
            "example": e.example,
        }
        for watch, entries in taken
        for e in entries
    ]
    from lakeflow.system_tables import DRIFT

    frame = pl.DataFrame(rows, schema=DRIFT.polars_schema) if rows else DRIFT.empty()
    return frame, [(w, e) for w, e in taken if e]
