"""The ``binance_markprice`` source: Binance futures ``!markPrice@arr`` frames over WebSocket.

Since 2026-06-30 (Binance's CM-UM integration) the all-market stream carries COIN-M
symbols beside USD-M ones, each update marked by ``st`` (1 = USD-M, 2 = COIN-M): the
source keeps the products its ``market`` names and stores each update's own product.

Unlike a stream of one event per frame, every frame of the all-market stream is a JSON
*array*: the updates of every symbol at that second. :func:`decode_frames` turns a batch
of such frames into rows in polars: it parses all frames at once, explodes the arrays
into one row per update, and hands the updates to ``lakeflow.decode_json`` for the
conversions and checks. A frame that does not parse goes to ``_dead_letters`` whole;
when only some of its updates are bad, the good ones are stored and the frame also goes
to ``_dead_letters``, its reason naming the bad symbols.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Literal
from urllib.parse import urlsplit

import polars as pl
from pydantic import Field as ConfigField
from pydantic import field_validator

import lakeflow
from lakeflow import DECIMAL, TIMESTAMP, Batch, Decoded, Field
from lakeflow_binance_markprice.schema import MARK_PRICE

HOST = "wss://fstream.binance.com"
#: Binance serves mark prices, a "market" stream, under this routed base since 2026-04-23;
#: the root paths of before still connect but forward nothing.
ROUTE = "/market"
EVENT_TYPE = "markPriceUpdate"

#: ``st``: the product of an update of the merged stream.
SYMBOL_TYPES = {"1": "usdm", "2": "coinm"}
#: What marks a COIN-M symbol, for an update without ``st`` (``BTCUSD_PERP``); USD-M's
#: delivery contracts carry ``USDT_``.
COINM_MARK = "USD_"
#: Keys Binance sends that the table does not store: ``ap``, a moving average of the mark
#: price (since 2026-03-16).
KNOWN = ("ap",)

#: Each column and its key in one update. ``r`` and ``T`` are empty for delivery
#: contracts (no funding), so they may be missing.
FIELDS = {
    "event_type": Field("e", pl.String()),
    "event_time": Field("E", TIMESTAMP, epoch="ms"),
    "symbol": Field("s", pl.String()),
    "mark_price": Field("p", DECIMAL),
    "index_price": Field("i", DECIMAL),
    "estimated_settle_price": Field("P", DECIMAL),
    "funding_rate": Field("r", DECIMAL, required=False),
    "next_funding_time": Field("T", TIMESTAMP, required=False, epoch="ms"),
    "symbol_type": Field("st", pl.String(), required=False, domain=SYMBOL_TYPES),
}
#: How a frame is read before exploding: an array of updates, every value a string.
FRAME = pl.Schema({"updates": pl.List(pl.Struct({f.path: pl.String() for f in FIELDS.values()}))})


class MarkPriceConfig(lakeflow.StreamingConfig):
    """``[sources.NAME]`` keys of a ``binance_markprice`` source."""

    # Binance pushes every market's mark price every 1 s (or 3 s): half a minute without a
    # frame means the stream is gone, however calm the market.
    silence_timeout: float | None = 30.0

    market: Literal["usdm", "coinm", "all"] = ConfigField(
        default="usdm",
        description=(
            'Which products to keep: "usdm", "coinm" or "all". Since 2026-06-30 the stream '
            "carries both, each update marked by its product."
        ),
    )
    speed: Literal["1s", "3s"] = ConfigField(
        default="1s", description='How often Binance pushes: "1s" or "3s".'
    )
    symbols: list[str] = ConfigField(
        default_factory=list,
        description="Keep only these symbols (BTCUSDT); empty: every symbol of the market.",
    )
    ws_url: str | None = ConfigField(
        default=None,
        description=(
            "Scheme and host instead of wss://fstream.binance.com (a testnet, a proxy, a "
            "stand-in); /market/ws/<stream> is appended."
        ),
    )

    @field_validator("ws_url")
    @classmethod
    def _check_ws_url(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError("must be a ws:// or wss:// URL such as wss://fstream.binance.com")
        return None if url is None else url.rstrip("/")

    def stream_url(self) -> str:
        """The all-market stream: ``!markPrice@arr@1s``, or ``!markPrice@arr`` for 3 s."""
        stream = "!markPrice@arr@1s" if self.speed == "1s" else "!markPrice@arr"
        return f"{self.ws_url or HOST}{ROUTE}/ws/{stream}"


def decode_frames(
    batch: Batch,
    symbols: list[str] | None = None,
    products: tuple[str, ...] = ("usdm",),
) -> Decoded:
    """Decode frames that each hold a JSON array of mark-price updates, all at once.

    Each update's product is its ``st``; without one (before the merge), its symbol's
    shape. Updates of other ``products`` are left out; one of a product nobody knows (a
    ``st`` outside 1/2, which is also drift) is kept, with a null market, where USD-M is.
    """
    # Wrapping each array as an object lets one read_ndjson call parse the whole batch.
    wrapped = [b'{"updates":' + payload + b"}" for payload in batch.payloads]
    frames, rejects = lakeflow.read_ndjson(wrapped, FRAME)
    updates = (
        frames.explode("updates")
        .filter(pl.col("updates").is_not_null())  # an empty array is a quiet second
        .select(
            pl.col("_payload_index"),
            pl.col("updates").struct.json_encode().cast(pl.Binary).alias("json"),
            pl.col("updates").struct.field("s").alias("symbol"),
        )
        # Delivery contracts send "" and 0 for the funding they do not have: null them.
        .with_columns(
            pl.col("json")
            .cast(pl.String)
            .str.replace('"r":""', '"r":null', literal=True)
            .str.replace('"T":"0"', '"T":null', literal=True)
            .cast(pl.Binary)
        )
    )
    frame_of = updates["_payload_index"]
    inner = Batch(
        payloads=updates["json"].to_list(),
        received_at=batch.received_at.gather(frame_of.cast(pl.UInt32)),
    )
    decoded = lakeflow.decode_json(
        inner,
        FIELDS,
        constants={"exchange": "binance"},
        checks={f"event type is not {EVENT_TYPE!r}": FIELDS["event_type"].expr() != EVENT_TYPE},
        known=KNOWN,
    )
    # An update's reject becomes its frame's, naming the symbol (rare: only bad data).
    bad: dict[int, list[str]] = defaultdict(list)
    for index, reason in decoded.rejects:
        bad[int(frame_of[index])].append(f"{updates['symbol'][index]}: {reason}")
    rejects += [
        (frame, f"{len(r)} update(s) rejected: " + "; ".join(r)) for frame, r in bad.items()
    ]
    marked = pl.col("symbol_type")
    market = (
        pl.when(marked.is_in(list(SYMBOL_TYPES)))
        .then(marked.replace_strict(SYMBOL_TYPES, default=None))
        .when(marked.is_null() & pl.col("symbol").str.contains(COINM_MARK, literal=True))
        .then(pl.lit("coinm"))
        .when(marked.is_null())
        .then(pl.lit("usdm"))
    )
    rows = decoded.rows.with_columns(date=pl.col("event_time").dt.date(), market=market)
    kept = pl.col("market").is_in(list(products)).fill_null(False)
    if "usdm" in products:
        kept = kept | pl.col("market").is_null()
    rows = rows.filter(kept)
    if symbols:
        rows = rows.filter(pl.col("symbol").is_in(symbols))
    drift = [
        replace(d, example=None if d.example is None else int(frame_of[d.example]))
        for d in decoded.drift
    ]
    # The frames are what the runtime samples for keys: the updates' keys, at their level.
    return Decoded(
        rows=rows.select(list(MARK_PRICE.columns)),
        rejects=sorted(rejects),
        reads=decoded.reads,
        drift=drift,
    )


class BinanceMarkPriceSource(lakeflow.WebSocketSource):
    """Streams the mark price and funding rate of every Binance futures symbol."""

    type = "binance_markprice"
    schema = MARK_PRICE.name
    description = (
        "Binance futures mark prices and funding rates (!markPrice@arr stream), USD-M, "
        "COIN-M or both, each update routed by its own product."
    )
    Config = MarkPriceConfig
    # Binance closes every connection at 24 h: roll over to a fresh one 10 minutes early.
    max_age = 23 * 3600 + 50 * 60

    config: MarkPriceConfig

    def url(self) -> str:
        """The all-market stream URL of the configured speed."""
        return self.config.stream_url()

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames; see :func:`decode_frames`."""
        products = ("usdm", "coinm") if self.config.market == "all" else (self.config.market,)
        return decode_frames(batch, self.config.symbols, products)
