"""The Delta sink says what a failed commit calls for by the error's kind, so the committer
never reads error text: rows at fault, a person to act, or an outage to wait out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from lakeflow_testsource import RECORD

import lakeflow.sinks.delta.sink as delta_sink
from lakeflow.config import SinkConfig
from lakeflow.errors import RowsRefused, SchemaMismatch, SinkError
from lakeflow.runtime.committer import failure_kind
from lakeflow.schema import TableSchema
from lakeflow.sinks.delta import DeltaSink
from lakeflow.sinks.delta.store import StoreError

TABLE = "test_records"


@pytest.fixture
def sink(tmp_path: Path) -> DeltaSink:
    return DeltaSink(SinkConfig(uri=str(tmp_path)))


def rows(n: int, value: str = "1.5") -> pl.DataFrame:
    now = datetime.now(UTC)
    return pl.DataFrame(
        {"source": "t", "n": n, "value": value, "received_at": now, "date": now.date()}
    )


def kind_of_commit(sink: DeltaSink, frame: pl.DataFrame, sequence: int = 2) -> str:
    with pytest.raises(Exception) as failure:
        sink.commit(TABLE, RECORD, frame, "t", sequence)
    return failure_kind(failure.value)


def log_entry(sink: DeltaSink, version: int) -> Path:
    return Path(sink.table_uri(TABLE)) / "_delta_log" / f"{version:020d}.json"


def test_rows_that_cannot_take_the_schemas_types_are_the_rows_fault(sink):
    assert kind_of_commit(sink, rows(1, value="not a number")) == "rows"


def test_a_changed_column_type_needs_a_person(sink):
    sink.commit(TABLE, RECORD, rows(1), "t", 1)
    retyped = TableSchema(
        name=RECORD.name, table=TABLE, columns={**RECORD.columns, "n": pl.String()}
    )
    with pytest.raises(SchemaMismatch) as failure:
        sink.commit(TABLE, retyped, rows(2).with_columns(pl.col("n").cast(pl.String)), "t", 2)
    assert failure_kind(failure.value) == "refused"


def test_a_log_entry_the_sink_cannot_read_is_an_outage_not_the_rows(sink):
    # Bytes the store served wrong, or a broken entry: the rows are fine, and must not
    # be set aside as dead letters; the commit is retried.
    sink.commit(TABLE, RECORD, rows(1), "t", 1)
    log_entry(sink, 1).write_text("{not json\n")
    fresh = DeltaSink(sink.config)
    with pytest.raises(StoreError) as failure:
        fresh.commit(TABLE, RECORD, rows(2), "t", 2)
    assert not failure.value.config
    assert failure_kind(failure.value) == "transient"


def test_a_table_needing_delta_features_this_deltalake_lacks_needs_a_person(sink):
    sink.commit(TABLE, RECORD, rows(1), "t", 1)
    protocol = {
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": ["futureFeature"],
        "writerFeatures": ["futureFeature"],
    }
    log_entry(sink, 1).write_text(
        json.dumps({"protocol": protocol}) + "\n" + json.dumps({"commitInfo": {}}) + "\n"
    )
    fresh = DeltaSink(sink.config)
    with pytest.raises(SinkError, match="uses Delta features this deltalake cannot read"):
        fresh.commit(TABLE, RECORD, rows(2), "t", 2)
    assert kind_of_commit(DeltaSink(sink.config), rows(2)) == "refused"


# The two failures below come from races (another writer winning every retry, a table
# deleted between the open and the write) that cannot be staged on one machine on time:
# the writer is replaced by one that fails the way deltalake does.


@pytest.mark.parametrize(
    "error",
    [
        CommitFailedError("Transaction failed: version already exists"),
        TableNotFoundError("no log files"),
    ],
    ids=["lost-every-race", "table-deleted-meanwhile"],
)
def test_a_race_the_sink_lost_is_retried(sink, monkeypatch, error):
    sink.commit(TABLE, RECORD, rows(1), "t", 1)

    def failing(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(delta_sink, "write_deltalake", failing)
    with pytest.raises(StoreError) as failure:
        sink.commit(TABLE, RECORD, rows(2), "t", 2)
    assert failure_kind(failure.value) == "transient"


def test_a_writer_error_that_does_not_say_whose_fault_it_is_passes_as_it_is(sink, monkeypatch):
    # The committer then asks check_rows (which writes nothing) whether the rows are at fault.
    sink.commit(TABLE, RECORD, rows(1), "t", 1)

    def failing(*args: object, **kwargs: object) -> None:
        raise DeltaError("Generic error: something the writer did not like")

    monkeypatch.setattr(delta_sink, "write_deltalake", failing)
    assert kind_of_commit(sink, rows(2)) == "unknown"


def test_check_rows_says_rows_whose_values_the_writer_refuses(sink):
    with pytest.raises(RowsRefused):
        sink.check_rows(TABLE, RECORD, rows(1, value="not a number"))
