"""``lakeflow status``: what each source of a running (or the last) run is doing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lakeflow.cli.common import AlreadyReported, pipeline_argument
from lakeflow.errors import ConfigError


@click.command()
@pipeline_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(pipeline: str, as_json: bool) -> None:
    """Show what each source of a running (or the last) `lakeflow run` is doing.

    Per source: state, rows/s, rows, last commit age, reconnects, dead letters, gaps
    and backlog, read from the status files the run refreshes every second. A source
    with drift nobody marked seen shows `drift` beside its state (a warning: the exit
    code stays 0). Exits 0 when every source runs and is healthy, 1 otherwise.
    """
    from rich.console import Console

    from lakeflow.runtime.status import read_seen, read_status, status_dir
    from lakeflow.runtime.view import status_table

    names, state_dir = peek(pipeline)
    statuses = read_status(status_dir(state_dir), names)
    seen = {s.source for s in statuses}
    never = [name for name in names if name not in seen]
    # Health as of each snapshot: the file is up to a publish interval old, and judged
    # now a short poll interval would look overdue. A stale file is "not running".
    problems = {s.source: s.problem(s.updated) for s in statuses}
    acknowledged = read_seen(state_dir)
    unseen = {s.source: s.unseen_drift(acknowledged) for s in statuses}
    if as_json:
        rows = [
            {
                **json.loads(s.to_json()),
                "problem": problems[s.source],
                "unseen_drift": len(unseen[s.source]),
            }
            for s in statuses
        ]
        rows += [{"source": name, "running": False, "problem": "never ran"} for name in never]
        click.echo(json.dumps(rows, indent=2))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        if statuses:
            console.print(status_table(statuses, seen=acknowledged))
        for name in never:
            click.echo(f"{name}: never ran with state folder {state_dir}")
        for name, problem in problems.items():
            if problem:
                click.echo(f"{name}: {problem}")
        for name, entries in unseen.items():
            if entries:
                shown = ", ".join(
                    f"{e['kind']} {e['path']}" + (f"={e['value']}" if e["value"] else "")
                    for e in entries[:3]
                )
                more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
                click.echo(
                    f"{name}: drift: {shown}{more}; the exchange may have changed "
                    "(`lakeflow drift` shows it, `lakeflow drift --ack` marks it seen)"
                )
    if never or any(problems.values()):
        raise AlreadyReported  # each problem is printed above


def peek(path: str | Path) -> tuple[list[str], Path]:
    """The source names and the (resolved) state folder of a pipeline file.

    The file alone, not pydantic nor the plugins: the status files say everything else.
    Raises :class:`ConfigError` (exit 2) when the file is wrong.
    """
    from lakeflow.config.file import read_toml

    data = read_toml(path)
    sources = data.get("sources", {})
    runtime = data.get("runtime", {})
    state = runtime.get("state_dir", "state") if isinstance(runtime, dict) else "state"
    if not isinstance(sources, dict) or not isinstance(state, str) or not state.strip():
        # Malformed: the full validation says exactly where (and raises).
        from lakeflow.config.loader import read_pipeline_file

        read_pipeline_file(path)
        raise ConfigError(f"{path}: [sources] or runtime.state_dir is malformed")
    return list(sources), (Path(path).parent / state).resolve()
