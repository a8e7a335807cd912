"""The ``binance_liquidations`` source: Binance futures ``forceOrder`` events over WebSocket."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl
from lakeflow_market_schemas import (
    BINANCE_USDM_QUOTE,
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
    SourceConfig,
    WebSocketSource,
    decode_json,
)
from lakeflow_binance_liquidations.config import CONTRACTS_REFRESH, LiquidationsConfig

if TYPE_CHECKING:
    from lakeflow.sources.websocket import WebSocket

EVENT_TYPE = "forceOrder"
#: An empty table of contract sizes: what a COIN-M source knows before its first fetch.
#: Seconds before a failed refresh is tried again.
RETRY_REFRESH = 60.0
NO_CONTRACTS = pl.DataFrame(schema={"symbol": pl.String(), "contract_size": DECIMAL})


def event_fields(*, combined: bool, pair_required: bool) -> dict[str, Field]:
    """Where each column sits in a ``forceOrder`` frame.

    A combined stream wraps every event as ``{"stream": ..., "data": {event}}``, so the
    same fields then sit under ``data``. ``event_type`` is read only to check it.
    """
    prefix = "data." if combined else ""

    def at(path: str, dtype: pl.DataType, **options: object) -> Field:
        return Field(prefix + path, dtype, **options)  # type: ignore[arg-type]

    return {
        "event_type": at("e", pl.String()),
        "event_time": at("E", TIMESTAMP, epoch="ms"),
        "symbol": at("o.s", pl.String()),
        "pair": at("o.ps", pl.String(), required=pair_required),
        "side": at("o.S", pl.String()),
        "order_type": at("o.o", pl.String()),
        "time_in_force": at("o.f", pl.String()),
        "quantity": at("o.q", DECIMAL),
        "price": at("o.p", DECIMAL),
        "average_price": at("o.ap", DECIMAL),
        "status": at("o.X", pl.String()),
        "last_filled_quantity": at("o.l", DECIMAL),
        "filled_quantity": at("o.z", DECIMAL),
        "trade_time": at("o.T", TIMESTAMP, epoch="ms"),
    }


class BinanceLiquidationsSource(WebSocketSource):
    """Streams Binance USD-M or COIN-M liquidation orders into the ``liquidation`` schema.

    Binance pushes at most the latest liquidation per symbol each second and keeps no
    history, so what is not received live is gone: the runtime records every
    disconnection in ``_gaps``.
    """

    type = "binance_liquidations"
    schema = LIQUIDATION.name
    description = (
        "Binance futures liquidation orders (forceOrder WebSocket stream), USD-M or COIN-M. "
        "A sample: Binance pushes at most the latest liquidation per symbol per second."
    )
    Config = LiquidationsConfig
    # Binance closes every connection at 24 h: roll over to a fresh one 10 minutes early.
    max_age: ClassVar[float | None] = 23 * 3600 + 50 * 60

    config: LiquidationsConfig

    def __init__(self, name: str, config: SourceConfig) -> None:
        if not isinstance(config, LiquidationsConfig):
            raise TypeError(f"{type(self).__name__} needs a LiquidationsConfig, not {config!r}")
        super().__init__(name, config)
        self._fields = event_fields(
            combined=config.combined, pair_required=config.market == "coinm"
        )
        event_type = self._fields["event_type"].expr()
        # Replies to requests ({"result": null, "id": 1}, {"error": {...}, "id": 2}) are
        # never wrapped, carry an id and no event: not data, so counted, not dead letters.
        self._ignore = event_type.is_null() & pl.col("id").is_not_null()
        self._checks = {f"event type is not {EVENT_TYPE!r}": event_type != EVENT_TYPE}
        self._constants = {"exchange": "binance", "market": config.market}
        self.silence_timeout = config.silence_timeout
        #: COIN-M contract sizes by symbol; replaced whole by each refresh (the decoder
        #: thread reads whichever table is current).
        self.contracts = NO_CONTRACTS
        #: time.monotonic() of the last successful refresh (0: none yet).
        self._refreshed_at = 0.0

    async def prepare(self) -> None:
        """COIN-M: fetch the contract sizes, so that even replayed rows get a notional."""
        await self.refresh_contracts()

    async def refresh_contracts(self) -> None:
        """Read ``contractSize`` per symbol from COIN-M's exchangeInfo (USD-M: nothing)."""
        url = self.config.exchange_info_url()
        if url is None:
            return
        self.contracts = contract_sizes(await self.fetch_json(url))
        self._refreshed_at = time.monotonic()
        self.log.info("contract sizes of %d COIN-M symbols read", self.contracts.height)

    async def while_open(self, ws: WebSocket) -> None:
        """COIN-M: refresh the contract sizes hourly, so that new listings get a notional.

        The schedule is the source's, not the connection's: a stream that reconnects
        more often than hourly still refreshes on time.
        """
        if self.config.exchange_info_url() is None:
            return
        while True:
            due = self._refreshed_at + CONTRACTS_REFRESH if self._refreshed_at else 0.0
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                await self.refresh_contracts()
            except Exception as exc:  # the stream goes on; rows stay unsized until it works
                # A 429 or 418 (a ban, 2 minutes to 3 days) says how long in Retry-After;
                # asking sooner is what makes Binance ban, and ban longer.
                wait = max(RETRY_REFRESH, getattr(exc, "retry_after", None) or 0.0)
                self.log.warning(
                    "could not refresh COIN-M contract sizes: %s; trying again in %.0fs",
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)

    def url(self) -> str:
        """The preferred URL: the all-market stream, or the combined stream of the symbols."""
        return self.config.stream_url()

    def urls(self) -> list[str]:
        """The stream under each configured route (Binance's ``/market`` routing first)."""
        return self.config.stream_urls()

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames in one vectorized pass; bad frames become rejects.

        ``side`` is the liquidation order's: ``SELL`` closes a long. USD-M quantities are
        base units (notional: ``z * ap``, what was executed, in the symbol's quote asset);
        COIN-M's are contracts (notional: ``z * contractSize`` USD, base: notional / ``ap``).
        ``z`` is the filled quantity: Binance's ``l`` is not the liquidated size, and ``q``
        overstates an order filled in part.
        """
        coinm = self.config.market == "coinm"
        decoded = decode_json(
            batch,
            self._fields,
            constants=self._constants,
            ignore=self._ignore,
            ignore_keys=("id",),
            checks=self._checks,
            derive={
                "date": pl.col("trade_time").dt.date(),
                "position_side": position_from_order_side(pl.col("side")),
                **({} if coinm else usdm_sizes()),
            },
            columns=None if coinm else list(LIQUIDATION.columns),
        )
        if coinm:
            decoded.rows = coinm_sizes(decoded.rows, self.contracts)
        return decoded


def usdm_sizes() -> dict[str, pl.Expr]:
    """USD-M: the quantity is in base units; the notional is in the symbol's quote asset."""
    return {
        "base_quantity": pl.col("filled_quantity"),
        "notional": decimal_product(pl.col("filled_quantity"), pl.col("average_price")),
        "notional_currency": pl.col("symbol").str.extract(BINANCE_USDM_QUOTE, 1),
    }


def coinm_sizes(rows: pl.DataFrame, contracts: pl.DataFrame) -> pl.DataFrame:
    """COIN-M: contracts * contract size is a USD notional; null for an unknown symbol."""
    notional = decimal_product(pl.col("filled_quantity"), pl.col("contract_size"))
    return (
        rows.lazy()
        .join(contracts.lazy(), on="symbol", how="left", maintain_order="left")
        .with_columns(notional=notional)
        .with_columns(
            base_quantity=decimal_quotient(pl.col("notional"), pl.col("average_price")),
            notional_currency=pl.when(pl.col("notional").is_not_null()).then(pl.lit("USD")),
        )
        .select(list(LIQUIDATION.columns))
        .collect()
    )


def contract_sizes(exchange_info: Any) -> pl.DataFrame:
    """``symbol`` → ``contract_size`` from a ``dapi/v1/exchangeInfo`` body."""
    symbols = exchange_info.get("symbols", []) if isinstance(exchange_info, dict) else []
    if not symbols:
        raise ValueError("exchangeInfo lists no symbols")
    return (
        pl.DataFrame(
            {
                "symbol": [str(s.get("symbol")) for s in symbols],
                "contract_size": [str(s.get("contractSize")) for s in symbols],
            },
            schema={"symbol": pl.String(), "contract_size": pl.String()},
        )
        .with_columns(pl.col("contract_size").cast(DECIMAL, strict=False))
        .drop_nulls()
    )
