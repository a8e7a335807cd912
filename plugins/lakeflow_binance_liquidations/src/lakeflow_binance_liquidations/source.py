"""The ``binance_liquidations`` source: Binance futures ``forceOrder`` events over WebSocket."""

from __future__ import annotations

from typing import ClassVar

import polars as pl

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
from lakeflow_binance_liquidations.config import LiquidationsConfig
from lakeflow_binance_liquidations.schema import LIQUIDATION

EVENT_TYPE = "forceOrder"


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
        "Binance futures liquidation orders (forceOrder WebSocket stream), USD-M or COIN-M."
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

    def url(self) -> str:
        """The preferred URL: the all-market stream, or the combined stream of the symbols."""
        return self.config.stream_url()

    def urls(self) -> list[str]:
        """The stream under each configured route (Binance's ``/market`` routing first)."""
        return self.config.stream_urls()

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames in one vectorized pass; bad frames become rejects."""
        return decode_json(
            batch,
            self._fields,
            constants=self._constants,
            ignore=self._ignore,
            ignore_keys=("id",),
            checks=self._checks,
            derive={"date": pl.col("trade_time").dt.date()},
            columns=list(LIQUIDATION.columns),
        )
