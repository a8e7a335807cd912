"""The ``okx_liquidations`` source: OKX v5 ``liquidation-orders`` over WebSocket."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

import polars as pl
from lakeflow_market_schemas import LIQUIDATION, position_from_order_side

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
from lakeflow_okx_liquidations.config import CHANNEL, INST_TYPES, OkxLiquidationsConfig
from lakeflow_okx_liquidations.instruments import (
    NO_INSTRUMENTS,
    Fetch,
    fetch_instruments,
    sized,
)

if TYPE_CHECKING:
    from lakeflow import WebSocket

EXCHANGE = "okx"
#: The name of the instrument list among the source's reference data.
INSTRUMENTS = "instruments"
#: ``data[]`` holds one element per instrument, each one's ``details[]`` its events.
EXPLODE = ("data", "data.details")
#: The values OKX documents for each enumeration read. A value outside is kept as sent
#: and reported as drift: the instrument types the channel carries (this source stores
#: only SWAP and FUTURES, see CHECKS), the order's side, and the liquidated position's
#: side (``""``, like ``net``, read as one-way mode: the side tells).
DOCUMENTED_INST_TYPES = ("SWAP", "FUTURES", "MARGIN", "OPTION")
SIDES = ("buy", "sell")
POSITION_SIDES = ("long", "short", "net", "")
#: Where each column sits in a frame, once both arrays are exploded. ``channel`` and
#: ``inst_type`` are read to check them (``inst_type`` also gives ``market``).
FIELDS: dict[str, Field] = {
    "channel": Field("arg.channel", pl.String()),
    "inst_type": Field("data.instType", pl.String(), domain=DOCUMENTED_INST_TYPES),
    "symbol": Field("data.instId", pl.String()),
    "side": Field("data.details.side", pl.String(), domain=SIDES),
    # The liquidated position; "net" in one-way mode, where `side` tells.
    "pos_side": Field("data.details.posSide", pl.String(), required=False, domain=POSITION_SIDES),
    "quantity": Field("data.details.sz", DECIMAL),
    "price": Field("data.details.bkPx", DECIMAL),
    "trade_time": Field("data.details.ts", TIMESTAMP, epoch="ms"),
}
#: Keys of a data frame that OKX sends and the decoder leaves unread on purpose: the
#: subscription's ``instType`` (each element says its own), the instrument family and
#: its older name ``uly`` (``instId`` names the instrument), and each event's
#: bankruptcy loss and margin currency (not in the shared schema). Any other key is drift.
KNOWN = (
    "arg.instType",
    "data.instFamily",
    "data.uly",
    "data.details.bkLoss",
    "data.details.ccy",
)
#: Events that are not data and need no one's attention: the subscribe acknowledgement,
#: and a notice (64008: "The connection will soon be closed for a service upgrade"),
#: after which OKX closes the connection and the source reconnects as after any close.
ACKS = ("subscribe", "notice")
#: Text frames that are not JSON by design: the answer to our ``ping``.
PONG = b"pong"
#: The reason a frame that is an OKX event (an ``error``, a ``notice``) is rejected for;
#: the decoder then replaces it with the event's own code and message.
EVENT_REASON = "an OKX event, not a liquidation"

_event = pl.col("event")
_element = pl.col("data")
CHECKS: dict[str, pl.Expr] = {
    EVENT_REASON: _event.is_not_null(),
    f"channel is not {CHANNEL!r}": FIELDS["channel"].expr() != CHANNEL,
    # MARGIN and OPTION are OKX's too (no drift), but not sized by ctVal: not stored.
    f"instType is not {' or '.join(INST_TYPES)}": ~_element.struct.field("instType").is_in(
        INST_TYPES
    ),
}
IGNORE = _event.is_in(ACKS)


def position_side() -> pl.Expr:
    """``posSide`` when it names the position; in one-way mode (``net``) from the order's side.

    A ``posSide`` OKX does not document (drift) gives no position: null, never a guess.
    """
    pos = pl.col("pos_side")
    from_side = position_from_order_side(pl.col("side"))
    return (
        pl.when(pos.is_in(["long", "short"]))
        .then(pos)
        .when(pos.is_null() | pos.is_in(["net", ""]))
        .then(from_side)
    )


class OkxLiquidationsSource(WebSocketSource):
    """Streams OKX SWAP and FUTURES liquidation orders into the ``liquidation`` schema.

    One connection, one subscription per instrument type, every instrument of it. OKX
    pushes at most one liquidation per instrument per second and keeps no history of
    them, so what is not received live is gone: the runtime records every disconnection
    in ``_gaps``. Sizes come from the instrument list, declared as reference data: the
    core reads it before the first decode and every ``refresh_interval``, whatever the
    connection does, and early when a row names an instrument it does not list; rows
    of an instrument it still does not list stay unsized (and are drift).
    """

    type = "okx_liquidations"
    schema = LIQUIDATION.name
    description = (
        "OKX liquidation orders of SWAP and FUTURES (liquidation-orders WebSocket channel). "
        "A sample: OKX pushes at most one liquidation per instrument per second."
    )
    Config = OkxLiquidationsConfig
    # OKX closes a connection on which nothing passed for 30 s: a text ping every 20 s.
    keepalive_interval: ClassVar[float | None] = 20.0
    #: A row's instrument that the list does not name is drift (after one early re-read).
    instrument_column: ClassVar[str | None] = "symbol"
    #: Seconds for all attempts at reading one type's instrument list.
    instruments_within: ClassVar[float] = 10.0
    #: Seconds before a failed instrument read is tried again (at most refresh_interval).
    retry_failed_refresh: ClassVar[float] = 60.0

    config: OkxLiquidationsConfig

    def __init__(self, name: str, config: SourceConfig) -> None:
        if not isinstance(config, OkxLiquidationsConfig):
            raise TypeError(f"{type(self).__name__} needs an OkxLiquidationsConfig, not {config!r}")
        super().__init__(name, config)
        self._constants = {"exchange": EXCHANGE}

    def url(self) -> str:
        """The public WebSocket, ``wss://ws.okx.com:8443/ws/v5/public`` (or ``ws_url``'s)."""
        return self.config.stream_url()

    async def on_open(self, ws: WebSocket) -> None:
        """Subscribe every configured type in one request (again after every reconnect)."""
        await ws.send_str(self.config.subscribe_message())

    def keepalive(self) -> str:
        """OKX's application ping: the text ``ping``, answered by ``pong``."""
        return "ping"

    def reference_data(self) -> list[Reference]:
        """The instrument list of every configured type, every ``refresh_interval``.

        Instruments that left the list keep their row (OKX never changes an
        instrument's ``ctVal`` under the same ``instId``), so a late frame of an expired
        future, or a replayed spool, is still sized.
        """
        every = self.config.refresh_interval
        return [
            Reference(
                INSTRUMENTS,
                load=self._load_instruments,
                key="inst_id",
                every=every,
                retry_every=min(self.retry_failed_refresh, every),
                within=self.instruments_within,
                keep_delisted=True,
            )
        ]

    async def _load_instruments(self, fetch: Fetch) -> pl.DataFrame:
        return await fetch_instruments(fetch, self.config.instruments_url(), self.config.inst_types)

    @property
    def instruments(self) -> pl.DataFrame:
        """Contract values by ``inst_id`` as last read (empty before the first read)."""
        listed = self.reference(INSTRUMENTS)
        return NO_INSTRUMENTS if listed is None else listed

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames in one vectorized pass; bad frames become rejects.

        Every element of ``data[]`` and of its ``details[]`` is one row. ``side`` is the
        liquidation order's (``sell`` closes a long); ``sz`` is in contracts, sized by
        the instrument list (see :func:`~lakeflow_okx_liquidations.instruments.sized`).
        Subscription acks and ``pong`` are ignored; an ``error`` (or any other) event is
        a reject whose reason is OKX's code and message. A ``side`` or ``posSide`` OKX
        does not document is kept as sent, with a null ``position_side``, and is drift.
        """
        decoded = decode_json(
            batch,
            FIELDS,
            constants=self._constants,
            ignore=IGNORE,
            ignore_keys=("event",),
            checks=CHECKS,
            derive={
                "market": pl.col("inst_type").str.to_lowercase(),
                "position_side": position_side(),
                "date": pl.col("trade_time").dt.date(),
            },
            explode=EXPLODE,
            ignore_payloads=(PONG,),
            known=KNOWN,
        )
        if decoded.rejects:
            decoded.rejects = [
                (index, event_reason(batch.payloads[index]) if EVENT_REASON in why else why)
                for index, why in decoded.rejects
            ]
        decoded.rows = sized(decoded.rows, self.instruments)
        return decoded


def event_reason(payload: bytes) -> str:
    """What an OKX event frame says: ``OKX error event, code 60012: Invalid request: ...``.

    Called only for rejected frames, which are rare.
    """
    try:
        event = json.loads(payload)
    except ValueError:
        return EVENT_REASON
    if not isinstance(event, dict):
        return EVENT_REASON
    code, msg = event.get("code"), event.get("msg")
    said = f"OKX {event.get('event')} event"
    if code is not None:
        said += f", code {code}"
    return f"{said}: {msg}" if msg else said
