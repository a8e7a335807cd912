"""Who may rewrite a table on object storage: a lease kept through Delta's own commits.

Two rewrites of one table at once double its rows (see :mod:`lakeflow.sinks.delta.maintain`). On a
local disk an ``flock`` keeps them apart; an object store has no lock to take, but it
has the one primitive Delta commits already rely on: log version N+1 is written only
if nobody else wrote it. So the lease is a tiny Delta table beside the table's log,
``<table>/_lakeflow_maintenance`` (a ``_`` folder, which Delta readers and vacuum pass
over), holding one row: who holds the lease and until when. Taking it is an overwrite
committed on top of the version just read, with no retries: of two maintainers that
read the lease free at once, exactly one commit lands and the other fails. Giving it
back is another commit. A holder that died leaves the lease to expire.

The lease is not renewed while it is held: a maintenance that outlived
:data:`LEASE_SECONDS` (a process paused for hours, a rewrite of years of never-maintained
data on a slow store) could overlap the next maintainer's.

It needs nothing the sink does not already need: the same storage options and the
store's conditional writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from lakeflow.errors import LakeflowError

logger = logging.getLogger(__name__)

#: The lease table's folder inside the maintained table.
FOLDER = "_lakeflow_maintenance"
#: How long a lease lasts: far longer than one maintenance (a never-maintained month of
#: one-minute polls takes minutes), so only a holder that died lets it run out.
LEASE_SECONDS = 6 * 3600.0
#: Vacuum the lease table's replaced one-row files every this many versions.
VACUUM_EVERY = 100
_ONCE = CommitProperties(max_commit_retries=0)


class LeaseHeld(LakeflowError):
    """Another maintainer holds the table's lease."""

    def __init__(self, holder: str, until: float) -> None:
        self.holder = holder
        self.until = until
        if until > 0:
            when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            super().__init__(f"lease held by {holder} until {when}")
        else:  # the winner of the race has already given it back
            super().__init__(f"lease taken by {holder}")


def lease_uri(table_uri: str) -> str:
    """Where the lease of the table at ``table_uri`` lives."""
    return f"{table_uri.rstrip('/')}/{FOLDER}"


@contextlib.contextmanager
def lease(
    table_uri: str,
    storage_options: Mapping[str, str] | None = None,
    *,
    seconds: float = LEASE_SECONDS,
) -> Iterator[str]:
    """Hold the maintenance lease of the table at ``table_uri``; yields the holder's name.

    Raises :class:`LeaseHeld` at once when another maintainer holds an unexpired lease
    or wins the race to take it.
    """
    uri = lease_uri(table_uri)
    options = dict(storage_options or {})
    me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _take(uri, options, me, seconds)
    try:
        yield me
    finally:
        _give_back(uri, options, me)


def _take(uri: str, options: dict[str, str], me: str, seconds: float) -> None:
    handle = _open(uri, options)
    if handle is not None:
        holder, until = _current(handle)
        if holder and until > time.time():
            raise LeaseHeld(holder, until)
    row = _row(me, time.time() + seconds)
    try:
        if handle is None:
            # No retries here either: a retried create lands on top of the winner's and
            # both would hold the lease. A day of log keeps opening it one short listing.
            write_deltalake(
                uri,
                row,
                mode="error",
                storage_options=options,
                configuration={"delta.logRetentionDuration": "interval 1 days"},
                commit_properties=_ONCE,
            )
        else:
            write_deltalake(handle, row, mode="overwrite", commit_properties=_ONCE)
    except Exception as exc:
        # Lost the race (someone committed between our read and our write), or the
        # store failed us with the outcome unknown: the lease table says which.
        try:
            winner = _open(uri, options)
            holder, until = _current(winner) if winner is not None else ("", 0.0)
        except Exception:
            raise exc from None
        if holder == me:
            return  # our write landed after all
        if isinstance(exc, DeltaError):
            raise LeaseHeld(holder or "another maintainer", until) from exc
        raise


def _give_back(uri: str, options: dict[str, str], me: str) -> None:
    """Free the lease if it is still ours; never raises (it expires anyway)."""
    try:
        handle = _open(uri, options)
        if handle is None or _current(handle)[0] != me:
            return  # expired and taken over: nothing of ours to give back
        # On the version just checked, with no retries: if someone took the lease over
        # since, this fails instead of erasing their claim.
        write_deltalake(handle, _row("", 0.0), mode="overwrite", commit_properties=_ONCE)
    except Exception as exc:
        logger.warning("could not give back the maintenance lease %s: %s", uri, exc)
        return
    if handle.version() % VACUUM_EVERY < 2:  # versions go by twos (take, give back)
        # The one-row files replaced (and any a lost race left behind) are deleted after
        # an hour, so a maintainer reading the lease now never finds its file gone.
        with contextlib.suppress(Exception):
            handle.vacuum(
                retention_hours=1, enforce_retention_duration=False, dry_run=False, full=True
            )


def _open(uri: str, options: dict[str, str]) -> DeltaTable | None:
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return None


def _current(handle: DeltaTable) -> tuple[str, float]:
    rows = pl.read_delta(handle)
    if rows.is_empty():
        return "", 0.0
    if rows.height > 1:
        # Never written so (one row, overwritten): count it held, as long as any claim.
        latest = rows.sort("until").row(-1, named=True)
        return f"one of {rows.height} claimants", float(latest["until"])
    row = rows.row(0, named=True)
    return str(row["holder"]), float(row["until"])


def _row(holder: str, until: float) -> pl.DataFrame:
    return pl.DataFrame(
        {"holder": [holder], "until": [until]}, schema={"holder": pl.String, "until": pl.Float64}
    )
