"""The source contract: what a plugin implements to bring data into lakeflow.

A source does I/O only. A *streaming* source keeps a connection open and hands every raw
payload to the runtime as it arrives; a *polling* source is called on a drift-free
interval and returns the raw body it fetched. Later, once per batch and off the event
loop, the runtime calls :meth:`Source.decode` to turn many payloads into one polars
DataFrame of the source's record schema. Nothing is parsed per message.
"""

from __future__ import annotations

import builtins
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakeflow.units import Duration, parse_duration

if TYPE_CHECKING:
    from lakeflow.references import Reference, ReferenceData


class SourceConfig(BaseModel):
    """Base of every source's config model. Unknown keys are rejected.

    Subclass it with the plugin's own keys. ``table`` is common to all sources: the table
    to write into, by default the record schema's table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(
        default=None, description="Delta table to write into (default: the schema's table)."
    )


class StreamingConfig(SourceConfig):
    """Base config of streaming sources: how long a connected stream may go without data.

    ``silence_timeout`` is the pipeline's key (seconds, or a duration such as ``"5m"``;
    0 turns the check off; unset: the source type's default). A source type sets its
    default by overriding the field's default (``silence_timeout: float | None = 30.0``)
    or, when it depends on other keys (one symbol's stream is quieter than a whole
    market's), by overriding :meth:`default_silence_timeout`. The runtime asks
    :meth:`silence_limit` only.
    """

    silence_timeout: float | None = Field(
        default=None,
        description=(
            'Seconds (or a duration: "10m", "2h") a connected stream may go without data '
            "before it counts as silent: warned about, marked silent, recorded as a gap and "
            "reconnected. 0 turns the check off; unset: the source type's default."
        ),
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Keep the key's description when a subclass only changes its default.

        ``silence_timeout: float | None = 30.0`` redeclares the field without one, and
        ``lakeflow list-sources`` shows each key's description from ``model_fields``.
        """
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields["silence_timeout"]
        if field.description is None:
            field.description = StreamingConfig.model_fields["silence_timeout"].description

    @field_validator("silence_timeout", mode="before")
    @classmethod
    def _parse_silence_timeout(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('must be seconds (300) or a duration ("5m", "2h"); 0 turns it off')
        return parse_duration(value)

    @field_validator("silence_timeout")
    @classmethod
    def _check_silence_timeout(cls, seconds: float | None) -> float | None:
        if seconds is not None and seconds < 0:
            raise ValueError("must not be negative (0 turns the check off)")
        return seconds

    def default_silence_timeout(self) -> float | None:
        """The source type's silence limit when the pipeline sets none (None: not judged).

        The field's declared default, unless a subclass overrides this method to derive
        it from other keys. Must not do I/O.
        """
        default = type(self).model_fields["silence_timeout"].get_default()
        return None if default is None else float(default)

    def silence_limit(self) -> float | None:
        """Seconds of silence past which a connected stream is a problem; None: never judged.

        The pipeline's ``silence_timeout`` when it sets one (0 turns the check off), else
        :meth:`default_silence_timeout`.
        """
        seconds = self.silence_timeout if "silence_timeout" in self.model_fields_set else None
        if seconds is None:
            seconds = self.default_silence_timeout()
        return seconds or None


class PollingConfig(SourceConfig):
    """Base config of polling sources: the interval and the per-poll timeout.

    Both are seconds or durations such as ``"1m"`` (:data:`lakeflow.Duration`).
    """

    interval: Duration = Field(default=60.0, gt=0, description="Seconds between polls.")
    timeout: Duration = Field(
        default=10.0, gt=0, description="Seconds before a request is abandoned."
    )


@dataclass(frozen=True)
class Batch:
    """Raw payloads waiting to be decoded, with the UTC time each was received."""

    payloads: list[bytes]
    received_at: pl.Series  # Datetime("us", "UTC"), one per payload

    def __len__(self) -> int:
        return len(self.payloads)


@dataclass(frozen=True)
class Drift:
    """Something a decoder met that its declaration does not expect: news, not noise.

    ``kind`` is ``"key"`` (a key path no declared field reads), ``"value"`` (a value
    outside a field's declared domain or plausible window) or ``"instrument"`` (a
    symbol the source's reference data does not list). ``path`` is the key path (or the
    column, for an instrument), ``value`` what was sent (``""`` for a key), ``count`` how
    many payloads of the batch showed it and ``example`` the index of one of them.
    """

    kind: Literal["key", "value", "instrument"]
    path: str
    value: str = ""
    count: int = 1
    example: int | None = None


@dataclass
class Decoded:
    """What :meth:`Source.decode` returns.

    ``rows`` holds the decoded records (any column order; the sink conforms them to the
    schema). ``rejects`` lists ``(payload index, reason)`` for payloads that could not be
    decoded: they go to ``_dead_letters`` with their raw bytes. ``ignored`` counts
    payloads that are not data by design (subscription acknowledgements) and are dropped;
    ``ignored_at`` lists their indices when the decoder knows them.

    ``reads`` is every key path the decoder reads or knows (``decode_json`` fills it from
    its fields): the runtime compares a sample of the payloads' keys with it, and a key
    outside it is drift. None: the decoder declares nothing, and keys are not compared.
    ``drift`` lists what the decoder itself found unexpected (values outside a field's
    domain); the runtime records both in ``_drift``.
    """

    rows: pl.DataFrame
    rejects: list[tuple[int, str]] = field(default_factory=list)
    ignored: int = 0
    ignored_at: list[int] = field(default_factory=list)
    reads: frozenset[str] | None = None
    drift: list[Drift] = field(default_factory=list)


class Feed(Protocol):
    """The runtime's side of a streaming connection, passed to :meth:`StreamingSource.stream`."""

    def emit(self, payload: bytes) -> None:
        """Hand one raw payload to the runtime. Cheap: it appends bytes to a buffer."""

    def connecting(self, what: str) -> None:
        """Say what the connection attempt is doing ("waiting for the handshake's answer").

        Optional to call: should the run stop before the first connection is up, the
        gap recorded for it says what the attempt was doing then.
        """

    def connected(self, detail: str = "") -> None:
        """Say the connection is up: closes the open gap and resets the reconnect backoff."""

    @property
    def backlogged(self) -> bool:
        """True while the buffer is full because the sink is behind; await :meth:`writable`."""

    async def writable(self) -> None:
        """Wait until the buffer has room again (backpressure)."""


class Source(ABC):
    """Base of every source. Plugins subclass :class:`StreamingSource` or :class:`PollingSource`.

    Class attributes a plugin sets: ``type`` (the name used in ``lakeflow.toml``),
    ``schema`` (the record schema it produces), ``description`` (one line for
    ``list-sources``) and ``Config`` (its pydantic config model).
    """

    type: ClassVar[str]
    schema: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[Literal["streaming", "polling"]]
    # builtins.type: the class attribute ``type`` above shadows the builtin in this body.
    Config: ClassVar[builtins.type[SourceConfig]] = SourceConfig

    def __init__(self, name: str, config: SourceConfig) -> None:
        self.name = name
        self.config = config
        self.log = logging.LoggerAdapter(logging.getLogger(type(self).__module__), {"source": name})

    #: Seconds the runtime gives :meth:`prepare` before it decodes without it.
    prepare_timeout: ClassVar[float] = 30.0

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Fetch what :meth:`decode` needs beyond the payloads (an instrument list).

        Called once before the first batch is decoded: before the spool is replayed
        after a restart, and by ``lakeflow replay``, so that rows received before a
        crash are decoded as completely as live ones. It must clean up after itself (it
        runs before :meth:`open`). If it raises or takes longer than
        ``prepare_timeout``, the runtime logs a warning and goes on: :meth:`decode` must
        then leave what it cannot know empty (null), never reject or guess.
        """

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire long-lived resources (an HTTP session), once before reading starts."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired. Called once at stop, even after errors."""

    #: The decoded column naming each row's instrument (``"symbol"``): a value that no
    #: reference list (:meth:`reference_data`) names, even after they were read again
    #: because of it, is recorded as drift. None: instruments are not checked.
    instrument_column: ClassVar[str | None] = None
    #: One payload in this many (on average, at random) is examined for keys that no
    #: declared field reads (drift). 1 examines every payload.
    key_sample: ClassVar[int] = 64

    def reference_data(self) -> list[Reference]:
        """The reference lists :meth:`decode` reads (instrument lists); default none.

        Declare each as a :class:`lakeflow.Reference`: the core fetches it before the
        first decode and then on its schedule, early when a decode meets an unknown
        instrument, keeps the last good copy on failure and honours ``Retry-After`` and
        shared budgets. Read the current copy with :meth:`reference`. Must not do I/O.
        """
        return []

    @property
    def refs(self) -> ReferenceData:
        """The core's keeper of this source's reference lists (made on first use)."""
        keeper = self.__dict__.get("_refs")
        if keeper is None:
            from lakeflow.references import ReferenceData

            keeper = self.__dict__["_refs"] = ReferenceData(self.reference_data(), log=self.log)
        return keeper

    def reference(self, name: str) -> pl.DataFrame | None:
        """The last good copy of the reference list ``name``; None before the first read."""
        return self.refs.frame(name)

    def describe(self) -> list[str]:
        """Lines saying what this source will collect, for ``lakeflow validate`` (default none).

        Must not do I/O. Say what a config key chose that the URLs do not show (which
        products of a merged stream are kept, say).
        """
        return []

    def endpoints(self) -> list[str]:
        """The URLs this source reads, preferred first (``lakeflow validate`` shows them).

        Must not do I/O. The default, an empty list, says nothing; sources with a URL
        should return it, since a moved endpoint is the commonest way a feed breaks.
        """
        return []

    @abstractmethod
    def decode(self, batch: Batch) -> Decoded:
        """Decode a batch of raw payloads into rows, at once and vectorized.

        Runs in a worker thread, never on the event loop. Must not raise for bad input:
        report undecodable payloads in ``Decoded.rejects`` instead.
        """


class StreamingSource(Source):
    """A source that keeps a connection open and pushes payloads as they arrive.

    Its ``Config`` derives from :class:`StreamingConfig`, whose ``silence_timeout`` is how
    long a connected stream may go without data (a payload that decodes into rows; pongs
    and acknowledgements are not data) before that is a problem rather than a quiet
    market: exchanges retire a stream by going silent, not by closing it. Past it the
    runtime warns, marks the source ``silent`` in ``lakeflow status`` and ``/healthz``,
    records the stretch in ``_gaps``, calls :meth:`fall_over` and reconnects. A source
    type sets its default in its Config (the field's default, or
    :meth:`StreamingConfig.default_silence_timeout` when it depends on other keys); a
    pipeline overrides it per source with the ``silence_timeout`` key.
    """

    kind = "streaming"
    Config: ClassVar[builtins.type[StreamingConfig]] = StreamingConfig

    def fall_over(self) -> str | None:
        """Move to the next endpoint known for this stream; return it, or None if none.

        Called by the runtime after a silent connection, before it reconnects. A source
        that knows one endpoint (the default) returns None and is reconnected where it
        was. :class:`~lakeflow.WebSocketSource` rotates through :meth:`~lakeflow.
        WebSocketSource.urls`.
        """
        return None

    @abstractmethod
    async def stream(self, feed: Feed) -> None:
        """Connect, call ``feed.connected()``, then ``feed.emit(payload)`` for every payload.

        Return or raise when the connection ends. The runtime records the gap, waits
        with capped exponential backoff and jitter, and calls ``stream`` again. Raise
        :class:`~lakeflow.SourceError` for an error that retrying cannot fix.
        """


class PollingSource(Source):
    """A source that is called every ``config.interval`` seconds and returns what it fetched."""

    kind = "polling"
    Config: ClassVar[type[SourceConfig]] = PollingConfig
    #: A poll's body is a whole snapshot, once per interval: every one is examined.
    key_sample: ClassVar[int] = 1

    @property
    def interval(self) -> float:
        """Seconds between polls, from the config."""
        return float(getattr(self.config, "interval", 60.0))

    @abstractmethod
    async def poll(self) -> bytes | list[bytes]:
        """Fetch one snapshot and return its raw body (or several bodies, one per request).

        Retry transient failures within the interval; raise when the poll is lost (the
        runtime records a gap). Raise :class:`~lakeflow.SourcePaused` when the remote asks
        for a pause and :class:`~lakeflow.SourceError` when the config cannot work.
        """
