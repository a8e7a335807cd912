"""Exceptions that sources raise to tell the runtime what happened, and the config error."""

from __future__ import annotations


class LakeflowError(Exception):
    """Base class of every error lakeflow raises on purpose."""


class ConfigError(LakeflowError):
    """The pipeline file (or a source's config) is wrong. The message says where and what."""


class SourceError(LakeflowError):
    """A source cannot go on with its configuration (an invalid symbol, a refused credential).

    Retrying would fail the same way, so the runtime stops this source, logs the message
    and lets the other sources run. Use it for errors that need a person, not for outages.
    """


class SourcePaused(LakeflowError):
    """The remote asked the source to stop for a while (an IP ban, maintenance).

    The runtime logs ``reason`` loudly, records the pause as a gap and calls the source
    again once ``seconds`` have passed.
    """

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"{reason} (paused for {seconds:g}s)")
        self.seconds = seconds
        self.reason = reason
