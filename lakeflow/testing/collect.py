"""Run one source with a config until N payloads or N polls, and read back what it committed.

This is the real runtime and the real Delta sink, in a folder of the test's own: the
pipeline file ``lakeflow.toml``, the sink folder ``tables/`` and the spool ``state/``.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

import lakeflow
from lakeflow.config.loader import load_pipeline
from lakeflow.plugins import Registry, load, make_manager
from lakeflow.runtime import RunResult, Runtime
from lakeflow.schema import TableSchema
from lakeflow.sources import Source
from lakeflow.system_tables import DEAD_LETTERS, DRIFT, GAPS


class Watched(Protocol):
    """A stand-in that records requests it did not expect (a wrong path)."""

    unexpected: list[str]


@dataclass
class Collected:
    """What one run of a source committed.

    ``rows`` is the source's table, ``dead_letters`` and ``gaps`` the system tables
    (empty frames when nothing was written to them). ``result`` holds the run's
    per-source counters (``result.stats["source"].received``, ``.polls``, ``.ignored``).
    ``pipeline`` is the pipeline file the run used, for ``lakeflow query`` and friends.
    """

    rows: pl.DataFrame
    dead_letters: pl.DataFrame
    gaps: pl.DataFrame
    result: RunResult
    tables: Path
    pipeline: Path | None = None

    def table(self, name: str) -> pl.DataFrame:
        """Any table of the sink folder by name (an empty frame if it was never written)."""
        return read_table(self.tables / name)

    @property
    def drift(self) -> list[tuple[str, str, str, int]]:
        """The run's ``_drift`` entries as ``(kind, path, value, count)``, sorted."""
        table = self.table(DRIFT.table)
        if table.is_empty():
            return []
        return sorted(table.select("kind", "path", "value", "count").iter_rows())


def read_table(path: Path) -> pl.DataFrame:
    """A Delta table as a DataFrame; an empty frame when there is no table at ``path``."""
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

    The sink is ``folder/tables``. ``config`` is the source's section without ``type``;
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


class _InTest:
    """A plugin made of one source class (and schemas) handed to :func:`collect_async`."""

    def __init__(self, source: type[Source], schemas: Sequence[TableSchema]) -> None:
        self.source, self.schemas = source, schemas

    @lakeflow.hookimpl
    def register_schemas(self, register: Any) -> None:
        for schema in self.schemas:
            register(schema)

    @lakeflow.hookimpl
    def register_sources(self, register: Any) -> None:
        register(self.source)


def _registry(source: str | type[Source], schemas: Sequence[TableSchema]) -> Registry:
    """The installed plugins, and ``source`` (a class) registered before them."""
    if isinstance(source, str):
        if schemas:
            raise ValueError("schemas= goes with a source class, not an installed type name")
        return load()
    pm = make_manager()
    pm.register(_InTest(source, schemas), name=f"in-test {source.__name__}")
    registry = load(pm)
    broken = {p: e for p, e in registry.errors.items() if p.startswith("in-test ")}
    if broken:
        raise ValueError(f"{source.__name__} cannot be registered: {broken}")
    return registry


async def collect_async(
    source_type: str | type[Source],
    config: Mapping[str, Any],
    folder: Path,
    *,
    payloads: int | None = None,
    polls: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - bounds the whole run, not one call
    name: str = "source",
    runtime: Mapping[str, Any] | None = None,
    standins: Sequence[Watched] = (),
    schemas: Sequence[TableSchema] = (),
) -> Collected:
    """Run one source until it has received ``payloads`` payloads or made ``polls`` polls.

    Then stop it the way SIGTERM does (everything received is committed) and read back
    its table, ``_dead_letters`` and ``_gaps``. ``source_type`` is an installed source
    type's name, or a source class, registered for this run beside the installed plugins
    (with ``schemas``, the record schemas it needs that no installed plugin registers):
    a plugin's tests need not install it. ``config`` is its ``[sources.NAME]`` section.
    Running again in the same ``folder`` continues the same tables (a restart).

    ``standins`` are stand-in servers built with a ``path``: when one of them receives a
    request for another path, the run stops at once with an AssertionError naming it,
    instead of reconnecting until ``timeout``. Raises TimeoutError, saying how far the
    source got, when the goal is not reached within ``timeout`` seconds.
    """
    if payloads is None and polls is None:
        raise ValueError("say when to stop: payloads=N or polls=N")
    registry = _registry(source_type, schemas)
    kind = source_type if isinstance(source_type, str) else source_type.type
    path = write_pipeline(Path(folder), kind, config, name=name, runtime=runtime)
    pipeline = load_pipeline(path, registry)
    wrong: list[str] = []

    def done(stats: Mapping[str, Any]) -> bool:
        for server in standins:
            wrong.extend(server.unexpected)
        s = stats[name]
        return (
            bool(wrong)
            or (payloads is not None and s.received >= payloads)
            or (polls is not None and s.polls >= polls)
        )

    run = Runtime(pipeline, registry, stop_when=done)
    try:
        result = await asyncio.wait_for(run.run(), timeout=timeout)
    except TimeoutError:
        s = run.stats[name]
        goal = f"{payloads} payloads" if payloads is not None else f"{polls} polls"
        raise TimeoutError(
            f"source {name!r} ({kind}) did not reach {goal} within {timeout:g} s: "
            f"received {s.received} payloads, made {s.polls} polls, state {s.state!r}"
        ) from None
    if wrong:
        paths = list(dict.fromkeys(wrong))
        raise AssertionError(f"the source asked a stand-in for unexpected paths: {paths}")
    tables = Path(pipeline.sink.uri)
    spec = pipeline.sources[name]
    return Collected(
        rows=read_table(tables / spec.table),
        dead_letters=read_table(tables / DEAD_LETTERS.table),
        gaps=read_table(tables / GAPS.table),
        result=result,
        tables=tables,
        pipeline=path,
    )


def collect(
    source_type: str | type[Source], config: Mapping[str, Any], folder: Path, **options: Any
) -> Collected:
    """The synchronous form of :func:`collect_async`.

    Stand-ins it talks to must run on their own thread (``server.start()``, or the
    ``ws_standin`` / ``http_standin`` fixtures), since this call blocks the caller's.
    """
    return asyncio.run(collect_async(source_type, config, folder, **options))


class Collector:
    """Runs one source in the test's folder; see :func:`lakeflow.testing.collect_async`.

    ``lakeflow_collect("my_type", {"url": server.url}, payloads=10)`` blocks until ten
    payloads were received and committed, and returns a :class:`Collected`:
    ``.rows`` (the table as a polars DataFrame), ``.dead_letters``, ``.gaps``,
    ``.result.stats["source"]`` (counters). A second call continues the same tables.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(
        self,
        source_type: str | type[Source],
        config: Mapping[str, Any],
        *,
        payloads: int | None = None,
        polls: int | None = None,
        timeout: float = 30.0,
        standins: Sequence[Watched] = (),
        **options: Any,
    ) -> Collected:
        """Run the source to the goal from a sync test (stand-ins on their own thread)."""
        return collect(
            source_type,
            config,
            self.folder,
            payloads=payloads,
            polls=polls,
            timeout=timeout,
            standins=standins,
            **options,
        )

    async def run_async(
        self,
        source_type: str | type[Source],
        config: Mapping[str, Any],
        *,
        payloads: int | None = None,
        polls: int | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - bounds the whole run, not one call
        standins: Sequence[Watched] = (),
        **options: Any,
    ) -> Collected:
        """The same from inside a running event loop (stand-ins may share it)."""
        return await collect_async(
            source_type,
            config,
            self.folder,
            payloads=payloads,
            polls=polls,
            timeout=timeout,
            standins=standins,
            **options,
        )
