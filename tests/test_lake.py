"""``lakeflow.Lake``: what a pipeline wrote, read from Python without starting a source.

The tables are written by the real ``lakeflow run`` in a subprocess; the ``Lake`` reads
them in this process, as a notebook would.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

import lakeflow
from harness import committed, run_until
from lakeflow.config import load_pipeline
from lakeflow.plugins import load
from lakeflow.sinks.delta import DeltaSink
from lakeflow.system_tables import GAPS

#: The sink's folder comes from a variable set in ``.env``, as the CLI reads it.
PIPELINE = """
[sink]
uri = "${LAKE_TABLES}"
flush_interval = 0.2

[sources.seq]
type = "test_sequence"
count = 200
"""
COUNT = 200


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose pipeline's one source committed payloads 1..200, then stopped."""
    home = tmp_path_factory.mktemp("collector")
    (home / "lakeflow.toml").write_text(PIPELINE, encoding="utf-8")
    (home / ".env").write_text("LAKE_TABLES=lake-data\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "LAKE_TABLES"}
    run_until(home, lambda: committed(home / "lake-data/test_records", "seq") >= COUNT, env=env)
    return home


@pytest.fixture
def lake(home: Path) -> lakeflow.Lake:
    return lakeflow.Lake(home / "lakeflow.toml")


def test_a_lake_opens_lakeflow_toml_in_the_current_folder_by_default(home, monkeypatch):
    monkeypatch.chdir(home)
    assert lakeflow.Lake().path == Path("lakeflow.toml")


def test_the_sink_folder_resolves_against_the_pipeline_file_with_env_variables(
    lake, home, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # elsewhere: the pipeline file's folder counts, not the cwd
    assert Path(lake.uri) == (home / "lake-data").resolve()


def test_tables_lists_the_tables_that_exist(lake):
    assert lake.tables == ["test_records"]
    assert "test_records" in lake
    assert "_gaps" not in lake


def test_a_table_by_name_is_a_lazy_frame_of_every_committed_row(lake):
    frame = lake["test_records"]
    assert isinstance(frame, pl.LazyFrame)
    assert sorted(frame.select("n").collect()["n"]) == list(range(1, COUNT + 1))


def test_scan_and_indexing_read_the_same_table(lake):
    assert lake.scan("test_records").collect().equals(lake["test_records"].collect())


def test_an_unknown_table_raises_table_not_found_naming_the_tables_there(lake):
    with pytest.raises(lakeflow.TableNotFound, match=r"no table 'nowhere'.*test_records"):
        lake["nowhere"]


def test_table_not_found_is_a_lookup_error_and_a_lakeflow_error(lake):
    with pytest.raises(LookupError):
        lake.info("nowhere")
    assert issubclass(lakeflow.TableNotFound, lakeflow.LakeflowError)


def test_sql_runs_over_the_tables_by_name(lake):
    frame = lake.sql("SELECT count(*) AS rows, max(n) AS last FROM test_records")
    assert isinstance(frame, pl.DataFrame)
    assert frame.rows() == [(COUNT, COUNT)]


def test_sql_can_stay_lazy(lake):
    frame = lake.sql("SELECT n FROM test_records WHERE n > 190", lazy=True)
    assert isinstance(frame, pl.LazyFrame)
    assert frame.collect().height == 10


def test_info_matches_the_delta_table(lake, home):
    info = lake.info("test_records")
    table = DeltaTable(str(home / "lake-data/test_records"))
    assert (info.name, info.version, info.rows) == ("test_records", table.version(), COUNT)
    assert info.files == len(table.file_uris())


def test_overview_has_one_row_per_table(lake):
    overview = lake.overview()
    assert overview["table"].to_list() == ["test_records"]
    assert overview["rows"].to_list() == [COUNT]
    assert overview.schema["last_commit"] == pl.Datetime("us", "UTC")


def test_gaps_and_dead_letters_are_empty_frames_with_their_schema_when_none_was_recorded(lake):
    gaps, dead = lake.gaps.collect(), lake.dead_letters.collect()
    assert (gaps.height, dead.height) == (0, 0)
    assert list(gaps.columns) == ["source", "table", "gap_start", "gap_end", "seconds", "reason"]
    assert dead.schema["payload"] == pl.Binary


def test_gaps_read_the_gaps_table_once_one_is_recorded(tmp_path):
    (tmp_path / "lakeflow.toml").write_text(PIPELINE.replace("${LAKE_TABLES}", "tables"))
    pipeline = load_pipeline(tmp_path / "lakeflow.toml", load())
    start, end = datetime(2026, 4, 23, 10, tzinfo=UTC), datetime(2026, 4, 23, 10, 5, tzinfo=UTC)
    gap = {"source": ["seq"], "table": ["test_records"], "gap_start": [start]}
    gap |= {"gap_end": [end], "seconds": [300.0], "reason": ["disconnected"]}
    rows = pl.DataFrame(gap, schema=dict(GAPS.columns))
    DeltaSink(pipeline.sink).commit(GAPS.table, GAPS, rows, "test", next(itertools.count(1)))
    lake = lakeflow.Lake(tmp_path / "lakeflow.toml")
    assert lake.gaps.collect().rows() == [
        ("seq", "test_records", start, end, 300.0, "disconnected")
    ]
    assert lake.sql('SELECT sum(seconds) FROM "_gaps"').item() == 300.0


def test_a_missing_pipeline_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(lakeflow.ConfigError, match=r"nowhere\.toml: no such pipeline file"):
        lakeflow.Lake(tmp_path / "nowhere.toml")


def test_opening_a_lake_creates_no_table_and_starts_no_source(tmp_path):
    (tmp_path / "lakeflow.toml").write_text(PIPELINE.replace("${LAKE_TABLES}", "tables"))
    lake = lakeflow.Lake(tmp_path / "lakeflow.toml")
    assert lake.tables == []
    assert not (tmp_path / "tables").exists() or not any((tmp_path / "tables").iterdir())
    assert not (tmp_path / "state").exists()


def test_the_repr_names_the_file_and_masks_what_came_from_a_variable(lake, home):
    # Like every value from ${VAR} (it may hold a credential), the folder's name is masked.
    assert repr(lake) == f"Lake({str(home / 'lakeflow.toml')!r}: tables under {home}/***)"
