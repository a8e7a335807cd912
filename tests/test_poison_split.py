"""A row that cannot be stored never blocks the others.

When a commit fails because of what some rows hold, the committer finds the payloads
responsible by halving the batch against the sink's ``check_rows`` (which writes
nothing), commits the rest once, and puts those payloads in ``_dead_letters`` with the
writer's reason. A failure the rows do not explain is retried, not dead-lettered.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from lakeflow_testsource import RECORD, SequenceSource

from harness import Plugin, run
from lakeflow import Batch, Decoded, RowsRefused
from lakeflow.config.models import SinkConfig
from lakeflow.runtime.committer import check_plausible, failure_kind
from lakeflow.sinks.delta import DeltaSink

COUNT = 40
POISON = 7


def pipeline(source: str, sink: str = "delta") -> str:
    return (
        f'[sink]\ntype = "{sink}"\nflush_interval = 0.2\nflush_rows = 100\n'
        f'[sources.s]\ntype = "{source}"\ncount = {COUNT}\n'
    )


def landed(stats) -> bool:
    return stats["s"].rows + stats["s"].dead_letters >= COUNT


class FarFuture(SequenceSource):
    """Decodes payload n = POISON with a partition date in year 10000.

    Its own decoder, not decode_json (which refuses such times field by field): the
    runtime's guard must catch what any decoder lets through.
    """

    type = "test_far_future"

    def decode(self, batch: Batch) -> Decoded:
        decoded = super().decode(batch)
        decoded.rows = decoded.rows.with_columns(
            date=pl.when(pl.col("n") == POISON)
            .then(pl.lit(date(9999, 12, 31)))
            .otherwise(pl.col("date"))
        )
        return decoded


class TooLarge(SequenceSource):
    """Decodes payload n = POISON into a value no Decimal(38, 18) column can hold."""

    type = "test_too_large"

    def decode(self, batch: Batch) -> Decoded:
        decoded = super().decode(batch)
        decoded.rows = decoded.rows.with_columns(
            value=pl.when(pl.col("n") == POISON)
            .then(pl.lit(1e30))
            .otherwise(pl.col("value").cast(pl.Float64))
        )
        return decoded


@pytest.mark.parametrize(
    ("source", "reason"),
    [(FarFuture, "not a plausible time"), (TooLarge, "cannot store the rows")],
)
def test_a_payload_whose_rows_cannot_be_stored_is_a_dead_letter_and_the_rest_lands(
    pm, tmp_path, source, reason
):
    pm.register(Plugin(source), name="t")
    _result, tables = run(pm, tmp_path, pipeline(source.type), until=landed)
    stored = pl.read_delta(str(tables / "test_records"))
    assert sorted(stored["n"].to_list()) == [n for n in range(1, COUNT + 1) if n != POISON]
    dead = pl.read_delta(str(tables / "_dead_letters"))
    assert dead["payload"].to_list() == [b'{"n": 7, "value": "7.000007"}']
    assert reason in dead["error"][0]


def test_no_partition_outside_the_plausible_window_is_created(pm, tmp_path):
    pm.register(Plugin(FarFuture), name="t")
    _result, tables = run(pm, tmp_path, pipeline(FarFuture.type), until=landed)
    partitions = [p.name for p in (tables / "test_records").glob("date=*")]
    assert partitions and not [p for p in partitions if "9999" in p]


class FailsTwice(DeltaSink):
    """Fails the first two data commits with an error no kind explains.

    A stand-in for a store answering garbage for a while, which cannot be produced on
    demand: the rows are fine (check_rows passes), so the batch is retried, not split.
    """

    type = "fails_twice"
    failures = 0

    def commit(self, table, schema, rows, app_id, sequence):
        if table == "test_records" and FailsTwice.failures < 2:
            FailsTwice.failures += 1
            raise RuntimeError("the store answered nonsense")
        return super().commit(table, schema, rows, app_id, sequence)


def test_a_failure_the_rows_do_not_explain_is_retried_not_dead_lettered(pm, tmp_path):
    pm.register(Plugin(SequenceSource, sinks=[FailsTwice]), name="t")
    _result, tables = run(
        pm,
        tmp_path,
        pipeline("test_sequence", sink="fails_twice"),
        until=lambda stats: stats["s"].rows >= COUNT,
        timeout=40,
    )
    assert FailsTwice.failures == 2
    stored = pl.read_delta(str(tables / "test_records"))
    assert sorted(stored["n"].to_list()) == list(range(1, COUNT + 1))
    assert not (tables / "_dead_letters").exists()


def test_delta_check_rows_refuses_a_partition_value_deltalake_panics_on(tmp_path):
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables")))
    # 9e15 ms after 1970: year ~287,000, where deltalake's partition writer panics.
    rows = pl.DataFrame(
        {
            "source": ["s"],
            "n": [1],
            "value": ["1.5"],
            "received_at": [9_000_000_000_000_000_000],
            "date": [0],
        }
    ).with_columns(
        pl.col("value").cast(RECORD.columns["value"]),
        pl.col("received_at").cast(pl.Datetime("us", "UTC")),
        pl.col("received_at").cast(pl.Datetime("us", "UTC")).dt.date().alias("date"),
    )
    with pytest.raises(RowsRefused, match="cannot store the rows"):
        sink.check_rows("test_records", RECORD, rows)
    assert not (tmp_path / "tables").exists()  # nothing written anywhere


def test_delta_check_rows_accepts_good_rows_without_writing(tmp_path):
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables")))
    rows = pl.DataFrame(
        {"source": ["s"], "n": [1], "value": ["1.5"], "received_at": [None], "date": [None]}
    ).with_columns(pl.col("value").cast(RECORD.columns["value"]))
    sink.check_rows("test_records", RECORD, rows.cast(RECORD.polars_schema))
    assert not (tmp_path / "tables").exists()


def test_the_plausibility_guard_names_the_column_and_the_value():
    rows = pl.DataFrame({"date": [date(2024, 1, 1), date(1938, 4, 24)]})
    with pytest.raises(RowsRefused, match=r"column 'date' .* = 1938-04-24"):
        check_plausible("test_records", RECORD, rows)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RowsRefused("a value"), "rows"),
        (PermissionError(13, "denied"), "refused"),
        (OSError(28, "No space left on device"), "transient"),
        (RuntimeError("writer join error: task panicked"), "unknown"),
    ],
)
def test_commit_failures_are_told_apart_by_kind(error, kind):
    assert failure_kind(error) == kind
