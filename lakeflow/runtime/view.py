"""The status table, drawn with rich: the live view of ``lakeflow run`` and ``lakeflow status``."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lakeflow.runtime.status import SourceStatus

_STATE_STYLE = {
    "connected": "green",
    "idle": "green",
    "polling": "green",
    "starting": "yellow",
    "disconnected": "red",
    "silent": "bold red",
    "paused": "red",
    "failed": "bold red",
    "stopped": "dim",
    "not running": "dim",
}


def age(seconds: float | None) -> str:
    """A duration the way a person reads it: ``4s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def state_of(status: SourceStatus) -> str:
    """The state to show: what the source says, or "not running" if its process is gone."""
    return status.state if status.running else "not running"


def status_table(
    statuses: list[SourceStatus],
    now: float | None = None,
    seen: set[tuple[str, str, str, str]] | None = None,
) -> Table:
    """One row per source: state, rates, totals, ages, problems.

    A source with drift nobody marked seen (``seen``, from ``lakeflow drift --ack``)
    shows ``drift`` beside its state.
    """
    now = time.time() if now is None else now
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column, justify in (
        ("source", "left"),
        ("state", "left"),
        ("rows/s", "right"),
        ("rows", "right"),
        ("last commit", "right"),
        ("reconnects", "right"),
        ("dead letters", "right"),
        ("gaps", "right"),
        ("backlog", "right"),
        ("table", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for status in statuses:
        state = state_of(status)
        if status.kind == "streaming" and state == "connected" and status.connected_since:
            state_text = f"{state} {age(now - status.connected_since)}"
        elif state == "silent":
            since = status.last_payload or status.started
            state_text = f"silent {age(now - since)}"
        elif status.kind == "polling" and status.last_poll and status.running:
            state_text = f"{state}, polled {age(now - status.last_poll)} ago"
        else:
            state_text = state
        last_commit = None if status.last_commit is None else now - status.last_commit
        state_cell = Text(state_text, style=_STATE_STYLE.get(state, ""))
        if status.unseen_drift(seen or set()):
            state_cell.append(", drift", style="bold yellow")
        table.add_row(
            status.source,
            state_cell,
            f"{status.rows_per_second:,.1f}" if status.running else "-",
            f"{status.rows:,}",
            age(last_commit) + (" ago" if last_commit is not None else ""),
            f"{status.reconnects:,}",
            Text(f"{status.dead_letters:,}", style="yellow" if status.dead_letters else ""),
            Text(f"{status.gaps:,}", style="yellow" if status.gaps else ""),
            f"{status.backlog:,}",
            status.table,
        )
    return table


class LiveView:
    """The status table kept at the bottom of the terminal while log lines scroll above."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        # Log records go to sys.stderr, which Live redirects to print above the table.
        self._live = Live(
            Group(),
            console=self.console,
            refresh_per_second=2,
            redirect_stdout=True,
            redirect_stderr=True,
        )

    def start(self) -> None:
        """Start drawing (an empty table until the first update)."""
        self._live.start()

    def update(self, statuses: list[SourceStatus]) -> None:
        """Show these snapshots."""
        self._live.update(status_table(statuses))

    def stop(self) -> None:
        """Stop drawing; the last table stays on the terminal."""
        self._live.stop()
