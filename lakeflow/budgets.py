"""Request-weight budgets shared by every source of a process that asks the same API.

An exchange limits requests per IP, not per connection: Binance's USDⓈ-M and COIN-M REST
share one budget of 2400 weight per minute since 2026-06-30, whichever host and source
asks. A :class:`Budget` is that limit, known by name across the process, so the
instrument-list refreshes of one source and the ticker polls of another wait for each
other instead of adding up to a ban. A ``Retry-After`` told to one sharer holds them all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

_BUDGETS: dict[str, Budget] = {}
_GUARD = threading.Lock()


class Budget:
    """``capacity`` weight per ``per`` seconds (a sliding window), and a hold for bans.

    Get the process's instance with :meth:`named`; every caller that names the same
    budget shares it. Spending blocks (asynchronously) until the window has room.
    """

    def __init__(self, name: str, capacity: float, per: float) -> None:
        if capacity <= 0 or per <= 0:
            raise ValueError(f"budget {name!r}: capacity and period must be positive")
        self.name = name
        self.capacity = float(capacity)
        self.per = float(per)
        #: (time.monotonic(), weight) of every spending still inside the window.
        self._spent: deque[tuple[float, float]] = deque()
        #: time.monotonic() before which nothing may be spent (a Retry-After, a ban).
        self.held_until = 0.0
        self.hold_reason = ""

    @classmethod
    def named(cls, name: str, capacity: float, per: float = 60.0) -> Budget:
        """The process's budget called ``name``, made on first use.

        Later callers get the same instance; the smaller capacity wins if they disagree,
        since the stricter reading of a limit is the one that avoids a ban.
        """
        with _GUARD:
            budget = _BUDGETS.get(name)
            if budget is None:
                budget = _BUDGETS[name] = cls(name, capacity, per)
            elif capacity < budget.capacity:
                budget.capacity = float(capacity)
            return budget

    def used(self, now: float | None = None) -> float:
        """Weight spent within the current window."""
        now = time.monotonic() if now is None else now
        while self._spent and self._spent[0][0] <= now - self.per:
            self._spent.popleft()
        return sum(weight for _, weight in self._spent)

    def wait_needed(self, weight: float, now: float | None = None) -> float:
        """Seconds until ``weight`` may be spent (0: now)."""
        now = time.monotonic() if now is None else now
        wait = max(0.0, self.held_until - now)
        used = self.used(now)
        if used + weight > self.capacity and self._spent:
            # Free the oldest spendings until the weight fits.
            freed = used
            for at, spent in self._spent:
                freed -= spent
                if freed + weight <= self.capacity:
                    wait = max(wait, at + self.per - now)
                    break
        return wait

    async def spend(self, weight: float = 1.0) -> None:
        """Wait until ``weight`` fits in the window (and no hold is on), then spend it."""
        weight = min(float(weight), self.capacity)
        while True:
            wait = self.wait_needed(weight)
            if wait <= 0:
                self._spent.append((time.monotonic(), weight))
                return
            await asyncio.sleep(wait)

    def hold(self, seconds: float, reason: str) -> bool:
        """Let nothing be spent for ``seconds`` (a 429's or a ban's ``Retry-After``).

        Returns True when that is later than the hold already on.
        """
        until = time.monotonic() + max(0.0, seconds)
        if until <= self.held_until:
            return False
        self.held_until, self.hold_reason = until, reason
        return True

    def __repr__(self) -> str:
        return f"Budget({self.name!r}, {self.capacity:g} per {self.per:g}s)"


def forget_budgets() -> None:
    """Drop every named budget (tests run many pipelines in one process)."""
    with _GUARD:
        _BUDGETS.clear()
