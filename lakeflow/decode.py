"""Vectorized decoding helpers for plugin authors: JSON payloads in, typed rows out.

A decoder reads a whole batch with one ``polars.read_ndjson`` call (every leaf read as
a string, so a wrong type becomes a reject rather than a failed batch), converts the
columns it needs in one pass, and sends any payload that fails to a dead letter with
the reason. The per-payload Python work is nil unless a payload is malformed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import polars as pl

from lakeflow.schema import TIMESTAMP
from lakeflow.sources import Batch, Decoded, Drift

INDEX = "_payload_index"
#: Marks the rows that stand for an empty array once exploded.
_EMPTY = "__empty_array"
#: The decode queries are written as they should run: planning them (common
#: subexpressions, pushdowns) costs more than it saves on a batch.
_PLAIN = pl.QueryOptFlags.none()


@dataclass(frozen=True)
class Field:
    """One output column: where it comes from in the raw JSON and what type it becomes.

    ``path`` is dotted (``"o.p"`` is the key ``p`` inside the object ``o``). ``epoch``
    says that an integer is a Unix time in that unit, to become a UTC timestamp.
    A ``required`` field that is absent or null rejects the payload; a present value that
    does not convert to ``dtype`` always rejects it.

    A field may declare what it expects, so that a change of the exchange shows as
    drift (``_drift``) instead of passing unseen: ``domain`` lists the values it may
    take, as sent (``{"BUY", "SELL"}``, ``{"1", "2"}``); ``window`` is how far before and
    after its payload's receipt an ``epoch`` time is plausible. ``on_drift`` says where
    a row with a value outside goes: ``"keep"`` stores it as sent, ``"reject"`` makes
    the payload a dead letter naming the value. Either way the value is recorded.
    """

    path: str
    dtype: pl.DataType
    required: bool = True
    epoch: Literal["s", "ms", "us", "ns"] | None = None
    domain: Collection[str] | None = field(default=None, kw_only=True)
    window: tuple[timedelta, timedelta] | None = field(default=None, kw_only=True)
    on_drift: Literal["keep", "reject"] = field(default="keep", kw_only=True)

    def __post_init__(self) -> None:
        if self.domain is not None:
            object.__setattr__(self, "domain", frozenset(str(v) for v in self.domain))
        if self.window is not None and self.epoch is None:
            raise ValueError(f"field {self.path!r}: a window needs an epoch time")

    def outside(self, raw: pl.Expr, typed: pl.Expr, received: pl.Expr) -> pl.Expr | None:
        """True where a present value is outside the domain or the window; None: no rule."""
        conditions = []
        if self.domain is not None:
            allowed = pl.Series(sorted(self.domain), dtype=pl.String()).implode()
            conditions.append(~raw.cast(pl.String).is_in(allowed))
        if self.window is not None:
            before, after = self.window
            conditions.append((typed < received - before) | (typed > received + after))
        if not conditions:
            return None
        return raw.is_not_null() & pl.any_horizontal(conditions)

    def expr(self) -> pl.Expr:
        """The raw value as a polars expression over the parsed frame."""
        head, *rest = self.path.split(".")
        expr = pl.col(head)
        for name in rest:
            expr = expr.struct.field(name)
        return expr

    def convert(self, raw: pl.Expr) -> pl.Expr:
        """The raw (string) value converted to ``dtype``; null where it does not convert."""
        if self.epoch is not None:
            ticks = raw.cast(pl.Int64, strict=False)
            return (
                pl.from_epoch(ticks, time_unit=self.epoch)
                .dt.replace_time_zone("UTC")
                .cast(self.dtype)
            )
        if self.dtype == pl.String:
            return raw.cast(pl.String)
        return raw.cast(self.dtype, strict=False)


def raw_schema(
    fields: Mapping[str, Field], extra: Sequence[str] = (), arrays: Sequence[str] = ()
) -> pl.Schema:
    """The schema to read payloads with: every field's path as a string leaf.

    ``extra`` adds top-level keys read as strings (for example ``"result"`` and ``"id"``
    to recognise control frames). ``arrays`` names the paths that hold arrays of
    objects (``"data"``, ``"data.details"``): they are read as lists of structs.
    """
    tree: dict = {}
    for spec in fields.values():
        node = tree
        *parents, leaf = spec.path.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node.setdefault(leaf, None)
    for name in extra:
        tree.setdefault(name, None)
    lists = set(arrays)

    def build(node: dict, at: str) -> dict[str, pl.DataType]:
        built: dict[str, pl.DataType] = {}
        for key, child in node.items():
            path = f"{at}{key}"
            dtype: pl.DataType = (
                pl.String() if child is None else pl.Struct(build(child, f"{path}."))
            )
            built[key] = pl.List(dtype) if path in lists else dtype
        return built

    return pl.Schema(build(tree, ""))


def read_ndjson(
    payloads: Sequence[bytes], schema: pl.Schema
) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Parse payloads, one JSON object each, into a frame with a ``_payload_index`` column.

    The batch is parsed in one call; when that fails, it is split in halves until the
    bad payloads are isolated, so one malformed frame costs a few parses, not a batch.
    Returns the frame of the parseable payloads and ``(index, reason)`` for the rest.
    """
    frames: list[pl.DataFrame] = []
    rejects: list[tuple[int, str]] = []

    def parse(lo: int, hi: int) -> None:
        chunk = payloads[lo:hi]
        data = b"\n".join(chunk)
        if data.count(b"\n") != hi - lo - 1:
            # A raw newline can only be JSON whitespace, so blanking it keeps the payload
            # intact while keeping one payload per line.
            data = b"\n".join(p.replace(b"\n", b" ").replace(b"\r", b" ") for p in chunk)
        error: Exception | None = None
        try:
            frame = pl.read_ndjson(data, schema=schema) if data.strip() else None
        except Exception as exc:  # polars raises several types for bad JSON
            frame, error = None, exc
        if frame is not None and frame.height == hi - lo:
            frames.append(frame.with_row_index(INDEX, offset=lo))
            return
        if hi - lo == 1:
            if error is not None:
                reason = f"invalid JSON: {error}"
            elif frame is None or frame.height == 0:
                reason = "empty payload"
            else:
                reason = "payload is not exactly one JSON object"
            rejects.append((lo, reason))
            return
        mid = (lo + hi) // 2
        parse(lo, mid)
        parse(mid, hi)

    if payloads:
        parse(0, len(payloads))
    if not frames:
        empty = pl.DataFrame(schema=schema).with_row_index(INDEX)
        return empty, rejects
    return pl.concat(frames, how="vertical"), rejects


def decode_json(
    batch: Batch,
    fields: Mapping[str, Field],
    *,
    constants: Mapping[str, object] | None = None,
    ignore: pl.Expr | None = None,
    ignore_keys: Sequence[str] = (),
    checks: Mapping[str, pl.Expr] | None = None,
    received_at: str | None = "received_at",
    derive: Mapping[str, pl.Expr] | None = None,
    columns: Sequence[str] | None = None,
    explode: str | Sequence[str] = (),
    ignore_payloads: Sequence[bytes] = (),
    known: Sequence[str] = (),
) -> Decoded:
    """Decode a batch of JSON-object payloads into typed rows, in one vectorized pass.

    ``fields`` maps output columns to :class:`Field`. ``constants`` adds literal columns
    (``{"exchange": "example"}``). ``ignore`` is a boolean expression over the raw frame
    that marks payloads which are not data by design (a subscription reply); they are
    counted, not stored; ``ignore_keys`` names extra top-level keys it needs.
    ``checks`` maps a reason to a boolean expression over the raw frame that is true
    for payloads to reject. ``received_at`` names the column that gets each payload's
    receipt time (``None`` to leave it out). ``derive`` adds columns computed from the
    output columns (``{"date": pl.col("trade_time").dt.date()}``), and ``columns`` picks
    and orders the output (default: fields, constants, ``received_at``, derived).

    ``explode`` names arrays of events, outermost first (``"data"``, or ``("data",
    "data.details")`` for an array inside each element of another): every element
    becomes a row, and a field's path reaches into it as into an object
    (``"data.details.sz"``), beside the frame's own keys (``"arg.channel"``). ``ignore``
    and ``checks`` then see one row per element, with each exploded array as a column
    named by its path (``pl.col("data.details")``). A frame is kept or rejected whole: one
    bad element sends the frame, every element with it, to the dead letters, so that
    nothing of it is stored twice when it is replayed. An empty array carries no event:
    its frame is ignored (counted, not stored). An absent one is not data either, so a
    frame without it is rejected by the required fields unless ``ignore`` marks it (a
    subscription reply).

    ``ignore_payloads`` lists whole payloads that are not JSON data by design (a text
    ``pong``): they are counted as ignored before the parse.

    Drift: the result's ``reads`` holds every key path the fields read, with
    ``ignore_keys`` and ``known`` (paths sent but not needed, such as a combined
    stream's ``"stream"``, or a whole subtree by its prefix): the runtime reports any
    other key it finds in the payloads, inside exploded arrays' elements too. A value
    outside a field's ``domain`` or ``window`` is listed in the result's ``drift`` (and
    rejects its payload when the field says ``on_drift="reject"``).

    The whole batch is one parse and two polars queries, whatever the number of fields
    and checks: each query costs a fixed ~0.5 ms, which would dominate small batches if
    every step were its own.
    """
    arrays = (explode,) if isinstance(explode, str) else tuple(explode)
    schema = raw_schema(fields, ignore_keys, arrays)
    # Not the exploded arrays themselves: a path covers its subtree, and the keys inside
    # an array's elements are news like any other.
    reads = frozenset((*(spec.path for spec in fields.values()), *ignore_keys, *known))
    payloads: Sequence[bytes] = batch.payloads
    kept: pl.Series | None = None
    skipped = 0
    skipped_at: list[int] = []
    if ignore_payloads and payloads:
        # One vectorized membership test; the index map is built only when one matches.
        wanted = pl.Series(list(ignore_payloads), dtype=pl.Binary).implode()
        hits = pl.Series(payloads, dtype=pl.Binary).is_in(wanted)
        skipped = int(hits.sum())
        if skipped:
            kept = (~hits).arg_true()
            payloads = [payloads[i] for i in kept.to_list()]
            skipped_at = hits.arg_true().to_list()
    raw, rejects = read_ndjson(payloads, schema)
    if kept is not None:
        original = kept.to_list()
        raw = raw.with_columns(pl.lit(kept).gather(pl.col(INDEX)).cast(pl.UInt32).alias(INDEX))
        rejects = [(original[i], reason) for i, reason in rejects]
    if arrays:
        raw = _explode(raw, arrays)
        fields = {name: _reach(spec, arrays) for name, spec in fields.items()}

    # (reason, condition) pairs over the raw columns and the typed ones (``__name``).
    # (reason, condition) pairs; a reason is text, or an expression for one that names
    # the value sent (built only for the rows rejected).
    problems: list[tuple[str | pl.Expr, pl.Expr]] = []
    for name, spec in fields.items():
        raw_value, typed = spec.expr(), pl.col(f"__{name}")
        if spec.required:
            problems.append((f"missing field {spec.path!r}", raw_value.is_null()))
        problems.append(
            (
                f"field {spec.path!r} is not a valid {_type_name(spec)}",
                raw_value.is_not_null() & typed.is_null(),
            )
        )
        if isinstance(spec.dtype, pl.Decimal) and spec.dtype.scale is not None:
            # A cast to a decimal rounds extra fractional digits; exact means refuse them
            # (trailing zeros are fine). No regex: this runs over every value.
            digits = raw_value.cast(pl.String).str.strip_chars_end("0")
            fraction = digits.str.len_bytes() - digits.str.find(".", literal=True) - 1
            problems.append(
                (
                    f"field {spec.path!r} has more than {spec.dtype.scale} decimals",
                    fraction > spec.dtype.scale,
                )
            )
    # Values outside what a field declares: drift, and a reject where the field says so.
    received = pl.lit(batch.received_at).gather(pl.col(INDEX).cast(pl.UInt32))
    outside: dict[str, pl.Expr] = {}
    for name, spec in fields.items():
        condition = spec.outside(spec.expr(), pl.col(f"__{name}"), received)
        if condition is None:
            continue
        outside[name] = condition.fill_null(False)
        if spec.on_drift == "reject":
            named = pl.concat_str(
                pl.lit(f"field {spec.path!r} = "),
                spec.expr().cast(pl.String),
                pl.lit(f" is outside {_expected(spec)}"),
            )
            problems.append((named, condition))
    for reason, condition in (checks or {}).items():
        problems.append((reason, condition))
    flags = [condition.fill_null(False) for _, condition in problems]
    ignored_flag = pl.lit(False) if ignore is None else ignore.fill_null(False)
    if arrays:
        ignored_flag = ignored_flag | pl.col(_EMPTY)

    # Query 1: every typed value and every flag, for every parsed payload.
    judging = (
        raw.lazy()
        .with_columns(
            *(spec.convert(spec.expr()).alias(f"__{name}") for name, spec in fields.items()),
            ignored_flag.alias("__ignored"),
        )
        .with_columns(
            (pl.any_horizontal(flags) if flags else pl.lit(False)).alias("__bad"),
            (pl.any_horizontal(list(outside.values())) if outside else pl.lit(False)).alias(
                "__drift"
            ),
        )
        .with_columns(pl.col("__bad") & ~pl.col("__ignored"))
    )
    if arrays:
        # A frame stands or falls whole: one bad element rejects all of it.
        judging = judging.with_columns(pl.col("__bad").any().over(INDEX))
    judged = judging.collect(optimizations=_PLAIN)
    ignored = _count_frames(judged, "__ignored", arrays) + skipped
    ignored_at = skipped_at
    if ignored > skipped:
        ignored_at = sorted([*skipped_at, *_frames(judged, "__ignored", arrays)])
    drift: list[Drift] = []
    if outside and judged.height and judged["__drift"].any():
        # Rare: which values, how often, and one payload showing each.
        # Ignored rows too: an event a source leaves to another (Binance's other
        # product) still tells that the exchange changed; control frames hold no values.
        drifting = judged.filter(pl.col("__drift"))
        drift = _value_drift(drifting, fields, outside, received)
    bad = judged["__bad"]
    if judged.height and bad.any():
        # Rare: the reason strings are built only for the rows that need them.
        culprits = judged.filter(bad)
        if arrays:
            # The first element that is bad in itself says why its frame is rejected.
            itself = pl.any_horizontal(flags) if flags else pl.lit(True)
            culprits = culprits.filter(itself & ~pl.col("__ignored")).unique(
                INDEX, keep="first", maintain_order=True
            )
        reasons = culprits.select(
            pl.concat_str(
                [
                    pl.when(flag).then(pl.lit(reason) if isinstance(reason, str) else reason)
                    for flag, (reason, _) in zip(flags, problems, strict=True)
                ],
                separator="; ",
                ignore_nulls=True,
            )
        ).to_series()
        rejects.extend(zip(culprits[INDEX].to_list(), reasons.to_list(), strict=True))

    # Query 2: the rows kept, named, with constants, receipt times and derived columns.
    out: list[pl.Expr] = [pl.col(f"__{name}").alias(name) for name in fields]
    out.extend(pl.lit(v).alias(k) for k, v in (constants or {}).items())
    if received_at is not None:
        times = pl.lit(batch.received_at).gather(pl.col(INDEX).cast(pl.UInt32))
        out.append(times.cast(TIMESTAMP).alias(received_at))
    query = judged.lazy()
    # Exploded, a kept frame may still hold rows to drop (an element with an empty array).
    if ignored or rejects or arrays:
        query = query.filter(~(pl.col("__bad") | pl.col("__ignored")))
    query = query.select(out)
    if derive:
        query = query.with_columns(**derive)
    if columns is not None:
        query = query.select(columns)
    rows = query.collect(optimizations=_PLAIN)
    rejects.sort()
    return Decoded(
        rows=rows,
        rejects=rejects,
        ignored=ignored,
        ignored_at=ignored_at,
        reads=reads,
        drift=drift,
    )


#: Distinct drifting values of one field reported per batch; the rest are counted as one.
MAX_VALUES = 20
OTHER_VALUES = "(other values)"


def _value_drift(
    drifting: pl.DataFrame,
    fields: Mapping[str, Field],
    outside: Mapping[str, pl.Expr],
    received: pl.Expr,
) -> list[Drift]:
    """One :class:`Drift` per field and value outside its declaration, with a count.

    A domain's drift is keyed by the value sent; a window's by its side (too early, too
    late), since every time is a value of its own.
    """
    found: list[Drift] = []
    for name, condition in outside.items():
        spec = fields[name]
        value = spec.expr().cast(pl.String).fill_null("")
        if spec.window is not None:
            typed = pl.col(f"__{name}")
            before, after = spec.window
            early = typed < received - before
            late = typed > received + after
            value = (
                pl.when(early)
                .then(pl.lit(f"more than {_span(before)} before receipt"))
                .when(late)
                .then(pl.lit(f"more than {_span(after)} after receipt"))
                .otherwise(value)
            )
        counted = (
            drifting.lazy()
            .filter(condition)
            .group_by(value.alias("value"))
            .agg(pl.len().alias("count"), pl.col(INDEX).min().alias("example"))
            .sort(["count", "value"], descending=[True, False])
            .collect()
        )
        rows = counted.rows(named=True)
        for row in rows[:MAX_VALUES]:
            found.append(Drift("value", spec.path, row["value"], row["count"], row["example"]))
        rest = rows[MAX_VALUES:]
        if rest:
            count = sum(r["count"] for r in rest)
            example = min(r["example"] for r in rest)
            found.append(Drift("value", spec.path, OTHER_VALUES, count, example))
    return found


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _expected(spec: Field) -> str:
    parts = []
    if spec.domain is not None:
        parts.append("its domain " + "/".join(sorted(spec.domain)))
    if spec.window is not None:
        before, after = spec.window
        parts.append(f"{_span(before)} before to {_span(after)} after receipt")
    return " and ".join(parts)


def _frames(judged: pl.DataFrame, flag: str, arrays: Sequence[str]) -> list[int]:
    """The payload indices the flag marks: rows, or whole frames once exploded."""
    if not arrays:
        return judged.filter(pl.col(flag))[INDEX].to_list()
    marked = judged.filter(pl.col(flag).all().over(INDEX))
    return marked[INDEX].unique(maintain_order=True).to_list()


def _explode(raw: pl.DataFrame, arrays: Sequence[str]) -> pl.DataFrame:
    """One row per element of each array, outermost first; columns named by their paths.

    An empty array becomes one null element, like an absent one, so that its frame
    keeps a row and is counted; ``_EMPTY`` marks the rows that stand for an empty array.
    """
    raw = raw.with_columns(pl.lit(False).alias(_EMPTY))
    for depth, path in enumerate(arrays):
        column = _reach(Field(path, pl.String()), arrays[:depth]).expr()
        empty = column.list.len() == 0
        raw = raw.with_columns(
            pl.when(empty).then(None).otherwise(column).alias(path),
            (pl.col(_EMPTY) | empty.fill_null(False)).alias(_EMPTY),
        ).explode(path)
    return raw


def _reach(spec: Field, arrays: Sequence[str]) -> Field:
    """``spec`` with its path rooted at the innermost exploded array that contains it."""
    for path in sorted(arrays, key=len, reverse=True):
        if spec.path.startswith(f"{path}."):
            rest = spec.path[len(path) + 1 :]
            return _Rooted(
                spec.path,
                spec.dtype,
                spec.required,
                spec.epoch,
                domain=spec.domain,
                window=spec.window,
                on_drift=spec.on_drift,
                root=path,
                rest=rest,
            )
    return spec


@dataclass(frozen=True)
class _Rooted(Field):
    """A field read from an exploded array's column (named by the array's path)."""

    root: str = field(default="", kw_only=True)
    rest: str = field(default="", kw_only=True)

    def expr(self) -> pl.Expr:
        expr = pl.col(self.root)
        for name in self.rest.split("."):
            expr = expr.struct.field(name)
        return expr


def _count_frames(judged: pl.DataFrame, flag: str, arrays: Sequence[str]) -> int:
    """How many payloads the flag marks: rows, or distinct frames once exploded."""
    if not judged.height:
        return 0
    if not arrays:
        return int(judged[flag].sum())
    # A frame counts when every one of its rows is marked (it stored nothing).
    return judged.filter(pl.col(flag).all().over(INDEX))[INDEX].n_unique()


def _type_name(spec: Field) -> str:
    if spec.epoch is not None:
        return f"epoch time in {spec.epoch}"
    if isinstance(spec.dtype, pl.Decimal):
        return "decimal"
    return str(spec.dtype).lower()
