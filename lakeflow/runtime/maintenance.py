"""Scheduled maintenance inside ``lakeflow run``: every table, every ``interval``.

``[maintenance]`` says when; what is done to a table is the sink's, by its own settings
(:meth:`lakeflow.Sink.maintain`).

Each table is maintained in a worker thread (the rewrite is CPU and I/O bound), one
table at a time so a run never rewrites more than one table's partitions at once.
Maintenance does not take the sink's commit locks, and its commits do not conflict
with the collector's appends, so commits go on while it works. A failure is logged
and the table is tried again at the next interval; it never stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from lakeflow.config.models import MaintenanceConfig
from lakeflow.sinks import Sink

logger = logging.getLogger(__name__)


async def maintain_periodically(
    sink: Sink,
    tables: Iterable[str],
    schedule: MaintenanceConfig,
    stopping: asyncio.Event,
) -> None:
    """Maintain ``tables`` every ``schedule.interval`` seconds until ``stopping`` is set.

    The first round runs one interval after the start: a restart does not rewrite what
    the previous run just maintained.
    """
    names = list(dict.fromkeys(tables))
    logger.info("maintenance %s: %s", schedule.summary(), sink.describe_maintenance())
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=schedule.interval)
        if stopping.is_set():
            return
        for table in names:
            if stopping.is_set():
                return
            try:
                report = await asyncio.to_thread(sink.maintain, table)
            except Exception as exc:
                logger.warning(
                    "maintenance of %s failed, next try in %.0fs: %s",
                    table,
                    schedule.interval,
                    exc,
                )
                continue
            if report is not None:
                # A skipped table says so itself: another maintainer has it this round.
                logger.info(
                    "%s", report.summary() if report.skipped else f"maintained {report.summary()}"
                )
