"""Helpers for testing sources without the internet: run one source, get its table back.

Plugin authors call :func:`collect` from their tests (sync) or :func:`collect_async`
(inside an event loop that also runs a stand-in server)::

    result = await collect_async("binance_liquidations", {"ws_url": server.url},
                                 tmp_path, payloads=10)
    assert result.rows.height == 10
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lakeflow.config import load_pipeline
from lakeflow.plugins import load
from lakeflow.runtime import RunResult, Runtime
from lakeflow.system_tables import DEAD_LETTERS, GAPS


@dataclass
class Collected:
    """What one run of a source committed."""

    rows: pl.DataFrame
    dead_letters: pl.DataFrame
    gaps: pl.DataFrame
    result: RunResult
    tables: Path


def _read(path: Path) -> pl.DataFrame:
    if not (path / "_delta_log").is_dir():
        return pl.DataFrame()
    return pl.read_delta(str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_pipeline(
    folder: Path,
    source_type: str,
    config: Mapping[str, Any],
    *,
    name: str = "source",
    flush_interval: float = 0.2,
    runtime: Mapping[str, Any] | None = None,
) -> Path:
    """Write a one-source ``lakeflow.toml`` into ``folder`` and return its path.

    ``runtime`` fills the ``[runtime]`` section (``{"keep_raw": True}``).
    """
    lines = [
        "[sink]",
        'uri = "tables"',
        f"flush_interval = {flush_interval}",
        "",
        f"[sources.{name}]",
        f"type = {_toml_value(source_type)}",
    ]
    lines += [f"{key} = {_toml_value(value)}" for key, value in config.items()]
    if runtime:
        lines += ["", "[runtime]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in runtime.items()]
    path = Path(folder) / "lakeflow.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tomllib.loads(path.read_text())  # fail here, clearly, if a value did not serialise
    return path


async def collect_async(
    source_type: str,
    config: Mapping[str, Any],
    folder: Path,
    *,
    payloads: int | None = None,
    polls: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - bounds the whole run, not one call
    name: str = "source",
    runtime: Mapping[str, Any] | None = None,
) -> Collected:
    """Run one source until it has received ``payloads`` payloads or made ``polls`` polls.

    Then stop it the way SIGTERM does (everything received is committed) and read back
    its table, ``_dead_letters`` and ``_gaps``. Raises TimeoutError after ``timeout``.
    """
    path = write_pipeline(Path(folder), source_type, config, name=name, runtime=runtime)
    registry = load()
    pipeline = load_pipeline(path, registry)

    def done(stats: Mapping[str, Any]) -> bool:
        s = stats[name]
        received = s.received
        return (payloads is not None and received >= payloads) or (
            polls is not None and s.polls >= polls
        )

    runtime = Runtime(pipeline, registry, stop_when=done)
    result = await asyncio.wait_for(runtime.run(), timeout=timeout)
    tables = Path(pipeline.sink.uri)
    spec = pipeline.sources[name]
    return Collected(
        rows=_read(tables / spec.table),
        dead_letters=_read(tables / DEAD_LETTERS.table),
        gaps=_read(tables / GAPS.table),
        result=result,
        tables=tables,
    )


def collect(source_type: str, config: Mapping[str, Any], folder: Path, **options: Any) -> Collected:
    """The synchronous form of :func:`collect_async` (for sources that need no local server)."""
    return asyncio.run(collect_async(source_type, config, folder, **options))
