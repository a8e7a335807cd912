"""The ``binance_liquidations`` source: Binance futures ``forceOrder`` events over WebSocket.

Since 2026-06-30 the all-market stream of either futures host carries USDⓈ-M and COIN-M
events alike, each marked by ``st`` (1 = USDⓈ-M, 2 = COIN-M; inside ``o`` on the wire,
at the top level in Binance's SDK models: both are read). Every event is routed by its
own product, whichever host delivered it: a source keeps the products its ``market``
names, and sizes each row by its product's rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import polars as pl
from lakeflow_market_schemas import (
    LIQUIDATION,
    decimal_product,
    decimal_quotient,
    position_from_order_side,
)

from lakeflow import (
    DECIMAL,
    TIMESTAMP,
    Batch,
    Decoded,
    Field,
    Reference,
    SourceConfig,
    WebSocketSource,
    decode_json,
)
from lakeflow_binance_liquidations.config import (
    CONTRACTS_REFRESH,
    FUTURES_BUDGET,
    LiquidationsConfig,
)
from lakeflow_binance_liquidations.legacy import USDM_QUOTE

EVENT_TYPE = "forceOrder"
#: ``st``, the symbol type Binance marks each event of the merged streams with.
SYMBOL_TYPES: dict[str, str] = {"1": "usdm", "2": "coinm"}
#: What marks a COIN-M symbol: a coin against USD, then ``_PERP`` or a delivery date
#: (``BTCUSD_PERP``, ``ETHUSD_260327``). USDⓈ-M delivery futures carry ``_`` too
#: (``BTCUSDT_260327``), so ``_`` alone does not tell the products apart; ``USD_`` does,
#: and a literal search costs a fraction of a pattern's on every row.
COINM_MARK = "USD_"
#: How far from its receipt an event's times are plausible: Binance stamps ``E`` about a
#: second after ``T``; a day back covers a replayed spool's clock, an hour ahead a skew.
PLAUSIBLE = (timedelta(days=1), timedelta(hours=1))
#: The values Binance documents for an order's side, type, time in force and status.
SIDES = ("BUY", "SELL")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
ORDER_STATUSES = (
    "NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "REJECTED",
    "EXPIRED",
    "EXPIRED_IN_MATCH",
)
#: An empty table of contract sizes: what a COIN-M source knows before its first read.
NO_CONTRACTS = pl.DataFrame(schema={"symbol": pl.String(), "contract_size": DECIMAL})


def event_fields(*, combined: bool) -> dict[str, Field]:
    """Where each column sits in a ``forceOrder`` frame, and what it may hold.

    A combined stream wraps every event as ``{"stream": ..., "data": {event}}``, so the
    same fields then sit under ``data``. ``event_type`` is read only to check it; ``st``
    and ``ps`` are read in both places Binance has put them.
    """
    prefix = "data." if combined else ""

    def at(path: str, dtype: pl.DataType, **options: Any) -> Field:
        return Field(prefix + path, dtype, **options)

    return {
        "event_type": at("e", pl.String()),
        "event_time": at("E", TIMESTAMP, epoch="ms", window=PLAUSIBLE),
        "symbol": at("o.s", pl.String()),
        "pair": at("o.ps", pl.String(), required=False),
        "pair_top": at("ps", pl.String(), required=False),
        "symbol_type": at("o.st", pl.String(), required=False, domain=SYMBOL_TYPES),
        "symbol_type_top": at("st", pl.String(), required=False, domain=SYMBOL_TYPES),
        "side": at("o.S", pl.String(), domain=SIDES),
        "order_type": at("o.o", pl.String(), domain=ORDER_TYPES),
        "time_in_force": at("o.f", pl.String(), domain=TIME_IN_FORCE),
        "quantity": at("o.q", DECIMAL),
        "price": at("o.p", DECIMAL),
        "average_price": at("o.ap", DECIMAL),
        "status": at("o.X", pl.String(), domain=ORDER_STATUSES),
        "last_filled_quantity": at("o.l", DECIMAL),
        "filled_quantity": at("o.z", DECIMAL),
        "trade_time": at("o.T", TIMESTAMP, epoch="ms", window=PLAUSIBLE),
    }


def product_of(
    marked: pl.Expr, symbol: pl.Expr, listed: dict[str, pl.DataFrame | None] | None = None
) -> pl.Expr:
    """The product of each event: ``"usdm"``, ``"coinm"`` or null (cannot be told).

    ``marked`` is its ``st``: 1 or 2 decides. Otherwise the instrument lists decide (when
    read): a frame from before the merge carries no ``st``, and a ``st`` outside 1/2
    (also drift) may still name a listed symbol. A frame without ``st`` that no list
    names goes by its symbol's shape (the merge's frames all carry it); an unknown ``st``
    on an unlisted symbol is a product nobody knows: null, and left unsized.
    """
    product: Any = pl.when(marked.is_in(list(SYMBOL_TYPES))).then(
        marked.replace_strict(SYMBOL_TYPES, default=None)
    )
    for name, frame in (listed or {}).items():
        if frame is not None and frame.height:
            product = product.when(symbol.is_in(frame["symbol"].implode())).then(pl.lit(name))
    return (
        product.when(marked.is_null() & symbol.str.contains(COINM_MARK, literal=True))
        .then(pl.lit("coinm"))
        .when(marked.is_null())
        .then(pl.lit("usdm"))
        .otherwise(pl.lit(None, dtype=pl.String()))
    )


class BinanceLiquidationsSource(WebSocketSource):
    """Streams Binance futures liquidation orders into the ``liquidation`` schema.

    Binance pushes at most one liquidation per symbol per second (the largest of that
    second, since 2026-04-10) and keeps no history, so what is not received live is
    gone: the runtime records every disconnection in ``_gaps``.
    """

    type = "binance_liquidations"
    schema = LIQUIDATION.name
    description = (
        "Binance futures liquidation orders (forceOrder WebSocket stream), USD-M, COIN-M or "
        "both, each event routed and sized by its own product. A sample: Binance pushes at "
        "most the largest liquidation per symbol per second."
    )
    Config = LiquidationsConfig
    # Binance closes every connection at 24 h: roll over to a fresh one 10 minutes early.
    max_age: ClassVar[float | None] = 23 * 3600 + 50 * 60
    instrument_column: ClassVar[str | None] = "symbol"

    config: LiquidationsConfig

    def __init__(self, name: str, config: SourceConfig) -> None:
        if not isinstance(config, LiquidationsConfig):
            raise TypeError(f"{type(self).__name__} needs a LiquidationsConfig, not {config!r}")
        super().__init__(name, config)
        self._fields = event_fields(combined=config.combined)
        event_type = self._fields["event_type"].expr()
        # Replies to requests ({"result": null, "id": 1}, {"error": {...}, "id": 2}) are
        # never wrapped, carry an id and no event: not data, so counted, not dead letters.
        self._reply = event_type.is_null() & pl.col("id").is_not_null()
        self._checks = {f"event type is not {EVENT_TYPE!r}": event_type != EVENT_TYPE}
        self._known = ("stream",) if config.combined else ()

    def reference_data(self) -> list[Reference]:
        """Each kept product's instrument list (``exchangeInfo``), hourly, on the shared
        fapi + dapi weight budget: USD-M's names its symbols, COIN-M's sizes contracts."""
        parse = {"usdm": usdm_instruments, "coinm": coinm_instruments}
        return [
            Reference(
                product,
                url=self.config.exchange_info_url(product),
                parse=parse[product],
                every=CONTRACTS_REFRESH,
                budget=FUTURES_BUDGET,
                weight=1.0,
            )
            for product in self.config.products
        ]

    @property
    def contracts(self) -> pl.DataFrame:
        """COIN-M contract sizes by symbol, from the current instrument list."""
        listed = self.reference("coinm") if "coinm" in self.config.products else None
        return NO_CONTRACTS if listed is None else listed.select("symbol", "contract_size")

    def describe(self) -> list[str]:
        """Which products are kept, from which host (``lakeflow validate``)."""
        names = {"usdm": "USD-M", "coinm": "COIN-M"}
        kept = " and ".join(names[p] for p in self.config.products)
        host = self.config.stream_url().split("://", 1)[-1].split("/", 1)[0]
        how = (
            "named symbols' streams"
            if self.config.combined
            else "the all-market stream, each event routed by its st"
        )
        return [f"keeps: {kept} liquidations from {host} ({how})"]

    def url(self) -> str:
        """The preferred URL: the all-market stream, or the combined stream of the symbols."""
        return self.config.stream_url()

    def urls(self) -> list[str]:
        """The stream under each configured route, in the market's documented order."""
        return self.config.stream_urls()

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames in one vectorized pass; bad frames become rejects.

        Each event's product comes from ``st`` (see :func:`product_of`); an event of a
        product this source does not keep is ignored (another source, or none, keeps
        it). An event whose product cannot be told is kept by a source of USD-M (the
        stream's own product before the merge) and left unsized. ``side`` is the
        liquidation order's: ``SELL`` closes a long. USD-M quantities are base units
        (notional: ``z * ap`` in the symbol's quote asset); COIN-M's are contracts
        (notional: ``z * contractSize`` USD, base: notional / ``ap``). ``z`` is the
        filled quantity: Binance's ``l`` is not the liquidated size, and ``q``
        overstates an order filled in part.
        """
        listed = {p: self.reference(p) for p in self.config.products}
        fields = self._fields
        marked = pl.coalesce(fields["symbol_type"].expr(), fields["symbol_type_top"].expr())
        product = product_of(marked, fields["symbol"].expr(), listed)
        keeps = product.is_in(list(self.config.products)).fill_null(False)
        if "usdm" in self.config.products:
            # A product nobody knows: kept (unsized) by a source of the stream's own
            # product before the merge, so that it is stored once, never dropped.
            keeps = keeps | product.is_null()
        decoded = decode_json(
            batch,
            self._fields,
            constants={"exchange": "binance"},
            ignore=self._reply | (~self._reply.fill_null(False) & ~keeps),
            ignore_keys=("id",),
            checks=self._checks,
            known=self._known,
            derive={
                "date": pl.col("trade_time").dt.date(),
                "position_side": position_from_order_side(pl.col("side")),
                "pair": pl.coalesce("pair", "pair_top"),
                "market": product_of(
                    pl.coalesce("symbol_type", "symbol_type_top"), pl.col("symbol"), listed
                ),
            },
        )
        # A USD-M-only source sizes nothing by contracts: no join for it.
        contracts = self.contracts if "coinm" in self.config.products else None
        decoded.rows = sized(decoded.rows, contracts)
        return decoded


def sized(rows: pl.DataFrame, contracts: pl.DataFrame | None) -> pl.DataFrame:
    """The rows sized by their ``market``, in schema order.

    USD-M: the quantity is in base units and the notional in the symbol's quote asset.
    COIN-M: contracts * contract size is a USD notional, null for a symbol the list does
    not (yet) name (``contracts`` None: a source that keeps no COIN-M). A product nobody
    knows (null) is left unsized: never a guess.
    """
    usdm, coinm = pl.col("market") == "usdm", pl.col("market") == "coinm"
    filled, average = pl.col("filled_quantity"), pl.col("average_price")
    lazy = rows.lazy()
    if contracts is None:
        lazy = lazy.with_columns(contract_size=pl.lit(None, dtype=DECIMAL))
    else:
        lazy = lazy.join(contracts.lazy(), on="symbol", how="left", maintain_order="left")
    return (
        lazy.with_columns(
            notional=pl.when(usdm)
            .then(decimal_product(filled, average))
            .when(coinm)
            .then(decimal_product(filled, pl.col("contract_size")))
            .cast(DECIMAL)
        )
        .with_columns(
            base_quantity=pl.when(usdm)
            .then(filled)
            .when(coinm)
            .then(decimal_quotient(pl.col("notional"), average))
            .cast(DECIMAL),
            notional_currency=pl.when(usdm)
            .then(pl.col("symbol").str.extract(USDM_QUOTE, 1))
            .when(coinm & pl.col("notional").is_not_null())
            .then(pl.lit("USD")),
        )
        .select(list(LIQUIDATION.columns))
        .collect(optimizations=pl.QueryOptFlags.none())
    )


def usdm_instruments(exchange_info: Any) -> pl.DataFrame:
    """``symbol``, ``pair``, ``status``, ``quote_asset`` from ``fapi/v1/exchangeInfo``."""
    return _symbols(
        exchange_info,
        {"symbol": "symbol", "pair": "pair", "status": "status", "quote_asset": "quoteAsset"},
    )


def coinm_instruments(exchange_info: Any) -> pl.DataFrame:
    """``symbol``, ``pair``, ``status``, ``contract_size`` from ``dapi/v1/exchangeInfo``.

    COIN-M names its trading status ``contractStatus`` (USD-M: ``status``).
    """
    frame = _symbols(
        exchange_info,
        {
            "symbol": "symbol",
            "pair": "pair",
            "status": "contractStatus",
            "contract_size": "contractSize",
        },
    )
    return frame.with_columns(pl.col("contract_size").cast(DECIMAL, strict=False))


def contract_sizes(exchange_info: Any) -> pl.DataFrame:
    """``symbol`` → ``contract_size`` from a ``dapi/v1/exchangeInfo`` body."""
    return coinm_instruments(exchange_info).select("symbol", "contract_size").drop_nulls()


def _symbols(exchange_info: Any, keys: dict[str, str]) -> pl.DataFrame:
    symbols = exchange_info.get("symbols") if isinstance(exchange_info, dict) else None
    if not isinstance(symbols, list) or not symbols:
        raise ValueError("exchangeInfo lists no symbols")
    listed = [s for s in symbols if isinstance(s, dict) and s.get("symbol")]
    return pl.DataFrame(
        {
            column: [None if s.get(key) is None else str(s.get(key)) for s in listed]
            for column, key in keys.items()
        },
        schema={column: pl.String() for column in keys},
    ).unique("symbol", keep="first", maintain_order=True)
