"""The sink contract: `lakeflow.testing.check_sink` passes the Delta sink and a second,
tiny sink, and names the property a broken sink breaks; a sink type's own `[sink]` keys."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl
import pytest
from deltalake import DeltaTable
from lakeflow_testsource import SequenceSource

from harness import Plugin, run
from lakeflow.config import SinkConfig, load_pipeline
from lakeflow.errors import ConfigError, RowsRefused, SchemaMismatch
from lakeflow.plugins import load
from lakeflow.schema import TableSchema
from lakeflow.sinks import Sink, SinkSettings, TableInfo
from lakeflow.sinks.delta import DeltaSink
from lakeflow.sinks.delta.maintain import MaintainReport
from lakeflow.testing import check_sink


class ParquetSettings(SinkSettings):
    """``[sink]`` keys of ``type = "parquet"``."""

    compression: Literal["zstd", "snappy", "uncompressed"] = "zstd"


class ParquetSink(Sink):
    """One Parquet file per commit, and a JSON log entry naming it: the commit point.

    Not a store to use (no concurrency between processes, no maintenance): the smallest
    sink that keeps the contract, to prove check_sink asks nothing Delta-specific.
    """

    type = "parquet"
    Config = ParquetSettings
    settings: ParquetSettings

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        self.root = Path(config.uri)
        self._lock = threading.Lock()

    def table_uri(self, table: str) -> str:
        return str(self.root / table)

    def _log(self, table: str) -> list[dict]:
        folder = self.root / table / "_log"
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def committed_sequence(self, table: str, app_id: str) -> int | None:
        done = [e["sequence"] for e in self._log(table) if e["app_id"] == app_id]
        return max(done, default=None)

    def _landed(self, table: str, app_id: str, sequence: int) -> bool:
        done = self.committed_sequence(table, app_id)
        return done is not None and done >= sequence

    def _columns(self, table: str) -> dict[str, str]:
        log = self._log(table)
        return log[-1]["columns"] if log else {}

    def check_schema(self, table: str, schema: TableSchema) -> None:
        stored = self._columns(table)
        for name, kind in schema.columns.items():
            if name in stored and stored[name] != str(kind):
                raise SchemaMismatch(f"{table}: column {name} is {stored[name]}, not {kind}")

    def commit(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, app_id: str, sequence: int
    ) -> bool:
        try:
            frame = schema.conform(rows)
        except Exception as exc:
            raise RowsRefused(f"table {table!r} cannot take the rows: {exc}") from exc
        with self._lock:
            if self._landed(table, app_id, sequence):
                return False
            self.check_schema(table, schema)
            version = len(self._log(table))
            (self.root / table / "_log").mkdir(parents=True, exist_ok=True)
            data = self.root / table / f"{version:06d}.parquet"
            frame.write_parquet(data, compression=self.settings.compression)
            entry = {
                "app_id": app_id,
                "sequence": sequence,
                "file": data.name,
                "columns": {name: str(kind) for name, kind in schema.columns.items()},
            }
            # Written aside, then renamed: the log entry appears whole or not at all.
            log = self.root / table / "_log" / f"{version:06d}.json"
            log.with_suffix(".tmp").write_text(json.dumps(entry))
            os.replace(log.with_suffix(".tmp"), log)
            return True

    def tables(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "_log").is_dir())

    def scan(self, table: str) -> pl.LazyFrame | None:
        log = self._log(table)
        if not log:
            return None
        columns = list(log[-1]["columns"])
        parts = [pl.scan_parquet(self.root / table / e["file"]) for e in log]
        return pl.concat(parts, how="diagonal_relaxed").select(columns)

    def info(self, table: str) -> TableInfo | None:
        log = self._log(table)
        if not log:
            return None
        files = [self.root / table / e["file"] for e in log]
        return TableInfo(
            name=table,
            uri=self.table_uri(table),
            version=len(log) - 1,
            files=len(files),
            rows=sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files),
            bytes=sum(f.stat().st_size for f in files),
            last_commit=datetime.fromtimestamp(files[-1].stat().st_mtime, UTC),
        )


def test_the_delta_sink_keeps_the_sink_contract(tmp_path):
    check_sink(DeltaSink, tmp_path)


def test_a_tiny_parquet_sink_keeps_the_sink_contract(tmp_path):
    check_sink(ParquetSink, tmp_path, compression="snappy")


def test_a_function_making_sinks_is_checked_too(tmp_path):
    check_sink(lambda folder: DeltaSink(SinkConfig(uri=str(folder / "lake"))), tmp_path)


class NoSkip(ParquetSink):
    """Records sequences but never skips one: every retry writes again."""

    def _landed(self, table: str, app_id: str, sequence: int) -> bool:
        return False


class Forgetful(ParquetSink):
    """Never finds what it committed."""

    def committed_sequence(self, table: str, app_id: str) -> int | None:
        return None


class Lax(ParquetSink):
    """Takes a column whose type changed."""

    def check_schema(self, table: str, schema: TableSchema) -> None:
        return None


class Trusting(ParquetSink):
    """Finds every row fit."""

    def check_rows(self, table: str, schema: TableSchema, rows: pl.DataFrame) -> None:
        return None


class Unlisted(ParquetSink):
    """Counts rows wrongly."""

    def info(self, table: str) -> TableInfo | None:
        info = super().info(table)
        return None if info is None else dataclasses.replace(info, rows=info.rows + 1)


class Amnesiac(ParquetSink):
    """Keeps the column types it wrote in memory only: a sink opened afresh (as the
    runtime's is when a source starts) takes a column whose type changed."""

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        self._memory: dict[str, dict[str, str]] = {}

    def _columns(self, table: str) -> dict[str, str]:
        return self._memory.get(table, {})

    def commit(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, app_id: str, sequence: int
    ) -> bool:
        done = super().commit(table, schema, rows, app_id, sequence)
        if done:
            self._memory[table] = {name: str(kind) for name, kind in schema.columns.items()}
        return done


class DropsUpserts(ParquetSink):
    """Loses the rows given to upsert (the runtime's _drift tallies)."""

    def upsert(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, keys: tuple[str, ...]
    ) -> None:
        return None


class KeepsFirstSighting(ParquetSink):
    """Upserts only the keys the table lacks: a key seen again never adds its count."""

    def upsert(
        self, table: str, schema: TableSchema, rows: pl.DataFrame, keys: tuple[str, ...]
    ) -> None:
        held = self.scan(table)
        if held is not None:
            rows = rows.join(held.select(keys).unique().collect(), on=list(keys), how="anti")
        super().upsert(table, schema, rows, keys)


class EagerDryRun(DeltaSink):
    """Maintains for real when asked for a dry run."""

    def maintain(self, table: str, *, dry_run: bool = False) -> MaintainReport | None:
        return super().maintain(table)


class TidyingDryRun(DeltaSink):
    """A dry run deletes the data files the table no longer references (what a
    compaction replaced, kept for the vacuum retention), without a commit."""

    def maintain(self, table: str, *, dry_run: bool = False) -> MaintainReport | None:
        root = Path(self.table_uri(table))
        if dry_run and root.is_dir():
            handle = DeltaTable(str(root))
            live = set(pl.DataFrame(handle.get_add_actions(flatten=True))["path"])
            for data in root.rglob("*.parquet"):
                name = data.relative_to(root).as_posix()
                if not name.startswith("_delta_log/") and name not in live:
                    data.unlink()
        return super().maintain(table, dry_run=dry_run)


class CheckpointingDryRun(DeltaSink):
    """A dry run writes a checkpoint of the log: the same version, a new file."""

    def maintain(self, table: str, *, dry_run: bool = False) -> MaintainReport | None:
        if dry_run and self.info(table) is not None:
            DeltaTable(self.table_uri(table)).create_checkpoint()
        return super().maintain(table, dry_run=dry_run)


@pytest.mark.parametrize(
    ("sink", "broken"),
    [
        (
            NoSkip,
            "exactly once (a repeated or lower sequence is skipped): a repeated (app_id, "
            "sequence) was not skipped (commit returned True)",
        ),
        (Forgetful, "exactly once (a repeated or lower sequence is skipped): committed_seq"),
        (Lax, "refused type change (SchemaMismatch): check_schema accepted"),
        (
            Amnesiac,
            "refused type change (SchemaMismatch): check_schema of a sink opened afresh "
            "accepted a column whose type changed",
        ),
        (Trusting, "check_rows (RowsRefused for rows that do not fit)"),
        (Unlisted, "tables(), info(), scan() and table_uri() agreeing: info() counts 4"),
        (
            DropsUpserts,
            "upsert (the rows read back, counts added per key): scan('conformance_upsert') "
            "is None after upsert() wrote rows to it",
        ),
        (
            KeepsFirstSighting,
            "upsert (the rows read back, counts added per key): after a second upsert() of a "
            "key the table held and a new one, scan() reads per key ['s/t/key/$.a/x: count 2, "
            "seen 03:04:05..03:04:05',",
        ),
        (EagerDryRun, "maintenance (every row kept, a dry run writes nothing): a dry run"),
        (
            TidyingDryRun,
            "maintenance (every row kept, a dry run writes nothing): a dry run changed the "
            "table's files: added [], removed ['date=2026-01-02/part-",
        ),
        (
            CheckpointingDryRun,
            "maintenance (every row kept, a dry run writes nothing): a dry run changed the "
            "table's files: added ['_delta_log/",
        ),
    ],
    ids=[
        "no-skip",
        "forgetful",
        "type-change",
        "type-change-reopened",
        "check-rows",
        "info",
        "upsert-dropped",
        "upsert-count",
        "dry-run",
        "dry-run-deletes",
        "dry-run-writes",
    ],
)
def test_a_broken_sink_fails_check_sink_naming_the_property(tmp_path, sink, broken):
    with pytest.raises(AssertionError) as failure:
        check_sink(sink, tmp_path)
    assert f"sink type {sink.type!r} breaks {broken}" in str(failure.value)


SEQUENCE = """
[sink]
type = "parquet"
uri = "tables"
flush_interval = 0.05
{settings}

[sources.seq]
type = "test_sequence"
count = 50
"""


def test_a_sink_types_own_keys_reach_the_sink_as_its_settings(pm, tmp_path, write_toml):
    pm.register(Plugin(SequenceSource, sinks=[ParquetSink]), name="t")
    path = write_toml(SEQUENCE.format(settings='compression = "snappy"'))
    pipeline = load_pipeline(path, load(pm, entry_points=False))
    sink = ParquetSink(pipeline.sink)
    assert sink.settings == ParquetSettings(compression="snappy")


def test_an_unknown_key_of_a_sink_type_is_named_with_a_suggestion(pm, write_toml):
    pm.register(Plugin(SequenceSource, sinks=[ParquetSink]), name="t")
    path = write_toml(SEQUENCE.format(settings='compresion = "snappy"'))
    with pytest.raises(ConfigError) as error:
        load_pipeline(path, load(pm, entry_points=False))
    assert "lakeflow.toml: sink.compresion: unknown key; did you mean 'compression'?" in str(
        error.value
    )


def test_a_bad_value_of_a_sink_types_key_names_the_key(pm, write_toml):
    pm.register(Plugin(SequenceSource, sinks=[ParquetSink]), name="t")
    path = write_toml(SEQUENCE.format(settings='compression = "lz5"'))
    with pytest.raises(ConfigError, match=r"lakeflow\.toml: sink\.compression: Input should be"):
        load_pipeline(path, load(pm, entry_points=False))


def test_the_delta_sinks_keys_are_not_another_sink_types(pm, write_toml):
    pm.register(Plugin(SequenceSource, sinks=[ParquetSink]), name="t")
    path = write_toml(SEQUENCE.format(settings='z_order = ["n"]'))
    with pytest.raises(ConfigError, match=r"sink\.z_order: unknown key"):
        load_pipeline(path, load(pm, entry_points=False))


def test_a_pipeline_runs_into_the_tiny_sink(pm, tmp_path):
    pm.register(Plugin(SequenceSource, sinks=[ParquetSink]), name="t")
    result, tables = run(
        pm,
        tmp_path,
        SEQUENCE.format(settings=""),
        until=lambda stats: stats["seq"].rows >= 50,
    )
    assert result.ok
    scan = ParquetSink(SinkConfig(type="parquet", uri=str(tables))).scan("test_records")
    assert scan is not None
    assert scan.collect()["n"].sort().to_list() == list(range(1, 51))
