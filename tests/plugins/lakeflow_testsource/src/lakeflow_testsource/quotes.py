"""A quote stream that declares what it expects, for the drift specifications.

Frames look like ``{"symbol": "AAA", "side": "BUY", "n": 1, "value": "1.5"}``. The
decoder declares every field it reads, a domain for ``side`` (``BUY``/``SELL``), its
instrument column (``symbol``) and, when ``instruments_url`` is set, the instrument list
as a :class:`lakeflow.Reference`: so a key no field reads, a side outside the domain and
a symbol no list names are drift. Control frames (``{"event": ...}``) and a text
``pong`` are ignored, not data. Every payload is examined for keys (``key_sample = 1``).
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import Field as ConfigField

import lakeflow
from lakeflow import DECIMAL, TIMESTAMP, Batch, Decoded, Field, TableSchema

QUOTE = TableSchema(
    name="test_quote",
    table="test_quotes",
    columns={
        "source": pl.String(),
        "symbol": pl.String(),
        "side": pl.String(),
        "n": pl.Int64(),
        "value": DECIMAL,
        "received_at": TIMESTAMP,
    },
    partition_by=(),
    description="Test quotes: a symbol, a side and a numbered value.",
)

SIDES = ("BUY", "SELL")


class QuoteConfig(lakeflow.StreamingConfig):
    url: str = ConfigField(description="The WebSocket URL of the quote stand-in.")
    instruments_url: str | None = ConfigField(
        default=None, description="GET answering {'symbols': [{'symbol': ...}]}; unset: none."
    )
    reference_every: float = ConfigField(default=3600.0, gt=0, description="List refresh period.")
    early_every: float = ConfigField(
        default=60.0, ge=0, description="Least time between early reads."
    )
    side_on_drift: Literal["keep", "reject"] = ConfigField(
        default="keep", description="Where a row whose side is outside BUY/SELL goes."
    )


def parse_listing(body: Any) -> pl.DataFrame:
    """The instrument list's JSON body as a frame with a ``symbol`` column."""
    return pl.DataFrame(body["symbols"], schema={"symbol": pl.String()})


class QuoteSource(lakeflow.WebSocketSource):
    """Reads quote frames from ``url``; see the module."""

    type = "test_quotes"
    schema = "test_quote"
    description = "Test fixture: quote frames from a WebSocket URL, declared for drift."
    Config = QuoteConfig
    instrument_column = "symbol"
    key_sample = 1

    def __init__(self, name: str, config: lakeflow.SourceConfig) -> None:
        super().__init__(name, config)
        self.settings: QuoteConfig = config  # type: ignore[assignment]
        self.fields = {
            "symbol": Field("symbol", pl.String()),
            "side": Field("side", pl.String(), domain=SIDES, on_drift=self.settings.side_on_drift),
            "n": Field("n", pl.Int64()),
            "value": Field("value", DECIMAL),
        }

    def url(self) -> str:
        return self.settings.url

    def reference_data(self) -> list[lakeflow.Reference]:
        if self.settings.instruments_url is None:
            return []
        return [
            lakeflow.Reference(
                "instruments",
                url=self.settings.instruments_url,
                parse=parse_listing,
                every=self.settings.reference_every,
                early_every=self.settings.early_every,
                retry_every=0.5,
                within=2.0,
            )
        ]

    def decode(self, batch: Batch) -> Decoded:
        return lakeflow.decode_json(
            batch,
            self.fields,
            constants={"source": self.name},
            ignore=pl.col("event").is_not_null(),
            ignore_keys=("event",),
            ignore_payloads=(b"pong",),
        )
