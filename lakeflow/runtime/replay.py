"""``lakeflow replay``: decode captured payloads from the spool into a table again.

Uses the same exactly-once bookkeeping as a run: payloads are committed in batches
tagged with the source's name and the batch's last sequence, and a table that already
holds a sequence skips it. Replaying into the source's own table therefore backfills
only what never landed; replaying into another table (``--table``, bookkept as
``source@table``) re-decodes everything in the time window once (a re-run after a
decoder fix).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime

from lakeflow.config.models import Pipeline, check_table_name
from lakeflow.errors import ConfigError
from lakeflow.plugins import Registry
from lakeflow.runtime.committer import Committer
from lakeflow.runtime.lane import Lane
from lakeflow.runtime.lock import SourceLock, SourceLocked
from lakeflow.runtime.runner import prepare
from lakeflow.runtime.spool import Spool
from lakeflow.runtime.stats import SourceStats


def _ns(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1_000_000_000)


async def replay(
    pipeline: Pipeline,
    registry: Registry,
    source: str,
    *,
    table: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SourceStats:
    """Replay the spool of ``source`` into its table (or ``table``); returns what landed."""
    if source not in pipeline.sources:
        raise ConfigError(
            f"{pipeline.path}: no source named {source} "
            f"(the pipeline has: {', '.join(pipeline.sources) or 'none'})"
        )
    spec = pipeline.sources[source]
    if table is not None and table != spec.table:
        # Another table gets its own bookkeeping identity, "source@table", so that what
        # the source itself committed (to _dead_letters too) does not mask the replay.
        try:
            spec = dataclasses.replace(
                spec, name=f"{source}@{check_table_name(table)}", table=table
            )
        except ValueError as exc:
            raise ConfigError(f"--table: {exc}") from None
    folder = pipeline.spool_dir(source)
    if not folder.is_dir():
        raise ConfigError(f"no spool for source {source} at {folder}: nothing was captured")
    spool = Spool(folder)
    lock = SourceLock(folder, source)
    try:
        if spec.name == source:
            # Writing the source's own sequences: a running collector must not do so too.
            # The lock `lakeflow run` takes, held through it by the spool as a run's is.
            try:
                lock.acquire()
            except SourceLocked as exc:
                raise ConfigError(f"{exc}, or replay into another --table") from None
            assert lock.fd is not None
            spool.adopt_lock(lock.fd)
        sink = registry.sinks[pipeline.sink.type](pipeline.sink)
        stats = SourceStats()
        decoder = spec.cls(spec.name, spec.config)
        log = logging.LoggerAdapter(logging.getLogger(__name__), {"source": spec.name})
        # Not spooled again: the lane's buffer stays empty; the spool is read directly.
        lane = Lane(spec, stats, pipeline.sink, log)
        committer = Committer(spec, decoder, sink, lane, pipeline.sink, spool, pipeline.runtime)
        try:
            await prepare(decoder, logging.getLogger(__name__))
            committed = await asyncio.to_thread(committer.committed)
            await committer.commit_spooled(committed, _ns(since), _ns(until))
        finally:
            spool.close()
    finally:
        lock.release()
    return stats
