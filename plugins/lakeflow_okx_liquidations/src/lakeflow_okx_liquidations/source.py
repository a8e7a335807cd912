"""The ``okx_liquidations`` source: OKX v5 ``liquidation-orders`` over WebSocket."""

from __future__ import annotations

import asyncio
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
    SourceConfig,
    WebSocketSource,
    decode_json,
)
from lakeflow_okx_liquidations.config import CHANNEL, INST_TYPES, OkxLiquidationsConfig
from lakeflow_okx_liquidations.instruments import (
    NO_INSTRUMENTS,
    instrument_table,
    merge_instruments,
    sized,
)

if TYPE_CHECKING:
    from lakeflow.sources.websocket import WebSocket

EXCHANGE = "okx"
#: ``data[]`` holds one element per instrument, each one's ``details[]`` its events.
EXPLODE = ("data", "data.details")
#: Where each column sits in a frame, once both arrays are exploded. ``channel`` and
#: ``inst_type`` are read to check them (``inst_type`` also gives ``market``).
FIELDS: dict[str, Field] = {
    "channel": Field("arg.channel", pl.String()),
    "inst_type": Field("data.instType", pl.String()),
    "symbol": Field("data.instId", pl.String()),
    "side": Field("data.details.side", pl.String()),
    # The liquidated position; "net" in one-way mode, where `side` tells.
    "pos_side": Field("data.details.posSide", pl.String(), required=False),
    "quantity": Field("data.details.sz", DECIMAL),
    "price": Field("data.details.bkPx", DECIMAL),
    "trade_time": Field("data.details.ts", TIMESTAMP, epoch="ms"),
}
#: Replies to a subscription: not data, counted as ignored.
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
_element, _detail = pl.col("data"), pl.col("data.details")
CHECKS: dict[str, pl.Expr] = {
    EVENT_REASON: _event.is_not_null(),
    f"channel is not {CHANNEL!r}": FIELDS["channel"].expr() != CHANNEL,
    f"instType is not {' or '.join(INST_TYPES)}": ~_element.struct.field("instType").is_in(
        INST_TYPES
    ),
    "side is not 'buy' or 'sell'": ~_detail.struct.field("side").is_in(["buy", "sell"]),
    # An empty or absent posSide is read as one-way mode, like "net": the side tells.
    "posSide is not 'long', 'short' or 'net'": ~_detail.struct.field("posSide").is_in(
        ["long", "short", "net", ""]
    ),
}
IGNORE = _event.is_in(ACKS)


def position_side() -> pl.Expr:
    """``posSide`` when it names the position; in one-way mode (``net``) from the order's side."""
    pos = pl.col("pos_side")
    from_side = position_from_order_side(pl.col("side"))
    return pl.when(pos.is_in(["long", "short"])).then(pos).otherwise(from_side)


class OkxLiquidationsSource(WebSocketSource):
    """Streams OKX SWAP and FUTURES liquidation orders into the ``liquidation`` schema.

    One connection, one subscription per instrument type, every instrument of it. OKX
    pushes at most one liquidation per instrument per second and keeps no history of
    them, so what is not received live is gone: the runtime records every disconnection
    in ``_gaps``. Sizes come from the instrument list, read before the first decode and
    every ``refresh_interval``; rows of an instrument it does not list stay unsized.
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
    #: Seconds for all attempts at reading one type's instrument list.
    instruments_within: ClassVar[float] = 10.0
    #: Seconds before a failed instrument read is tried again (at most refresh_interval).
    retry_failed_refresh: ClassVar[float] = 60.0

    config: OkxLiquidationsConfig

    def __init__(self, name: str, config: SourceConfig) -> None:
        if not isinstance(config, OkxLiquidationsConfig):
            raise TypeError(f"{type(self).__name__} needs an OkxLiquidationsConfig, not {config!r}")
        super().__init__(name, config)
        self.silence_timeout = config.silence_timeout
        self._constants = {"exchange": EXCHANGE}
        #: Contract values by instId; replaced whole by each refresh (the decoder thread
        #: reads whichever table is current).
        self.instruments = NO_INSTRUMENTS
        #: Loop time of the next refresh; None: due now (the last attempt failed, or
        #: none was made).
        self._next_refresh: float | None = None

    def url(self) -> str:
        """The public WebSocket, ``wss://ws.okx.com:8443/ws/v5/public`` (or ``ws_url``'s)."""
        return self.config.stream_url()

    async def on_open(self, ws: WebSocket) -> None:
        """Subscribe every configured type in one request (again after every reconnect)."""
        await ws.send_str(self.config.subscribe_message())

    def keepalive(self) -> str:
        """OKX's application ping: the text ``ping``, answered by ``pong``."""
        return "ping"

    async def prepare(self) -> None:
        """Read the instrument list before the first decode, so replayed rows are sized too."""
        await self.refresh_instruments()

    async def refresh_instruments(self) -> None:
        """Re-read every type's instrument list; what was read replaces what was known.

        The types are read at once. One that fails keeps what was known of it, and the
        call then raises, naming it, after the others are in.
        """
        loop = asyncio.get_running_loop()
        types = self.config.inst_types
        url = self.config.instruments_url()
        answers = await asyncio.gather(
            *(self._read_instruments(url, inst_type) for inst_type in types),
            return_exceptions=True,
        )
        fresh = [answer for answer in answers if isinstance(answer, pl.DataFrame)]
        if fresh:
            self.instruments = merge_instruments(self.instruments, pl.concat(fresh))
        failed = [
            (inst_type, answer)
            for inst_type, answer in zip(types, answers, strict=True)
            if isinstance(answer, BaseException)
        ]
        for _, answer in failed:
            if not isinstance(answer, Exception):
                raise answer  # a cancellation, not a failed read
        if failed:
            self._next_refresh = None
            raise RuntimeError(
                "could not read the OKX instrument list of "
                + "; ".join(f"{inst_type} ({error})" for inst_type, error in failed)
            )
        self._next_refresh = loop.time() + self.config.refresh_interval
        self.log.info(
            "contract values of %d OKX instruments (%s) read",
            self.instruments.height,
            ", ".join(types),
        )

    async def _read_instruments(self, url: str, inst_type: str) -> pl.DataFrame:
        body = await self.fetch_json(url, {"instType": inst_type}, within=self.instruments_within)
        return instrument_table(body)

    async def while_open(self, ws: WebSocket) -> None:
        """Re-read the instrument list every ``refresh_interval``, across reconnects.

        The schedule belongs to the source, not to the connection: a connection that
        drops more often than the interval does not put the refresh off. A failure logs
        a warning and is tried again sooner; the stream goes on meanwhile.
        """
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() if self._next_refresh is None else self._next_refresh
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.refresh_instruments()
            except Exception as exc:  # rows stay unsized until a read works
                retry = min(self.retry_failed_refresh, self.config.refresh_interval)
                self._next_refresh = loop.time() + retry
                self.log.warning("%s; trying again in %gs", exc, retry)

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames in one vectorized pass; bad frames become rejects.

        Every element of ``data[]`` and of its ``details[]`` is one row. ``side`` is the
        liquidation order's (``sell`` closes a long); ``sz`` is in contracts, sized by
        the instrument list (see :func:`~lakeflow_okx_liquidations.instruments.sized`).
        Subscription acks and ``pong`` are ignored; an ``error`` (or any other) event is
        a reject whose reason is OKX's code and message.
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
