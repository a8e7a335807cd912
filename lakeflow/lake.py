"""Reading what a pipeline wrote: :class:`Lake`, for notebooks, scripts and tests.

A ``Lake`` reads the pipeline file the way ``lakeflow run`` does (the same path rules,
``${VAR}`` substitution and ``.env`` file, the same plugins), opens its sink and gives
its tables by name as polars LazyFrames. It starts no source and writes nothing::

    import lakeflow

    lake = lakeflow.Lake()  # ./lakeflow.toml
    lake["trades"].filter(pl.col("symbol") == "BTCUSDT").collect()
    lake.sql("SELECT symbol, count(*) AS n FROM trades GROUP BY symbol")
    lake.gaps.collect()  # what the sources did not cover, and why

It reads through :meth:`lakeflow.Sink.scan`, so a local folder and an object store
(with the pipeline's ``storage_options``) read the same. The CLI's ``tables`` and
``query`` commands are built on it, and so are plugins' commands (``lakeflow plot``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lakeflow.errors import TableNotFound
from lakeflow.secrets import mask_uri
from lakeflow.system_tables import DEAD_LETTERS, DRIFT, GAPS

if TYPE_CHECKING:
    from lakeflow.config.models import Pipeline
    from lakeflow.schema import TableSchema
    from lakeflow.sinks import Sink, TableInfo

#: The pipeline file a ``Lake`` reads when given none, as every command does.
DEFAULT_PIPELINE = "lakeflow.toml"


class Lake:
    """The tables of one pipeline, for reading.

    ``pipeline`` is the pipeline file (default ``lakeflow.toml`` in the current folder);
    a relative ``[sink] uri`` is resolved against the file's folder, as ``lakeflow run``
    resolves it. With ``check`` (the default) the sink's store is asked once that it is
    reachable, so that a missing bucket or a refused credential is an error here, not in
    the middle of a query. Raises :class:`lakeflow.ConfigError` for a wrong pipeline file.
    """

    def __init__(self, pipeline: str | Path = DEFAULT_PIPELINE, *, check: bool = True) -> None:
        from lakeflow.config.loader import load_pipeline
        from lakeflow.plugins import load

        registry = load()
        spec = load_pipeline(pipeline, registry)
        for notice in spec.notices:  # a deprecated key: said where a notebook shows it
            logging.getLogger("lakeflow").warning("%s", notice)
        sink = registry.sinks[spec.sink.type](spec.sink)
        if check:
            sink.check()
        self._bind(spec, sink)

    @classmethod
    def of(cls, pipeline: Pipeline, sink: Sink) -> Lake:
        """A ``Lake`` over an already loaded pipeline and its sink (what the CLI holds)."""
        lake = cls.__new__(cls)
        lake._bind(pipeline, sink)
        return lake

    def _bind(self, pipeline: Pipeline, sink: Sink) -> None:
        self.pipeline = pipeline
        self.sink = sink

    @property
    def path(self) -> Path:
        """The pipeline file."""
        return self.pipeline.path

    @property
    def uri(self) -> str:
        """Where the tables live (the sink's URI, resolved)."""
        return self.pipeline.sink.uri

    @property
    def schemas(self) -> dict[str, TableSchema]:
        """The record schema of each table the pipeline's sources write, and the system tables'."""
        found: dict[str, TableSchema] = {}
        for spec in self.pipeline.sources.values():
            found.setdefault(spec.table, spec.schema)
        found[DEAD_LETTERS.table] = DEAD_LETTERS
        found[GAPS.table] = GAPS
        found[DRIFT.table] = DRIFT
        return found

    def names(self) -> list[str]:
        """Every table the pipeline names or the sink holds, whether or not it exists yet."""
        return list(dict.fromkeys([*self.schemas, *self.sink.tables()]))

    @property
    def tables(self) -> list[str]:
        """The tables that exist, the pipeline's first, then the system tables and any other."""
        return [name for name in self.names() if self.sink.info(name) is not None]

    def __contains__(self, table: object) -> bool:
        return isinstance(table, str) and self.sink.info(table) is not None

    def scan(self, table: str) -> pl.LazyFrame:
        """``table`` as a polars LazyFrame (nothing is read until it is collected).

        Raises :class:`TableNotFound` if it does not exist.
        """
        scan = self.sink.scan(table)
        if scan is None:
            raise self._not_found(table)
        return scan

    __getitem__ = scan

    def _not_found(self, table: str) -> TableNotFound:
        there = ", ".join(self.tables) or "none yet"
        return TableNotFound(
            f"no table {table!r} under {mask_uri(self.uri)} (tables there: {there})"
        )

    def _system(self, schema: TableSchema) -> pl.LazyFrame:
        # No gap or dead letter yet means the table was never created: that is an
        # empty table, not an error a notebook should have to catch.
        scan = self.sink.scan(schema.table)
        return scan if scan is not None else pl.LazyFrame(schema=dict(schema.columns))

    @property
    def gaps(self) -> pl.LazyFrame:
        """``_gaps``: each time range a source did not cover, and why (empty if none)."""
        return self._system(GAPS)

    @property
    def dead_letters(self) -> pl.LazyFrame:
        """``_dead_letters``: each payload no decoder could read, raw, with the reason."""
        return self._system(DEAD_LETTERS)

    @property
    def drift(self) -> pl.LazyFrame:
        """``_drift``: what arrived that no source declared, one row per source, kind,
        path and value (summed, for a sink that appends instead of merging; empty if none).
        """
        from lakeflow.system_tables import DRIFT_KEY

        return (
            self._system(DRIFT)
            .group_by(DRIFT_KEY)
            .agg(
                pl.col("first_seen").min(),
                pl.col("last_seen").max(),
                pl.col("count").sum(),
                pl.col("example").sort_by("first_seen").first(),
            )
            .sort("last_seen", descending=True)
        )

    def sql_context(self) -> pl.SQLContext:
        """A polars SQL context with every existing table registered by its name."""
        context = pl.SQLContext()
        for name in self.names():
            scan = self.sink.scan(name)
            if scan is not None:
                context.register(name, scan)
        return context

    def sql(self, query: str, *, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
        """Run polars SQL over the tables by name; a DataFrame (a LazyFrame with ``lazy``).

        Table names that begin with ``_`` are quoted: ``SELECT * FROM "_gaps"``.
        """
        frame = self.sql_context().execute(query, eager=False)
        return frame if lazy else frame.collect()

    def info(self, table: str) -> TableInfo:
        """Version, files, rows, bytes and last commit of ``table``.

        Raises :class:`TableNotFound` if it does not exist.
        """
        info = self.sink.info(table)
        if info is None:
            raise self._not_found(table)
        return info

    def overview(self) -> pl.DataFrame:
        """One row per existing table: what ``lakeflow tables`` prints, as a DataFrame."""
        rows = [self.info(name) for name in self.tables]
        return pl.DataFrame(
            {
                "table": [i.name for i in rows],
                "version": [i.version for i in rows],
                "files": [i.files for i in rows],
                "rows": [i.rows for i in rows],
                "bytes": [i.bytes for i in rows],
                "last_commit": [i.last_commit for i in rows],
            },
            schema={
                "table": pl.String,
                "version": pl.Int64,
                "files": pl.Int64,
                "rows": pl.Int64,
                "bytes": pl.Int64,
                "last_commit": pl.Datetime("us", "UTC"),
            },
        )

    def __repr__(self) -> str:
        return f"Lake({str(self.path)!r}: tables under {mask_uri(self.uri)})"
