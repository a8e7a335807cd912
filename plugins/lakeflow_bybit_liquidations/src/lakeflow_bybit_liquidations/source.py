"""The ``bybit_liquidations`` source: Bybit v5 ``allLiquidation.<symbol>`` topics over WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import polars as pl
from lakeflow_market_schemas import (
    LIQUIDATION,
    decimal_product,
    decimal_quotient,
    position_from_position_side,
)

from lakeflow import (
    DECIMAL,
    TIMESTAMP,
    Batch,
    Decoded,
    Field,
    Reference,
    RequestFailed,
    SourceConfig,
    WebSocketSource,
    decode_json,
)
from lakeflow_bybit_liquidations.config import (
    ARGS_LIMIT,
    SUBSCRIBE_BATCH,
    TOPIC,
    BybitLiquidationsConfig,
)
from lakeflow_bybit_liquidations.instruments import (
    Fetch,
    empty_instruments,
    fetch_instruments,
    trading_symbols,
)

if TYPE_CHECKING:
    from lakeflow import WebSocket

#: Bybit's application ping; the server answers ``{"success":true,"ret_msg":"pong",...}``.
PING = '{"op":"ping"}'
#: The name of the category's instrument list among the source's reference data.
INSTRUMENTS = "instruments"
#: The values Bybit documents for ``S``, the side of the liquidated position.
SIDES = ("Buy", "Sell")
#: Where each column sits in an ``allLiquidation`` frame: the frame's own ``topic`` and
#: ``ts``, and one event per element of its ``data`` array. ``topic`` is read to check it.
FIELDS: dict[str, Field] = {
    "topic": Field("topic", pl.String()),
    "event_time": Field("ts", TIMESTAMP, epoch="ms"),
    "symbol": Field("data.s", pl.String()),
    # Outside Buy/Sell the row is kept as sent, its position_side null, and it is drift.
    "side": Field("data.S", pl.String(), domain=SIDES),
    "quantity": Field("data.v", DECIMAL),
    "price": Field("data.p", DECIMAL),
    "trade_time": Field("data.T", TIMESTAMP, epoch="ms"),
}
#: Keys of a data frame that Bybit sends and the decoder leaves unread on purpose:
#: ``type`` is always ``"snapshot"`` on this topic (each push is new events, never a
#: delta to apply). Any other key is drift.
KNOWN = ("type",)
#: Top-level keys of Bybit's replies (acknowledgements, pongs, refusals).
REPLY_KEYS = ("op", "success")
#: The replies that are not data by design: acknowledged requests (subscribe, ping).
#: A refusal (``"success": false``) is not among them: it is a dead letter.
IS_ACK = pl.col("op").is_not_null() & (pl.col("success") == "true")
#: The reason decode_json gives a refusal; :func:`explain_refusals` replaces it with
#: Bybit's own words.
REFUSED = "a request refused by Bybit"
_TOPIC_SYMBOL = pl.col("data").struct.field("s")
CHECKS: dict[str, pl.Expr] = {
    REFUSED: pl.col("success") == "false",
    f"topic is not {TOPIC}<symbol>": pl.col("topic").is_not_null()
    & ~pl.col("topic").str.starts_with(TOPIC),
    "the event's symbol 'data.s' is not the topic's": pl.col("topic").str.starts_with(TOPIC)
    & (pl.col("topic") != pl.lit(TOPIC) + _TOPIC_SYMBOL),
}
DERIVE: dict[str, pl.Expr] = {
    "date": pl.col("trade_time").dt.date(),
    # Bybit's S is the side of the liquidated *position*: Buy is a long one.
    "position_side": position_from_position_side(pl.col("side")),
}


class BybitLiquidationsSource(WebSocketSource):
    """Streams Bybit linear or inverse liquidations into the ``liquidation`` schema.

    Bybit has one topic per symbol, so the source declares the category's instrument
    list as reference data: the core reads it before the first decode and every
    ``refresh_interval``, whatever the connections do. The source subscribes to every
    trading symbol ten topics per request after each connect (reading the list first if
    the core has none yet), and subscribes new listings after each refresh. It sends
    Bybit's ``{"op":"ping"}`` every 20 s: Bybit drops a connection without it. Bybit
    keeps no public history of liquidations, so what is not received live is gone:
    every disconnection is a row of ``_gaps``.
    """

    type = "bybit_liquidations"
    schema = LIQUIDATION.name
    description = (
        "Bybit v5 futures liquidations (allLiquidation WebSocket topics, linear or "
        "inverse): Bybit pushes all liquidations, batched every 500 ms."
    )
    Config = BybitLiquidationsConfig
    keepalive_interval: ClassVar[float | None] = 20.0
    #: A row's symbol that the instrument list does not name is drift (after one early
    #: re-read of the list, in case it is a new listing).
    instrument_column: ClassVar[str | None] = "symbol"
    #: on_open may read the instrument list (a page or two) before it subscribes.
    open_timeout: ClassVar[float] = 30.0
    #: Seconds one read of the instrument list may take, all pages and retries together
    #: (within ``open_timeout``, since on_open may do it), and one page of it.
    instruments_within: ClassVar[float] = 20.0
    page_within: ClassVar[float] = 10.0
    #: Seconds to send api.bybit.com nothing after an HTTP 403: Bybit's answer to an IP
    #: over its rate limit ("403, access too frequent"), lifted after at least 10
    #: minutes, and made permanent by asking again and again.
    ban_wait: ClassVar[float] = 600.0
    #: Seconds after a 429 without ``Retry-After``, and after any other failed read
    #: (``refresh_interval`` when that is shorter).
    slow_down_wait: ClassVar[float] = 60.0

    config: BybitLiquidationsConfig

    def __init__(self, name: str, config: SourceConfig) -> None:
        if not isinstance(config, BybitLiquidationsConfig):
            raise TypeError(
                f"{type(self).__name__} needs a BybitLiquidationsConfig, not {config!r}"
            )
        super().__init__(name, config)
        self._constants = {"exchange": "bybit", "market": config.category}
        self._req_ids = itertools.count(1)
        #: Per open connection: the symbols subscribed on it, and the characters of
        #: topics that took (Bybit caps them per connection).
        self._subscribed: dict[WebSocket, set[str]] = {}
        self._args_used: dict[WebSocket, int] = {}

    def url(self) -> str:
        """The category's public stream, ``wss://stream.bybit.com/v5/public/<category>``."""
        return self.config.stream_url()

    def keepalive(self) -> str:
        """Bybit's application ping, sent every ``keepalive_interval`` seconds."""
        return PING

    # -- the instrument list -------------------------------------------------------------

    def reference_data(self) -> list[Reference]:
        """The category's instruments-info, every page, every ``refresh_interval``.

        An HTTP 403 holds every request to it for ``ban_wait`` (10 minutes), whatever
        the reconnects: asking during Bybit's ban prolongs it.
        """
        every = self.config.refresh_interval
        return [
            Reference(
                INSTRUMENTS,
                load=self._load_instruments,
                every=every,
                retry_every=min(self.slow_down_wait, every),
                holds={403: self.ban_wait, 429: self.slow_down_wait},
                within=self.page_within,
            )
        ]

    async def _load_instruments(self, fetch: Fetch) -> pl.DataFrame:
        url, category = self.config.instruments_url(), self.config.category
        try:
            return await asyncio.wait_for(
                fetch_instruments(fetch, url, category), self.instruments_within
            )
        except RequestFailed as exc:
            if exc.status != 403:
                raise
            raise RequestFailed(
                f"Bybit refused the instrument list with HTTP 403, its answer to an IP over "
                f"the rate limit: no request for {self.ban_wait / 60:g} minutes ({exc})",
                status=403,
                retry_after=exc.retry_after,
            ) from exc

    @property
    def instruments(self) -> pl.DataFrame | None:
        """The category's instruments as last read (None: not read yet)."""
        return self.reference(INSTRUMENTS)

    def wanted(self) -> list[str]:
        """The symbols to subscribe: the configured ones, or every trading one listed."""
        if self.config.symbols:
            return list(self.config.symbols)
        listed = self.instruments
        symbols = trading_symbols(listed if listed is not None else empty_instruments())
        return [symbol for symbol in symbols if self.config.in_shard(symbol)]

    # -- the connection ------------------------------------------------------------------

    async def on_open(self, ws: WebSocket) -> None:
        """Subscribe to every wanted symbol, reading the instrument list first if need be.

        Following every symbol needs the list: if the core has none yet and it cannot
        be read now (an error, or the hold after a 403), the connection fails with a
        ConnectionError that says so, and the runtime reconnects (and so tries again)
        with backoff. Named symbols are subscribed without it.
        """
        if self.config.all_symbols and self.instruments is None:
            try:
                await self.refs.refresh(INSTRUMENTS)
            except Exception as exc:
                raise ConnectionError(
                    f"cannot subscribe to every {self.config.category} symbol: the "
                    f"instrument list {self.config.instruments_url()} could not be read "
                    f"({_said(exc)})"
                ) from exc
        if self.config.symbols and self.instruments is not None:
            self._warn_unlisted()
        self._subscribed[ws] = set()
        symbols = self.wanted()
        requests = await self.subscribe(ws, symbols)
        self.log.info("subscribing to %d symbols in %d requests", len(symbols), requests)

    async def subscribe(self, ws: WebSocket, symbols: Sequence[str]) -> int:
        """Send subscribe requests of at most ten topics each; returns how many were sent.

        Stops short of Bybit's 21,000 characters of topics per connection, and says with
        an ERROR which symbols were left out and how to split them (``shards``): past
        the limit Bybit would refuse them, and they would be collected by no one.
        """
        used = self._args_used.get(ws, 0)
        room: list[str] = []
        for symbol in symbols:
            size = len(json.dumps(f"{TOPIC}{symbol}")) + 1
            if used + size > ARGS_LIMIT:
                break
            used += size
            room.append(symbol)
        self._args_used[ws] = used
        if len(room) < len(symbols):
            left = list(symbols[len(room) :])
            self.log.error(
                "%d symbols NOT subscribed: Bybit takes at most %d characters of topics on "
                "one connection, and %d symbols fill them. Split the symbols over more "
                "sources with shards = %d (one source per shard = 0..%d). Left out: %s",
                len(left),
                ARGS_LIMIT,
                len(room) + len(self._subscribed.get(ws, set())),
                self.config.shards + 1,
                self.config.shards,
                ", ".join(left[:10]) + (", ..." if len(left) > 10 else ""),
            )
            symbols = room
        topics = [f"{TOPIC}{symbol}" for symbol in symbols]
        requests = 0
        for start in range(0, len(topics), SUBSCRIBE_BATCH):
            request = {
                "op": "subscribe",
                "args": topics[start : start + SUBSCRIBE_BATCH],
                "req_id": str(next(self._req_ids)),
            }
            await ws.send_str(json.dumps(request, separators=(",", ":")))
            requests += 1
        self._subscribed.setdefault(ws, set()).update(symbols)
        return requests

    async def while_open(self, ws: WebSocket) -> None:
        """Subscribe the symbols listed since, after each refresh of the list by the core.

        Named symbols need nothing here: the core keeps their quote coins fresh.
        """
        if not self.config.all_symbols:
            return
        while True:
            # Checked before each wait too: a refresh that ended between on_open's
            # subscription and this task's start is not missed.
            subscribed = self._subscribed.get(ws, set())
            new = [symbol for symbol in self.wanted() if symbol not in subscribed]
            if new:
                await self.subscribe(ws, new)
                shown = ", ".join(new[:10]) + (", ..." if len(new) > 10 else "")
                self.log.info("subscribing to %d newly listed symbols: %s", len(new), shown)
            await self.refs.updated(INSTRUMENTS)

    async def on_close(self, ws: WebSocket) -> None:
        """Forget what was subscribed on the connection: the next one subscribes anew."""
        self._subscribed.pop(ws, None)
        self._args_used.pop(ws, None)

    def _warn_unlisted(self) -> None:
        instruments = self.instruments
        assert instruments is not None
        listed = set(instruments["symbol"].to_list())
        unlisted = [s for s in self.config.symbols if s not in listed]
        if unlisted:
            self.log.warning(
                "symbols not in Bybit's %s instrument list: %s (a refused subscription "
                "shows in _dead_letters)",
                self.config.category,
                ", ".join(unlisted),
            )

    # -- decoding ------------------------------------------------------------------------

    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of frames in one vectorized pass; one row per event of ``data``.

        Acknowledgements and pongs are counted as ignored; a refused request, a frame of
        another topic and an undecodable frame are rejects (dead letters). ``side`` is
        the liquidated *position*'s: ``Buy`` is a long; another value is kept as sent,
        with a null ``position_side``, and reported as drift. Linear sizes are in the
        base coin (notional ``v * p`` in the symbol's quote coin); inverse sizes are
        contracts of 1 USD (notional ``v`` USD, base ``v / p``).
        """
        decoded = decode_json(
            batch,
            FIELDS,
            constants=self._constants,
            ignore=IS_ACK,
            ignore_keys=REPLY_KEYS,
            checks=CHECKS,
            known=KNOWN,
            derive=DERIVE,
            explode="data",
        )
        if decoded.rejects:
            decoded.rejects = explain_refusals(batch.payloads, decoded.rejects)
        instruments = self.instruments  # once: a refresh may replace it meanwhile
        if self.config.category == "linear":
            decoded.rows = linear_sizes(decoded.rows, instruments)
        else:
            decoded.rows = inverse_sizes(decoded.rows)
        return decoded


def linear_sizes(rows: pl.DataFrame, instruments: pl.DataFrame | None) -> pl.DataFrame:
    """Linear: ``v`` is in the base coin; the notional ``v * p`` is in the quote coin.

    The quote coin comes from the instrument list: null for a symbol it does not list
    (listed since the last refresh, or the list could not be read), never guessed.
    """
    coins = (instruments if instruments is not None else empty_instruments()).select(
        "symbol", notional_currency=pl.col("quote_coin")
    )
    query = (
        rows.lazy()
        .with_columns(
            base_quantity=pl.col("quantity"),
            notional=decimal_product(pl.col("quantity"), pl.col("price")),
        )
        .join(coins.lazy(), on="symbol", how="left", maintain_order="left")
    )
    return in_schema_order(query)


def inverse_sizes(rows: pl.DataFrame) -> pl.DataFrame:
    """Inverse: ``v`` is contracts of 1 USD, so the notional is ``v`` USD, the base ``v / p``."""
    query = rows.lazy().with_columns(
        notional=pl.col("quantity"),
        base_quantity=decimal_quotient(pl.col("quantity"), pl.col("price")),
        notional_currency=pl.lit("USD"),
    )
    return in_schema_order(query)


def in_schema_order(query: pl.LazyFrame) -> pl.DataFrame:
    """The schema's columns in its order; those Bybit does not send are null."""
    present = query.collect_schema()
    return query.select(
        pl.col(name) if name in present else pl.lit(None, dtype).alias(name)
        for name, dtype in LIQUIDATION.columns.items()
    ).collect()


def explain_refusals(
    payloads: Sequence[bytes], rejects: list[tuple[int, str]]
) -> list[tuple[int, str]]:
    """Give each refused request's reject Bybit's own words (``ret_msg``).

    Only rejects are looked at, and refusals are rare (a wrong symbol): parsing them one
    by one costs nothing on the normal path.
    """
    explained = []
    for index, reason in rejects:
        if REFUSED in reason:
            reason = _refusal(payloads[index])
        explained.append((index, reason))
    return explained


def _refusal(payload: bytes) -> str:
    try:
        reply = json.loads(payload)
    except ValueError:  # parsed by decode_json already; kept for safety
        return REFUSED
    op = reply.get("op") or "a"
    req_id = reply.get("req_id")
    asked = f" (req_id {req_id})" if req_id is not None else ""
    return f"Bybit refused the {op} request{asked}: {reply.get('ret_msg') or 'no ret_msg'}"


def _said(exc: BaseException) -> str:
    """An exception for a message: its text, or its type when it has none (a timeout)."""
    return str(exc) or type(exc).__name__
