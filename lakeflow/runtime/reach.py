"""Hosts no source can reach, said once a minute at most, for all sources together.

A machine that is offline (or blocked) fails every source at once, each reconnecting
with backoff: said per source and per attempt, that is a WARNING a second of the same
error. Each source's reconnects are logged at DEBUG instead, and this summary names the
hosts and for how long, at most every :data:`SAY_EVERY` seconds, once one has failed
for :data:`SAY_AFTER` seconds (a blip that a reconnect fixes is not news).
"""

from __future__ import annotations

import time

from lakeflow.units import format_duration

#: The shortest time between two summaries.
SAY_EVERY = 60.0
#: How long a host must have failed before the first summary.
SAY_AFTER = 10.0


class Reachability:
    """Which hosts the sources of one run fail to reach, and since when."""

    def __init__(self, every: float = SAY_EVERY, after: float = SAY_AFTER) -> None:
        self.every = every
        self.after = after
        self._failing: dict[str, float] = {}  # host -> monotonic time of its first failure
        self._said_at = float("-inf")

    def failed(self, host: str) -> None:
        """A source could not reach ``host`` (its name or a connection to it)."""
        self._failing.setdefault(host, time.monotonic())

    def reached(self, host: str) -> None:
        """A source reached ``host`` again."""
        self._failing.pop(host, None)

    def summary(self) -> str | None:
        """The line to log now, or None: nothing failing long enough, or said recently."""
        if not self._failing:
            return None
        now = time.monotonic()
        since = min(self._failing.values())
        if now - since < self.after or now - self._said_at < self.every:
            return None
        self._said_at = now
        hosts = ", ".join(sorted(self._failing))
        return (
            f"cannot reach {hosts} for {format_duration(round(now - since))}: is this machine "
            "offline or blocked? (each source keeps retrying; its attempts are logged at "
            "DEBUG)"
        )
