"""The config of an ``okx_liquidations`` source, and the URLs and request it implies."""

from __future__ import annotations

import json

from pydantic import Field, field_validator

from lakeflow import Duration, StreamingConfig, base_url

#: OKX's public WebSocket: scheme, host and port (``ws_url`` replaces them), and the path.
WS_HOST = "wss://ws.okx.com:8443"
WS_PATH = "/ws/v5/public"
#: OKX's REST API (``rest_url`` replaces it), and where the instrument list is.
REST_HOST = "https://www.okx.com"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
#: The channel; one subscription per instrument type carries every instrument of it.
CHANNEL = "liquidation-orders"
#: The instrument types this source follows: their ``sz`` is in contracts of ``ctVal``.
INST_TYPES = ("SWAP", "FUTURES")
#: Types the channel carries too, whose ``sz`` is not a number of ``ctVal`` contracts:
#: this source could not size their rows the way the shared schema means.
UNSIZED_TYPES = ("MARGIN", "OPTION")
#: Seconds between re-reads of the instrument list (a new listing is sized within this,
#: its rows before it stored unsized); two requests, far within OKX's 20 per 2 s.
REFRESH_INTERVAL = 300.0
#: How long silence is normal. Perpetual swaps of every instrument liquidate minutes
#: apart on the quietest days; delivery futures alone are far quieter.
SILENCE_TIMEOUT = {"SWAP": 600.0, "FUTURES": 3600.0}

#: Path parts the source appends itself: a ``ws_url`` ending in one would double them.
_WS_PATH_WORDS = frozenset({"ws", "v5", "public", "private", "business"})


def _all_types() -> list[str]:
    """Every supported instrument type: the default of ``inst_types``."""
    return list(INST_TYPES)


class OkxLiquidationsConfig(StreamingConfig):
    """``[sources.NAME]`` keys of an ``okx_liquidations`` source."""

    inst_types: list[str] = Field(
        default_factory=_all_types,
        description=(
            'Instrument types to follow, as OKX writes them: "SWAP" (perpetual swaps) and '
            '"FUTURES" (delivery futures). Each is one subscription that carries every '
            "instrument of that type."
        ),
    )
    ws_url: str | None = Field(
        default=None,
        description=(
            "Replaces the scheme, host and port, wss://ws.okx.com:8443, with a proxy or a "
            "test server; the path /ws/v5/public is appended to it."
        ),
    )
    rest_url: str | None = Field(
        default=None,
        description=(
            "Replaces https://www.okx.com, where the instrument list (contract values, "
            "linear or inverse) is read from /api/v5/public/instruments."
        ),
    )
    refresh_interval: Duration = Field(
        default=REFRESH_INTERVAL,
        gt=0,
        description=(
            "Seconds between re-reads of the instrument list, so that a new listing is "
            "sized (default 300)."
        ),
    )

    @field_validator("inst_types")
    @classmethod
    def _check_inst_types(cls, types: list[str]) -> list[str]:
        if not types:
            raise ValueError(
                f"names no instrument type; follow {' and '.join(INST_TYPES)}, or leave the "
                "key out for both"
            )
        unsized = [t for t in types if t.upper() in UNSIZED_TYPES]
        if unsized:
            names = ", ".join(map(repr, dict.fromkeys(t.upper() for t in unsized)))
            raise ValueError(
                f"{names} not supported: OKX's {CHANNEL} channel carries them, but their sz "
                "is not a number of ctVal contracts as it is for SWAP and FUTURES, so their "
                "rows could not be sized (base_quantity, notional) the way the liquidations "
                f"table means; follow {' and '.join(INST_TYPES)}"
            )
        unknown = [t for t in types if t not in INST_TYPES]
        if unknown:
            raise ValueError(
                f"not OKX instrument types: {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(map(repr, INST_TYPES))}, in upper case as OKX writes them"
            )
        return list(dict.fromkeys(types))

    @field_validator("ws_url")
    @classmethod
    def _check_ws_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return base_url(
            url, schemes=("ws", "wss"), example=WS_HOST, appended=WS_PATH, reserved=_WS_PATH_WORDS
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
            reserved=("api",),
        )

    def stream_url(self) -> str:
        """The public WebSocket URL: ``wss://ws.okx.com:8443/ws/v5/public`` or its stand-in."""
        return f"{self.ws_url or WS_HOST}{WS_PATH}"

    def instruments_url(self) -> str:
        """Where the instrument list is read (``?instType=...`` is added per type)."""
        return f"{self.rest_url or REST_HOST}{INSTRUMENTS_PATH}"

    def subscribe_message(self) -> str:
        """The one request that subscribes every configured type."""
        args = [{"channel": CHANNEL, "instType": inst_type} for inst_type in self.inst_types]
        return json.dumps({"op": "subscribe", "args": args}, separators=(",", ":"))

    def default_silence_timeout(self) -> float:
        """Seconds without a frame that are normal: the shortest of the types followed."""
        return min(SILENCE_TIMEOUT[t] for t in self.inst_types)
