"""Capped exponential backoff with jitter, shared by reconnects, restarts and commit retries."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``0, base, 2*base, 4*base, ...`` capped at ``cap``, each scaled by a jitter.

    The first retry after a long healthy period is immediate (a server's scheduled
    close should cost no data); repeated failures back off. Jitter spreads the retries
    of many collectors that lost the same server at once.
    """

    def __init__(self, base: float = 1.0, cap: float = 30.0, immediate_first: bool = True) -> None:
        self.base = base
        self.cap = cap
        self.immediate_first = immediate_first
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; advances the count."""
        attempt = self.attempt
        self.attempt += 1
        if self.immediate_first:
            if attempt == 0:
                return 0.0
            attempt -= 1
        delay = min(self.cap, self.base * 2**attempt)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self.attempt = 0
