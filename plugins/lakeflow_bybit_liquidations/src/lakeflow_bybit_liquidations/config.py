"""The config of a ``bybit_liquidations`` source, and the URLs it implies."""

from __future__ import annotations

import re
import zlib
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lakeflow import Duration, StreamingConfig, base_url

#: Bybit's public WebSocket host; a category's stream is ``/v5/public/<category>`` under it.
WS_HOST = "wss://stream.bybit.com"
#: Bybit's REST host, where the instrument list is read.
REST_HOST = "https://api.bybit.com"
WS_PATH = "/v5/public/{category}"
INSTRUMENTS_PATH = "/v5/market/instruments-info"
#: The topic of one symbol's liquidations. There is no all-market topic.
TOPIC = "allLiquidation."
#: Topics per subscribe request: Bybit's documentation calls 10 safe.
SUBSCRIBE_BATCH = 10
#: Bybit refuses more than this many characters of ``args`` on one public connection
#: (the topics' JSON strings): about 800 ``allLiquidation`` topics.
ARGS_LIMIT = 21_000
#: How long silence is normal when every symbol of a category is followed. Linear
#: contracts (hundreds of USDT/USDC perpetuals) see a liquidation every few seconds even
#: on quiet days; inverse contracts far fewer. Named symbols are not judged by default:
#: one symbol may go hours without a liquidation.
ALL_SYMBOLS_SILENCE: dict[str, float] = {"linear": 300.0, "inverse": 3600.0}

_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9-]*")
#: Path parts the source appends itself: a ``ws_url`` ending in one would double them.
_PATH_WORDS = frozenset({"v5", "public", "linear", "inverse", "spot", "option"})


class BybitLiquidationsConfig(StreamingConfig):
    """``[sources.NAME]`` keys of a ``bybit_liquidations`` source."""

    category: Literal["linear", "inverse"] = Field(
        default="linear",
        description=(
            '"linear" (USDT and USDC contracts, sizes in the base coin) or "inverse" '
            "(coin-margined contracts, sizes in contracts of 1 USD)."
        ),
    )
    symbols: list[str] = Field(
        default_factory=list,
        description=(
            "Symbols to follow, as Bybit writes them (BTCUSDT, ETHPERP, BTCUSD). Empty: "
            'every symbol of the category whose instruments-info status is "Trading", '
            "re-read every refresh_interval so that new listings are followed."
        ),
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=16,
        description=(
            "Split every-symbol mode over this many sources, each its own connection: "
            "Bybit takes at most 21,000 characters of topics on one connection (about 800 "
            "symbols). Give each source the same shards and its own shard."
        ),
    )
    shard: int = Field(
        default=0,
        ge=0,
        description=(
            "Which part of the symbols this source follows, 0 to shards - 1 (by a hash of "
            "the symbol, so a new listing does not move the others)."
        ),
    )
    ws_url: str | None = Field(
        default=None,
        description=(
            "Replaces the scheme and host, wss://stream.bybit.com, with a testnet "
            "(wss://stream-testnet.bybit.com), a proxy or a test server; "
            "/v5/public/<category> is appended to it."
        ),
    )
    rest_url: str | None = Field(
        default=None,
        description=(
            "Replaces https://api.bybit.com, where the instrument list "
            "(/v5/market/instruments-info) is read: a testnet, a proxy, a test server."
        ),
    )
    # Five minutes: a new listing's first hour is when it liquidates most, and what is
    # not subscribed is lost; one read is a page or two of Bybit's 600 requests / 5 s.
    refresh_interval: Duration = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds between reads of the instrument list, on the source's own schedule "
            "(reconnects neither hasten nor delay it): new listings are subscribed "
            "(every-symbol mode) and get their quote coin."
        ),
    )

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, symbols: list[str]) -> list[str]:
        bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
        if bad:
            raise ValueError(
                f"not Bybit symbols: {', '.join(map(repr, bad))}; write each as Bybit lists "
                "it in instruments-info: upper-case letters, digits and '-' (BTCUSDT, "
                "BTC-26DEC25), without the 'allLiquidation.' topic prefix"
            )
        return list(dict.fromkeys(symbols))

    @field_validator("ws_url")
    @classmethod
    def _check_ws_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return base_url(
            url,
            schemes=("ws", "wss"),
            example=WS_HOST,
            appended="/v5/public/<category>",
            reserved=_PATH_WORDS,
            hint="choose the stream with `category`",
        )

    @field_validator("rest_url")
    @classmethod
    def _check_rest_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return base_url(
            url,
            schemes=("http", "https"),
            example=REST_HOST,
            appended=INSTRUMENTS_PATH,
            reserved=("v5", "market", "instruments-info"),
        )

    @property
    def all_symbols(self) -> bool:
        """True when the source follows every trading symbol of the category."""
        return not self.symbols

    @model_validator(mode="after")
    def _check_shard(self) -> BybitLiquidationsConfig:
        if self.shard >= self.shards:
            raise ValueError(f"shard must be below shards ({self.shards}): 0 to {self.shards - 1}")
        if self.shards > 1 and self.symbols:
            raise ValueError("shards splits every-symbol mode; with symbols, list each source's")
        return self

    def in_shard(self, symbol: str) -> bool:
        """True when this source follows ``symbol`` (always, unless ``shards`` > 1)."""
        return self.shards == 1 or zlib.crc32(symbol.encode()) % self.shards == self.shard

    def stream_url(self) -> str:
        """The category's public stream: ``wss://stream.bybit.com/v5/public/linear``."""
        return f"{self.ws_url or WS_HOST}{WS_PATH.format(category=self.category)}"

    def instruments_url(self) -> str:
        """Where the instrument list is: ``https://api.bybit.com/v5/market/instruments-info``."""
        return f"{self.rest_url or REST_HOST}{INSTRUMENTS_PATH}"

    def default_silence_timeout(self) -> float | None:
        """Seconds without a payload that are normal for this stream (None: not judged)."""
        return ALL_SYMBOLS_SILENCE[self.category] if self.all_symbols else None
