"""A record schema that gains nullable columns lands in a table written before it grew.

Real Delta tables on disk: the sink commits rows of an old schema, then of the same
schema with a column added (what a plugin upgrade does), and the table follows.
Everything else (a changed type, a dropped column) is refused.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from lakeflow import DECIMAL, SchemaMismatch, TableSchema
from lakeflow.config import SinkConfig
from lakeflow.sinks.delta import DeltaSink

TABLE = "prices"
APP = "prices"
DAY = date(2024, 11, 25)

OLD = TableSchema(
    name="ticker",
    table=TABLE,
    columns={"symbol": pl.String(), "volume": DECIMAL, "date": pl.Date()},
)
# The upgrade: two nullable columns, one inserted mid-schema, one at the end.
NEW = TableSchema(
    name="ticker",
    table=TABLE,
    columns={
        "symbol": pl.String(),
        "pair": pl.String(),
        "volume": DECIMAL,
        "date": pl.Date(),
        "contract_volume": DECIMAL,
    },
)


def old_rows(*symbols: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": list(symbols), "volume": ["1.5"] * len(symbols), "date": [DAY] * len(symbols)}
    ).with_columns(pl.col("volume").cast(DECIMAL))


def new_rows(*symbols: str) -> pl.DataFrame:
    return old_rows(*symbols).with_columns(
        pl.lit("BTCUSD").alias("pair"), pl.lit("3").cast(DECIMAL).alias("contract_volume")
    )


@pytest.fixture
def sink(tmp_path: Path) -> DeltaSink:
    """A sink whose table was written by the old schema (transaction version 1)."""
    sink = DeltaSink(SinkConfig(uri=str(tmp_path / "tables")))
    assert sink.commit(TABLE, OLD, old_rows("ETHUSD_PERP"), APP, 1)
    return sink


def read(sink: DeltaSink) -> pl.DataFrame:
    return pl.read_delta(sink.table_uri(TABLE)).sort("symbol")


def test_a_commit_with_added_columns_lands_and_old_rows_read_null(sink: DeltaSink) -> None:
    assert sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)

    rows = read(sink)
    assert rows.to_dicts() == [
        {
            "symbol": "BTCUSD_PERP",
            "volume": Decimal("1.5"),
            "date": DAY,
            "pair": "BTCUSD",
            "contract_volume": Decimal("3"),
        },
        {
            "symbol": "ETHUSD_PERP",
            "volume": Decimal("1.5"),
            "date": DAY,
            "pair": None,
            "contract_volume": None,
        },
    ]


def test_added_columns_are_nullable_and_typed_as_the_schema_says(sink: DeltaSink) -> None:
    sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)

    fields = {f.name: f for f in DeltaTable(sink.table_uri(TABLE)).schema().fields}
    assert fields["pair"].nullable and fields["contract_volume"].nullable
    assert read(sink).schema["contract_volume"] == DECIMAL


def test_a_merging_commit_records_its_transaction_version(sink: DeltaSink) -> None:
    sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)

    assert DeltaTable(sink.table_uri(TABLE)).transaction_version(APP) == 2
    assert sink.committed_sequence(TABLE, APP) == 2
    # Exactly once still holds: the same batch again is skipped, not written twice.
    assert not sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)
    assert read(sink).height == 2


def test_a_merging_commit_keeps_the_partitioning(sink: DeltaSink) -> None:
    sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)

    table = DeltaTable(sink.table_uri(TABLE))
    assert table.metadata().partition_columns == ["date"]
    assert all(f"date={DAY}" in path for path in table.file_uris())


def test_commits_after_the_merge_append_to_the_evolved_table(sink: DeltaSink) -> None:
    sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)
    # The same sink (its cached table handle) and a fresh one both see the new schema.
    assert sink.commit(TABLE, NEW, new_rows("BTCUSD_250627"), APP, 3)
    other = DeltaSink(sink.config)
    assert other.commit(TABLE, NEW, new_rows("ETHUSD_250627"), "other", 1)

    rows = read(sink)
    assert rows["symbol"].to_list() == [
        "BTCUSD_250627",
        "BTCUSD_PERP",
        "ETHUSD_250627",
        "ETHUSD_PERP",
    ]
    assert rows["pair"].to_list() == ["BTCUSD", "BTCUSD", "BTCUSD", None]
    assert DeltaTable(sink.table_uri(TABLE)).version() == 3  # no extra metadata-only commit


def test_polars_scans_and_reads_the_evolved_table(sink: DeltaSink) -> None:
    sink.commit(TABLE, NEW, new_rows("BTCUSD_PERP"), APP, 2)
    uri = sink.table_uri(TABLE)

    scanned = (
        pl.scan_delta(uri)
        .filter(pl.col("date") == DAY)
        .select("symbol", "pair", "contract_volume")
        .sort("symbol")
        .collect()
    )
    assert scanned.rows() == [("BTCUSD_PERP", "BTCUSD", Decimal("3")), ("ETHUSD_PERP", None, None)]
    assert set(pl.read_delta(uri).columns) == set(NEW.columns)
    assert sink.scan(TABLE).select(pl.col("pair").null_count()).collect().item() == 1


def test_a_changed_column_type_is_refused_naming_the_table_and_column(sink: DeltaSink) -> None:
    changed = TableSchema(
        name="ticker",
        table=TABLE,
        columns={"symbol": pl.String(), "volume": pl.String(), "date": pl.Date()},
    )
    rows = old_rows("BTCUSD_PERP").with_columns(pl.col("volume").cast(pl.String))

    with pytest.raises(SchemaMismatch) as refused:
        sink.commit(TABLE, changed, rows, APP, 2)

    message = str(refused.value)
    for part in ("'prices'", "'volume'", "decimal(38,18) in the table", "string in", "new table"):
        assert part in message
    assert read(sink)["volume"].to_list() == [Decimal("1.5")]  # nothing written or cast


def test_a_column_the_schema_no_longer_has_is_refused_by_name(sink: DeltaSink) -> None:
    dropped = TableSchema(
        name="ticker", table=TABLE, columns={"symbol": pl.String(), "date": pl.Date()}
    )

    with pytest.raises(SchemaMismatch, match=r"'prices'.*column\(s\) 'volume'.*no longer has"):
        sink.commit(TABLE, dropped, old_rows("BTCUSD_PERP").drop("volume"), APP, 2)
    assert DeltaTable(sink.table_uri(TABLE)).version() == 0


def test_a_type_change_beside_an_added_column_merges_nothing(sink: DeltaSink) -> None:
    # Merge mode would cast the string into the decimal column; the sink refuses first.
    both = TableSchema(
        name="ticker",
        table=TABLE,
        columns={**NEW.columns, "volume": pl.String()},
    )
    rows = new_rows("BTCUSD_PERP").with_columns(pl.col("volume").cast(pl.String))

    with pytest.raises(SchemaMismatch, match="'volume'"):
        sink.commit(TABLE, both, rows, APP, 2)
    assert set(read(sink).columns) == set(OLD.columns)
