"""The ``ticker_24h`` record schema and the vectorized decoder of 24 h ticker bodies.

A payload is one response body: a JSON array of ticker objects. Each body is parsed by
one ``polars.read_json`` call with every field read as a string (a body is one big
array, so a call per body costs nothing per ticker), the bodies' frames are stacked,
and every column is converted at once. A body that does not parse, or is not an array,
is rejected whole. A ticker whose value does not convert (a non-numeric price) is
dropped; the other tickers of its body are kept, and the body also goes to
``_dead_letters`` with a reason naming the symbols that failed.

Each market has its own key-to-column map (:data:`MARKET_FIELDS`): COIN-M's ``volume``
counts contracts and its base-asset volume is ``baseVolume``, so ``volume`` means
base-asset volume in every market. A column the market's map lacks is null.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import polars as pl

from lakeflow import DECIMAL, TIMESTAMP, Batch, Decoded, Field, TableSchema

TICKER_24H = TableSchema(
    name="ticker_24h",
    table="prices",
    columns={
        "exchange": pl.String(),
        "market": pl.String(),
        "symbol": pl.String(),
        "pair": pl.String(),
        "price_change": DECIMAL,
        "price_change_percent": DECIMAL,
        "weighted_avg_price": DECIMAL,
        "prev_close_price": DECIMAL,
        "last_price": DECIMAL,
        "last_quantity": DECIMAL,
        "bid_price": DECIMAL,
        "bid_quantity": DECIMAL,
        "ask_price": DECIMAL,
        "ask_quantity": DECIMAL,
        "open_price": DECIMAL,
        "high_price": DECIMAL,
        "low_price": DECIMAL,
        "volume": DECIMAL,
        "quote_volume": DECIMAL,
        "contract_volume": DECIMAL,
        "open_time": TIMESTAMP,
        "close_time": TIMESTAMP,
        "first_trade_id": pl.Int64(),
        "last_trade_id": pl.Int64(),
        "trade_count": pl.Int64(),
        "polled_at": TIMESTAMP,
        "date": pl.Date(),
    },
    description=(
        "Rolling 24 h ticker statistics per symbol, one row per symbol per poll "
        "(Binance spot, USD-M and COIN-M)."
    ),
)

# Column <- Binance key, per market: each map names what that market sends (the plugin
# README's schema table shows them side by side). A column a market's map lacks is null.
# Only symbol, lastPrice, openTime and closeTime must be present; a value that is present
# but does not convert rejects its ticker.
_COMMON: dict[str, Field] = {
    "symbol": Field("symbol", pl.String()),
    "price_change": Field("priceChange", DECIMAL, required=False),
    "price_change_percent": Field("priceChangePercent", DECIMAL, required=False),
    "weighted_avg_price": Field("weightedAvgPrice", DECIMAL, required=False),
    "last_price": Field("lastPrice", DECIMAL),
    "last_quantity": Field("lastQty", DECIMAL, required=False),
    "open_price": Field("openPrice", DECIMAL, required=False),
    "high_price": Field("highPrice", DECIMAL, required=False),
    "low_price": Field("lowPrice", DECIMAL, required=False),
    "open_time": Field("openTime", TIMESTAMP, epoch="ms"),
    "close_time": Field("closeTime", TIMESTAMP, epoch="ms"),
    # -1 means "no trade in 24 h" and is kept as sent.
    "first_trade_id": Field("firstId", pl.Int64(), required=False),
    "last_trade_id": Field("lastId", pl.Int64(), required=False),
    "trade_count": Field("count", pl.Int64(), required=False),
}

#: Spot: the previous close and the best bid and ask, but no pair.
SPOT_FIELDS: dict[str, Field] = {
    **_COMMON,
    "prev_close_price": Field("prevClosePrice", DECIMAL, required=False),
    "bid_price": Field("bidPrice", DECIMAL, required=False),
    "bid_quantity": Field("bidQty", DECIMAL, required=False),
    "ask_price": Field("askPrice", DECIMAL, required=False),
    "ask_quantity": Field("askQty", DECIMAL, required=False),
    "volume": Field("volume", DECIMAL, required=False),
    "quote_volume": Field("quoteVolume", DECIMAL, required=False),
}

#: USD-M: no previous close, bid or ask. Its tickers are not documented with a `pair`
#: (its liquidation frames carry one), so `pair` is kept when sent and null otherwise.
USDM_FIELDS: dict[str, Field] = {
    **_COMMON,
    "pair": Field("pair", pl.String(), required=False),
    "volume": Field("volume", DECIMAL, required=False),
    "quote_volume": Field("quoteVolume", DECIMAL, required=False),
}

#: COIN-M: `volume` counts contracts (each worth a fixed amount of USD), `baseVolume` is
#: the base asset's volume, and there is no quoteVolume. Contracts land in their own
#: column so that `volume` means the base asset in every market; quote_volume is null.
COINM_FIELDS: dict[str, Field] = {
    **_COMMON,
    "pair": Field("pair", pl.String(), required=False),
    "volume": Field("baseVolume", DECIMAL, required=False),
    "contract_volume": Field("volume", DECIMAL, required=False),
}

#: Each market's column <- Binance key map.
MARKET_FIELDS: dict[str, dict[str, Field]] = {
    "spot": SPOT_FIELDS,
    "usdm": USDM_FIELDS,
    "coinm": COINM_FIELDS,
}

_INDEX = "_payload_index"
#: What the decoder fills in itself rather than reading from a ticker.
_ADDED = ("exchange", "market", "polled_at", "date")
#: Symbols named in one dead letter's reason, at most.
_NAMED = 10


def decode_tickers(batch: Batch, market: str, symbols: Collection[str] = ()) -> Decoded:
    """Decode a batch of 24 h ticker bodies of ``market`` into ``ticker_24h`` rows.

    ``symbols``, when given, keeps only those symbols (a futures body holds every symbol).
    ``polled_at`` is each body's receipt time and ``date`` its UTC date.
    """
    fields = MARKET_FIELDS[market]
    read_schema = pl.Schema({spec.path: pl.String() for spec in fields.values()})
    frames: list[pl.DataFrame] = []
    rejects: list[tuple[int, str]] = []
    for index, body in enumerate(batch.payloads):
        # polars reads a lone object as a one-row array; only an array is a ticker list.
        if body.lstrip()[:1] != b"[":
            rejects.append((index, _explain(body, "")))
            continue
        try:
            frame = pl.read_json(body, schema=read_schema)
        except Exception as exc:  # polars raises several types for bad JSON
            rejects.append((index, _explain(body, str(exc))))
            continue
        frames.append(frame.with_columns(pl.lit(index, pl.UInt32).alias(_INDEX)))
    tickers = (
        pl.concat(frames, how="vertical")
        if frames
        else pl.DataFrame(schema=read_schema).with_columns(pl.lit(0, pl.UInt32).alias(_INDEX))
    )
    if symbols:
        tickers = tickers.filter(pl.col("symbol").is_in(list(symbols)))

    # Raw strings and their conversions side by side, so a failed conversion is seen.
    checked = tickers.with_columns(
        spec.convert(spec.expr()).alias(f"__{name}") for name, spec in fields.items()
    )
    problems = []
    for name, spec in fields.items():
        value, typed = spec.expr(), pl.col(f"__{name}")
        problem: pl.Expr = pl.when(value.is_not_null() & typed.is_null()).then(
            pl.lit(f"{spec.path!r} is not a valid {_kind(spec)}")
        )
        if isinstance(spec.dtype, pl.Decimal) and spec.dtype.scale is not None:
            # A cast to a decimal rounds extra fractional digits; exact means refusing them.
            digits = value.str.extract(r"\.(\d*?)0*(?:[eE].*)?$")
            problem = (
                pl.when(digits.str.len_chars() > spec.dtype.scale)
                .then(pl.lit(f"{spec.path!r} has more than {spec.dtype.scale} decimals"))
                .otherwise(problem)
            )
        if spec.required:
            problem = (
                pl.when(value.is_null()).then(pl.lit(f"{spec.path!r} missing")).otherwise(problem)
            )
        problems.append(problem)
    checked = checked.with_columns(
        pl.concat_str(problems, separator=", ", ignore_nulls=True).alias("__reason")
    )
    bad = pl.col("__reason").is_not_null() & (pl.col("__reason") != "")
    failed = checked.filter(bad)
    if failed.height:
        for (index,), group in failed.group_by(_INDEX, maintain_order=True):
            rejects.append((int(index), _describe(group)))
        checked = checked.filter(~bad)
    converted = checked.select(
        pl.col(_INDEX),
        *(pl.col(f"__{name}").alias(name) for name in fields),
        *(
            pl.lit(None, dtype).alias(name)
            for name, dtype in TICKER_24H.columns.items()
            if name not in fields and name not in _ADDED
        ),
    )

    polled_at = batch.received_at.cast(TIMESTAMP).gather(converted[_INDEX].cast(pl.UInt32))
    rows = converted.with_columns(
        pl.lit("binance").alias("exchange"),
        pl.lit(market).alias("market"),
        polled_at.alias("polled_at"),
        polled_at.dt.date().alias("date"),
    ).drop(_INDEX)
    rejects.sort()
    # Every key a ticker of this market is read from: any other is drift (a new field).
    reads = frozenset(spec.path for spec in fields.values())
    return Decoded(rows=rows, rejects=rejects, reads=reads)


def _describe(failed: pl.DataFrame) -> str:
    """The dead-letter reason of one body whose tickers ``failed`` did not convert."""
    named = [
        f"{symbol or '?'}: {reason}"
        for symbol, reason in failed.head(_NAMED).select("symbol", "__reason").iter_rows()
    ]
    more = f"; and {failed.height - _NAMED} more" if failed.height > _NAMED else ""
    return (
        f"{failed.height} ticker(s) rejected, the body's other tickers were stored: "
        + "; ".join(named)
        + more
    )


def _explain(body: bytes, reason: str) -> str:
    """Why ``body`` could not be read, for a dead letter (runs for rejected bodies only)."""
    if not body.strip():
        return "empty body"
    try:
        value = json.loads(body)
    except ValueError as exc:
        return f"body is not JSON ({exc}); it starts {body[:80]!r}"
    if isinstance(value, list):
        return f"tickers of an unexpected shape: {reason.splitlines()[0] if reason else '?'}"
    name = "null" if value is None else _JSON_TYPES.get(type(value), "value")
    return f"body is a JSON {name}, not an array of tickers"


_JSON_TYPES = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}


def _kind(spec: Field) -> str:
    if spec.epoch is not None:
        return f"epoch time in {spec.epoch}"
    if isinstance(spec.dtype, pl.Decimal):
        return "decimal"
    return "integer" if spec.dtype == pl.Int64 else str(spec.dtype).lower()
