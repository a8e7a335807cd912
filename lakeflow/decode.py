"""Vectorized decoding helpers for plugin authors: JSON payloads in, typed rows out.

A decoder reads a whole batch with one ``polars.read_ndjson`` call (every leaf read as
a string, so a wrong type becomes a reject rather than a failed batch), converts the
columns it needs in one pass, and sends any payload that fails to a dead letter with
the reason. The per-payload Python work is nil unless a payload is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import polars as pl

from lakeflow.schema import TIMESTAMP
from lakeflow.sources import Batch, Decoded, Drift

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

INDEX = "_payload_index"
#: Marks the rows that stand for an empty array once exploded.
_EMPTY = "__empty_array"
#: The decode queries are written as they should run: planning them (common
#: subexpressions, pushdowns) costs more than it saves on a batch.
_PLAIN = pl.QueryOptFlags.none()

#: When an epoch time is plausible unless its field says otherwise: ``(start, after)``,
#: not before 2009-01-01 (before any market lakeflow reads) and not later than 2 days
#: after its payload was received.
PLAUSIBLE: tuple[datetime | None, timedelta | None] = (
    datetime(2009, 1, 1, tzinfo=UTC),
    timedelta(days=2),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Microseconds per epoch unit; nanoseconds are the one unit finer than a microsecond.
_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_INT64 = (-(2**63), 2**63 - 1)


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
    after its payload's receipt an ``epoch`` time is expected. ``on_drift`` says where
    a row with a value outside goes: ``"keep"`` stores it as sent, ``"reject"`` makes
    the payload a dead letter naming the value. Either way the value is recorded.

    An ``epoch`` time must also be *plausible*, whatever ``on_drift`` says: ``plausible``
    is ``(start, after)``, not before ``start`` and not later than ``after`` past its
    payload's receipt (``None`` on a side: unbounded there; a naive ``start`` is UTC).
    The default, :data:`PLAUSIBLE`, is 2009-01-01 and 2 days; ``plausible=None`` switches
    the check off. A time outside it makes the payload a dead letter naming the field and
    the value as sent, and is drift. It is checked on the integer as sent, before any
    conversion, so that an absurd time (a unit mistaken for another, year 10000) never
    becomes a row or a partition. ``window`` is the tighter check that only reports.
    """

    path: str
    dtype: pl.DataType
    required: bool = True
    epoch: Literal["s", "ms", "us", "ns"] | None = None
    domain: Collection[str] | None = field(default=None, kw_only=True)
    window: tuple[timedelta, timedelta] | None = field(default=None, kw_only=True)
    on_drift: Literal["keep", "reject"] = field(default="keep", kw_only=True)
    plausible: tuple[datetime | None, timedelta | None] | None = field(
        default=PLAUSIBLE, kw_only=True
    )

    def __post_init__(self) -> None:
        if self.domain is not None:
            object.__setattr__(self, "domain", frozenset(str(v) for v in self.domain))
        if self.window is not None and self.epoch is None:
            raise ValueError(f"field {self.path!r}: a window needs an epoch time")
        if self.plausible is not None:
            start, after = self.plausible
            if start is not None and start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            if after is not None and after < timedelta(0):
                raise ValueError(f"field {self.path!r}: plausible needs an 'after' of 0 or more")
            object.__setattr__(self, "plausible", (start, after))
            if self.epoch is None and self.plausible != PLAUSIBLE:
                raise ValueError(f"field {self.path!r}: a plausible window needs an epoch time")

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
        """The raw (string) value converted to ``dtype``; null where it does not convert.

        An ``epoch`` time converts when it is an integer between the years 1 and 9999
        (what a timestamp, a date partition and Python can hold); plausibility is
        :meth:`implausible`'s, which needs the receipt times.
        """
        if self.epoch is not None:
            return self._timestamp(self.ticks(raw))
        if self.dtype == pl.String:
            return raw.cast(pl.String)
        return raw.cast(self.dtype, strict=False)

    def ticks(self, raw: pl.Expr) -> pl.Expr:
        """The raw value as an integer count of ``epoch`` units; null where not an integer.

        128 bits, so that any integer polars reads from JSON (up to 2**64) compares with
        the bounds as sent, instead of failing a conversion or wrapping around.
        """
        return raw.cast(pl.Int128, strict=False)

    def _timestamp(self, ticks: pl.Expr) -> pl.Expr:
        """``ticks`` as a ``dtype`` time; null outside the years 1 to 9999.

        Only ticks within those years reach ``from_epoch``: a larger count would overflow
        its multiplication, and a year past 9999 makes a date partition Delta cannot hold.
        """
        assert self.epoch is not None
        low, high = _representable(self.epoch)
        kept = pl.when(ticks.is_between(low, high)).then(ticks).cast(pl.Int64)
        return (
            pl.from_epoch(kept, time_unit=self.epoch).dt.replace_time_zone("UTC").cast(self.dtype)
        )

    def implausible(self, ticks: pl.Expr, received: pl.Expr) -> tuple[pl.Expr | None, ...]:
        """``(early, late)``: where ``ticks`` are before ``plausible``'s start, and where
        they are later than its ``after`` past ``received``; None for a side not checked.

        Both compare integers in the field's unit, so nothing is converted to find out.
        """
        if self.epoch is None or self.plausible is None:
            return None, None
        start, after = self.plausible
        early = late = None
        if start is not None:
            early = ticks < _count(_microseconds(start), self.epoch, up=True)
        if after is not None:
            limit = received.dt.epoch("us").cast(pl.Int128) + after // _MICROSECOND
            late = ticks > (limit * 1000 if self.epoch == "ns" else limit // _PER_UNIT[self.epoch])
        return early, late


def raw_schema(
    fields: Mapping[str, Field], extra: Sequence[str] = (), arrays: Sequence[str] = ()
) -> pl.Schema:
    """The schema to read payloads with: every field's path as a string leaf.

    A decimal field's leaf is ``pl.Categorical`` instead: polars then refuses a JSON
    number there rather than reading it as a float, and :func:`read_ndjson` reads it
    again from its exact digits (its frame has strings there, like everywhere else).
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
        if isinstance(spec.dtype, pl.Decimal):
            if not isinstance(node.get(leaf), dict):
                node[leaf] = pl.Categorical()
        else:
            node.setdefault(leaf, pl.String())
    for name in extra:
        tree.setdefault(name, pl.String())
    lists = set(arrays)

    def build(node: dict, at: str) -> dict[str, pl.DataType]:
        built: dict[str, pl.DataType] = {}
        for key, child in node.items():
            path = f"{at}{key}"
            dtype = pl.Struct(build(child, f"{path}.")) if isinstance(child, dict) else child
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

    A ``pl.Categorical`` leaf of ``schema`` (a decimal's, from :func:`raw_schema`) holds
    a number exactly or not at all: polars reads a JSON number as a 64-bit float, which
    rounds ``1.00000000000000011`` to ``1``, so it refuses one there. A chunk it refuses
    is read once more, as strings, with every number under such a leaf's key quoted from
    its own digits; only then are bad payloads looked for. The frame returned holds
    strings in those leaves.
    """
    strings = _as_strings(schema)
    names = _categorical_names(schema)
    quote = _quoter(names) if names else None
    texts = list(payloads)  # the rare rewritten chunks replace their payloads here
    frames: list[pl.DataFrame] = []
    rejects: list[tuple[int, str]] = []

    def parse(lo: int, hi: int, exact: bool) -> None:
        chunk = texts[lo:hi]
        data = b"\n".join(chunk)
        if data.count(b"\n") != hi - lo - 1:
            # A raw newline can only be JSON whitespace, so blanking it keeps the payload
            # intact while keeping one payload per line.
            data = b"\n".join(p.replace(b"\n", b" ").replace(b"\r", b" ") for p in chunk)
        error: Exception | None = None
        try:
            frame = (
                pl.read_ndjson(data, schema=schema if exact else strings) if data.strip() else None
            )
        except Exception as exc:  # polars raises several types for bad JSON
            frame, error = None, exc
        if frame is not None and frame.height == hi - lo:
            if exact:
                frame = frame.cast(strings)
            frames.append(frame.with_row_index(INDEX, offset=lo))
            return
        if error is not None and exact and quote is not None:
            # Most likely a decimal sent as a JSON number. Quoted, it is read from its
            # digits; read as strings, a true or an object there is refused by the
            # decimal conversion, and the halving below meets only real JSON errors.
            texts[lo:hi] = [quote(payload) for payload in chunk]
            parse(lo, hi, exact=False)
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
        parse(lo, mid, exact)
        parse(mid, hi, exact)

    if payloads:
        parse(0, len(payloads), exact=quote is not None)
    if not frames:
        empty = pl.DataFrame(schema=strings).with_row_index(INDEX)
        return empty, rejects
    return pl.concat(frames, how="vertical"), rejects


def _as_strings(schema: pl.Schema) -> pl.Schema:
    """``schema`` with its Categorical leaves as strings, inside structs and lists too."""

    def plain(dtype: PolarsDataType) -> PolarsDataType:
        if isinstance(dtype, pl.Struct):
            return pl.Struct({f.name: plain(f.dtype) for f in dtype.fields})
        if isinstance(dtype, pl.List):
            return pl.List(plain(dtype.inner))
        return pl.String() if isinstance(dtype, pl.Categorical) else dtype

    return pl.Schema({name: plain(dtype) for name, dtype in schema.items()})


def _categorical_names(schema: pl.Schema) -> set[str]:
    """The keys of ``schema``'s Categorical leaves, at any depth."""
    found: set[str] = set()

    def visit(name: str, dtype: PolarsDataType) -> None:
        if isinstance(dtype, pl.Struct):
            for inner in dtype.fields:
                visit(inner.name, inner.dtype)
        elif isinstance(dtype, pl.List):
            visit(name, dtype.inner)
        elif isinstance(dtype, pl.Categorical):
            found.add(name)

    for name, dtype in schema.items():
        visit(name, dtype)
    return found


#: A JSON number, as its grammar spells it.
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
#: Beyond this exponent a number cannot fit any decimal column, written out or not.
_WIDEST = 100


def _quoter(names: Collection[str]) -> Callable[[bytes], bytes]:
    """A rewrite of a payload that quotes every number sent as the value of those keys.

    A key's opening quote follows ``{``, ``,`` or whitespace, while a quote inside a
    string follows a backslash: the pattern meets keys only, never a string's content.
    """
    keys = b"|".join(re.escape(name.encode()) for name in sorted(names, key=len, reverse=True))
    pattern = re.compile(rb'([{,\s]"(?:' + keys + rb')"\s*:\s*)(' + _NUMBER + rb")")

    def quote(payload: bytes) -> bytes:
        return pattern.sub(lambda m: m[1] + b'"' + _written_out(m[2]) + b'"', payload)

    return quote


def _written_out(number: bytes) -> bytes:
    """A JSON number without its exponent, exactly (``2.5e-18``: ``0.0000000000000000025``).

    The decimal conversion rounds what an exponent hides (``2.5e-18`` to 18 places is
    ``2e-18``); written out, its digits are counted like any other's. A number too far
    out to write out is marked so that the conversion refuses it.
    """
    if b"e" not in number and b"E" not in number:
        return number
    value = Decimal(number.decode())
    if value.is_zero():
        return b"0"
    if abs(value.adjusted()) > _WIDEST:
        return number + b" (out of range)"
    return format(value, "f").encode()


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
    rejects its payload when the field says ``on_drift="reject"``); an epoch time outside
    its field's ``plausible`` bounds is listed there too, and always rejects its payload.

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

    # (reason, condition) pairs over the raw columns, the typed ones (``__name``) and the
    # epoch times' integers (``__ticks_name``); a reason is text, or an expression for one
    # that names the value sent (built only for the rows rejected).
    problems: list[tuple[str | pl.Expr, pl.Expr]] = []
    received = pl.lit(batch.received_at).gather(pl.col(INDEX).cast(pl.UInt32))
    # Where each epoch time is implausible, (early, late): never stored, always drift.
    refusals: dict[str, tuple[pl.Expr | None, ...]] = {}
    refused: dict[str, pl.Expr] = {}
    for name, spec in fields.items():
        sides = spec.implausible(pl.col(f"__ticks_{name}"), received)
        checked = [side.fill_null(False) for side in sides if side is not None]
        if checked:
            refusals[name] = sides
            refused[name] = pl.any_horizontal(checked)
    for name, spec in fields.items():
        raw_value, typed = spec.expr(), pl.col(f"__{name}")
        if spec.required:
            problems.append((f"missing field {spec.path!r}", raw_value.is_null()))
        invalid = raw_value.is_not_null() & typed.is_null()
        if name in refused:
            # An implausible time is not converted either; its own reason says why.
            invalid = invalid & ~refused[name]
            problems.append(
                (
                    pl.concat_str(
                        pl.lit(f"field {spec.path!r} = "),
                        raw_value.cast(pl.String),
                        pl.lit(f" is not a plausible time ({' or '.join(_bounds(spec))})"),
                    ),
                    refused[name],
                )
            )
        problems.append((f"field {spec.path!r} is not a valid {_type_name(spec)}", invalid))
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
    outside: dict[str, pl.Expr] = {}
    for name, spec in fields.items():
        condition = spec.outside(spec.expr(), pl.col(f"__{name}"), received)
        if condition is not None and spec.on_drift == "reject":
            named = pl.concat_str(
                pl.lit(f"field {spec.path!r} = "),
                spec.expr().cast(pl.String),
                pl.lit(f" is outside {_expected(spec)}"),
            )
            # An implausible time is rejected as such, not as outside its window too.
            problems.append((named, condition & ~refused.get(name, pl.lit(False))))
        if name in refused:
            condition = refused[name] if condition is None else condition | refused[name]
        if condition is not None:
            outside[name] = condition.fill_null(False)
    for reason, condition in (checks or {}).items():
        problems.append((reason, condition))
    flags = [condition.fill_null(False) for _, condition in problems]
    ignored_flag = pl.lit(False) if ignore is None else ignore.fill_null(False)
    if arrays:
        ignored_flag = ignored_flag | pl.col(_EMPTY)

    # Query 1: every typed value and every flag, for every parsed payload. An epoch
    # time's integer is read once, for its conversion and its plausibility alike.
    epochs = {name: spec for name, spec in fields.items() if spec.epoch is not None}
    judging = raw.lazy()
    if epochs:
        judging = judging.with_columns(
            spec.ticks(spec.expr()).alias(f"__ticks_{name}") for name, spec in epochs.items()
        )
    conversions = {
        name: spec._timestamp(pl.col(f"__ticks_{name}"))
        if name in epochs
        else spec.convert(spec.expr())
        for name, spec in fields.items()
    }
    judging = (
        judging.with_columns(
            *(convert.alias(f"__{name}") for name, convert in conversions.items()),
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
        drift = _value_drift(drifting, fields, outside, received, refusals)
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
    refusals: Mapping[str, tuple[pl.Expr | None, ...]],
) -> list[Drift]:
    """One :class:`Drift` per field and value outside its declaration, with a count.

    A domain's drift is keyed by the value sent; a window's and an implausible time's by
    its side (too early, too late), since every time is a value of its own.
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
        if name in refusals:
            # Implausible says more than outside the window, which it also is.
            for side, bound in zip(refusals[name], _bounds(spec, both=True), strict=True):
                if side is not None:
                    label = pl.lit(f"not a plausible time: {bound}")
                    value = pl.when(side.fill_null(False)).then(label).otherwise(value)
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


def _microseconds(moment: datetime) -> int:
    """``moment`` as microseconds since the Unix epoch, exactly."""
    return (moment - _EPOCH) // _MICROSECOND


def _count(microseconds: int, unit: str, *, up: bool) -> int:
    """``microseconds`` as a count of ``unit``, rounded up or down to a whole one."""
    if unit == "ns":
        return microseconds * 1000
    per = _PER_UNIT[unit]
    return -(-microseconds // per) if up else microseconds // per


def _representable(unit: str) -> tuple[int, int]:
    """The counts of ``unit`` from year 1 to 9999 that also fit 64 bits."""
    low = _count(_microseconds(datetime(1, 1, 1, tzinfo=UTC)), unit, up=True)
    high = _count(_microseconds(datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)), unit, up=False)
    return max(low, _INT64[0]), min(high, _INT64[1])


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _bounds(spec: Field, *, both: bool = False) -> list[str]:
    """What makes ``spec``'s time implausible, side by side: ``before 2009-01-01``,
    ``later than 2 days after receipt``. ``both``: a side not checked is an empty string.
    """
    start, after = spec.plausible or (None, None)
    sides = ["", ""]
    if start is not None:
        shown = start.astimezone(UTC)
        midnight = shown == shown.replace(hour=0, minute=0, second=0, microsecond=0)
        sides[0] = f"before {shown.date() if midnight else shown.isoformat()}"
    if after is not None:
        sides[1] = f"later than {_words(after)} after receipt"
    return sides if both else [side for side in sides if side]


def _words(delta: timedelta) -> str:
    """``delta`` as a reader says it: ``2 days``, ``1 hour``, ``90 seconds``."""
    seconds = delta.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


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
                plausible=spec.plausible,
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
