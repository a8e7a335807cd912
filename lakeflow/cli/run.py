"""``lakeflow run``: collect the pipeline's sources into its tables."""

from __future__ import annotations

import logging
import sys

import click

from lakeflow import logs
from lakeflow.cli.common import (
    AlreadyReported,
    Refused,
    announce_notices,
    failing,
    load,
    open_sink,
    pipeline_argument,
)

logger = logging.getLogger("lakeflow")


@click.command()
@pipeline_argument
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME",
    help="Run only this source (repeatable). Default: all.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Poll each polling source once, commit and exit (streaming sources are skipped).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Overrides [log] level.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Also log to this file, rotated by size. Overrides [log] file.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Text lines, or one JSON object per line. Overrides [log] format.",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="Draw a live status table (default: when stdout is a terminal).",
)
def run(
    pipeline: str,
    sources: tuple[str, ...],
    once: bool,
    log_level: str | None,
    log_file: str | None,
    log_format: str | None,
    live: bool | None,
) -> None:
    """Run the pipeline's sources into its tables until SIGINT or SIGTERM.

    On a signal, sources stop reading, everything received is committed, and the
    command exits 0. On a terminal a live table shows each source's state; otherwise
    a status line per source is logged every [log] status_interval seconds.
    """
    import asyncio

    from lakeflow.runtime import Runtime
    from lakeflow.runtime.runner import MetricsUnavailable

    registry, spec = load(pipeline, announce=False)
    cfg = spec.log
    logs.configure(
        level=log_level or cfg.level,
        file=log_file or (str(spec.path.parent / cfg.file) if cfg.file else None),
        terminal=cfg.terminal,
        max_bytes=cfg.max_bytes,
        backups=cfg.backups,
        format=log_format or cfg.format,  # type: ignore[arg-type]
    )
    for plugin, error in registry.errors.items():
        logger.error("plugin %s failed to load and is skipped: %s", plugin, error)
    # Now that the log goes where the file says: a deprecation belongs in it too.
    announce_notices(spec)
    unknown = [name for name in sources if name not in spec.sources]
    if unknown:
        raise Refused(
            f"{pipeline}: no source named {', '.join(unknown)} "
            f"(the pipeline has: {', '.join(spec.sources) or 'none'})"
        )
    if not spec.sources:
        raise Refused(f"{pipeline}: no [sources.NAME] sections: nothing to run")
    if live is None:
        live = sys.stdout.isatty() and not once
    open_sink(registry, spec)
    runtime = Runtime(spec, registry, only=list(sources) or None, once=once, live=live)
    if not runtime.specs:
        raise Refused("--once runs polling sources only, and none is selected")
    with failing(f"{pipeline}: ", catch=MetricsUnavailable):
        result = asyncio.run(runtime.run())
    if not result.ok:
        logger.error("sources stopped on errors: %s", ", ".join(result.failed))
        raise AlreadyReported
