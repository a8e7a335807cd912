"""What each source is doing, as a snapshot: for the live view, status files and /healthz.

A running ``lakeflow run`` writes one small JSON file per source into
``<state_dir>/status/`` every second; ``lakeflow status`` reads them from another
process. A file whose process is gone (or that stopped being refreshed) reads as "not
running", with the last figures it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeflow.config.models import SourceSpec
    from lakeflow.runtime.stats import SourceStats

from lakeflow.runtime.lock import private_dir, write_private
from lakeflow.runtime.stats import COUNTERS
from lakeflow.secrets import redact

#: A status file not refreshed for this long belongs to a process that hung or died.
STALE_AFTER = 15.0
#: Seconds of history the rows/s rate is measured over.
RATE_WINDOW = 10.0


@dataclass
class SourceStatus:
    """One source instance at one moment, as shown by ``lakeflow status``."""

    source: str
    type: str
    kind: str
    table: str
    interval: float | None
    pid: int
    state: str
    received: int
    rows: int
    rows_per_second: float
    commits: int
    dead_letters: int
    ignored: int
    reconnects: int
    gaps: int
    polls: int
    failed_polls: int
    backlog: int
    started: float
    updated: float
    last_commit: float | None
    last_poll: float | None
    connected_since: float | None
    #: Endpoint of the current (or last) connection of a streaming source.
    url: str | None = None
    #: Epoch seconds of the newest payload received (None: none yet).
    last_payload: float | None = None
    #: Epoch seconds of the newest payload that decoded into rows (see SourceStats).
    last_data: float | None = None
    #: Seconds of silence that are normal for this source (None: not judged).
    silence_timeout: float | None = None
    #: Until when the source covered its feed: the snapshot's time while it does, else
    #: the moment it stopped (a drop, a silence). The next run's first gap starts here.
    covered_until: float | None = None
    running: bool = True
    #: The last failure of a connection or a poll, in words, and when (epoch seconds).
    last_error: str | None = None
    last_error_at: float | None = None
    #: Drift occurrences per kind, and the newest drift entries (kind, path, value,
    #: count, first_seen, last_seen): what arrived that the source does not declare.
    drift_total: dict[str, int] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)

    def unseen_drift(self, seen: set[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
        """The drift entries nobody marked seen (``lakeflow drift --ack``)."""
        return [
            entry
            for entry in self.drift
            if (self.source, entry["kind"], entry["path"], entry["value"]) not in seen
        ]

    def to_json(self) -> str:
        """The snapshot as one JSON object."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceStatus:
        """Read a snapshot written by :meth:`to_json`, ignoring keys it does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def problem(self, now: float | None = None) -> str | None:
        """Why this source is not healthy, or None if it is.

        Healthy means: a streaming source is connected and not silent past its
        ``silence_timeout``; a polling source polled successfully within two intervals
        (counted from its start before its first poll).
        """
        now = time.time() if now is None else now
        if not self.running:
            return "not running"
        if self.state == "failed":
            return (
                f"stopped on an error: {self.last_error}"
                if self.last_error
                else ("stopped on an error (see the log)")
            )
        if self.kind == "streaming":
            if self.state == "silent":
                since = self.last_data or self.started
                return (
                    f"silent: no data for {max(0.0, now - since):.0f}s on "
                    f"{self.url or 'its stream'} (normal: at most {self.silence_timeout or 0:g}s);"
                    " the exchange may have moved or retired the stream, a symbol may be "
                    "wrong, or the region may be blocked"
                )
            if self.state != "connected":
                why = f": {self.last_error}" if self.last_error else ""
                return f"not connected ({self.state}){why}"
            return None
        interval = self.interval or 60.0
        since = self.last_poll if self.last_poll is not None else self.started
        if now - since > 2 * interval:
            what = "no successful poll" if self.last_poll is None else "last successful poll"
            why = f"; last error: {self.last_error}" if self.last_error else ""
            return f"{what} for {now - since:.0f}s (interval {interval:g}s){why}"
        if self.state == "paused":
            return "paused"
        return None


class StatusTracker:
    """Turns live :class:`SourceStats` into :class:`SourceStatus` snapshots with a rate."""

    def __init__(self, specs: list[SourceSpec], stats: dict[str, SourceStats]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.stats = stats
        self._history: dict[str, deque[tuple[float, int]]] = {name: deque() for name in stats}

    def snapshot(self, only: set[str] | None = None) -> list[SourceStatus]:
        """The status of every source now (of those in ``only``, if given)."""
        now = time.time()
        pid = os.getpid()
        out = []
        for name, stats in self.stats.items():
            if only is not None and name not in only:
                continue
            spec = self.specs[name]
            history = self._history[name]
            history.append((now, stats.rows))
            while len(history) > 1 and now - history[0][0] > RATE_WINDOW:
                history.popleft()
            then, rows_then = history[0]
            rate = (stats.rows - rows_then) / (now - then) if now > then else 0.0
            out.append(
                SourceStatus(
                    source=name,
                    type=spec.cls.type,
                    kind=spec.cls.kind,
                    table=spec.table,
                    interval=getattr(spec.config, "interval", None),
                    pid=pid,
                    state=stats.state,
                    rows_per_second=round(rate, 2),
                    **{name: getattr(stats, name) for name in COUNTERS},
                    backlog=stats.backlog,
                    started=stats.started,
                    updated=now,
                    last_commit=stats.last_commit,
                    last_poll=stats.last_poll,
                    connected_since=stats.connected_since,
                    url=stats.url,
                    last_payload=stats.last_payload,
                    last_data=stats.last_data,
                    silence_timeout=stats.silence_timeout,
                    covered_until=(now if stats.uncovered_since is None else stats.uncovered_since),
                    last_error=stats.last_error,
                    last_error_at=stats.last_error_at,
                    drift_total=stats.drift,
                    drift=stats.drift_entries,
                )
            )
        return out


def status_dir(state_dir: str | Path) -> Path:
    """Where a pipeline's status files live."""
    return Path(state_dir) / "status"


def write_status(folder: Path, statuses: list[SourceStatus]) -> None:
    """Write each snapshot to ``folder/<source>.json``, atomically (write, then rename).

    The folder is 0700 and the files 0600: a status names the endpoints a source uses,
    and its text is masked like the logs (a ``${VAR}`` secret in a URL stays out).
    """
    if not statuses:
        return
    private_dir(folder)
    for status in statuses:
        write_private(folder / f"{status.source}.json", redact(status.to_json()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_status(folder: Path, sources: list[str], now: float | None = None) -> list[SourceStatus]:
    """The last snapshot of each of ``sources`` found in ``folder``, marked running or not.

    Sources that never ran here have no snapshot and are left out.
    """
    now = time.time() if now is None else now
    found = []
    for name in sources:
        path = folder / f"{name}.json"
        with contextlib.suppress(FileNotFoundError):
            try:
                status = SourceStatus.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError):
                continue  # a torn or foreign file: say nothing rather than something wrong
            status.running = (
                status.state != "stopped"
                and now - status.updated <= STALE_AFTER
                and _alive(status.pid)
            )
            found.append(status)
    return found


def seen_path(state_dir: str | Path) -> Path:
    """The file that lists the drift entries a person has marked seen."""
    return Path(state_dir) / "drift_seen.json"


def read_seen(state_dir: str | Path) -> set[tuple[str, str, str, str]]:
    """The (source, kind, path, value) entries marked seen; empty if none or unreadable."""
    try:
        listed = json.loads(seen_path(state_dir).read_text(encoding="utf-8"))
        return {(str(a), str(b), str(c), str(d)) for a, b, c, d in listed}
    except (OSError, ValueError, TypeError):  # a torn or hand-edited file: nothing seen
        return set()


def mark_seen(state_dir: str | Path, entries: set[tuple[str, str, str, str]]) -> None:
    """Add ``entries`` to the seen list, atomically."""
    target = seen_path(state_dir)
    # The state folder itself may be a folder the user shares: made private only when new.
    private_dir(target.parent, tighten=False)
    merged = sorted(read_seen(state_dir) | entries)
    write_private(target, json.dumps(merged, indent=1))
