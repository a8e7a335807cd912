"""The pipeline file: every documented bad input gives a clear error naming key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeflow.config import load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load

GOOD = """
[sink]
uri = "tables"

[sources.seq]
type = "test_sequence"
count = 10
"""


@pytest.fixture(scope="module")
def registry():
    return load()


def error_of(write_toml, registry, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_pipeline(write_toml(text), registry)
    return str(info.value)


def test_valid_pipeline_resolves_the_sink_folder_beside_the_file(write_toml, registry, tmp_path):
    pipeline = load_pipeline(write_toml(GOOD), registry)
    assert pipeline.sink.uri == str(tmp_path / "tables")
    assert pipeline.sources["seq"].table == "test_records"
    assert pipeline.sources["seq"].config.count == 10


def test_unknown_source_key_is_named_with_a_suggestion(write_toml, registry):
    message = error_of(write_toml, registry, GOOD + "cuont = 3\n")
    assert "sources.seq.cuont: unknown key; did you mean 'count'?" in message


def test_unknown_sink_key_is_named_with_a_suggestion(write_toml, registry):
    message = error_of(write_toml, registry, GOOD.replace('uri = "tables"', 'url = "x"'))
    assert "sink.url: unknown key; did you mean 'uri'?" in message


def test_wrong_type_names_the_key(write_toml, registry):
    message = error_of(write_toml, registry, GOOD.replace("count = 10", 'count = "many"'))
    assert "sources.seq.count:" in message
    assert "integer" in message


def test_missing_variable_is_named(write_toml, registry, monkeypatch):
    monkeypatch.delenv("LAKEFLOW_TEST_MISSING", raising=False)
    message = error_of(write_toml, registry, GOOD.replace('"tables"', '"${LAKEFLOW_TEST_MISSING}"'))
    assert "sink.uri: environment variable LAKEFLOW_TEST_MISSING is not set" in message


def test_bad_table_name_is_refused(write_toml, registry):
    message = error_of(write_toml, registry, GOOD + 'table = "../escape"\n')
    assert "sources.seq.table:" in message
    assert "only letters, digits and '_'" in message


def test_reserved_table_name_is_refused(write_toml, registry):
    message = error_of(write_toml, registry, GOOD + 'table = "_dead_letters"\n')
    assert "reserved" in message


def test_unknown_source_type_suggests_the_close_one(write_toml, registry):
    message = error_of(write_toml, registry, GOOD.replace("test_sequence", "test_sequense"))
    assert (
        "sources.seq.type: unknown source type 'test_sequense'; did you mean 'test_sequence'?"
        in message
    )


def test_invalid_toml_is_reported_with_its_position(write_toml, registry):
    message = error_of(write_toml, registry, "[sink\n")
    assert "invalid TOML" in message


def test_missing_file_is_reported(registry, tmp_path):
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_pipeline(tmp_path / "nope.toml", registry)


def test_variables_come_from_the_environment(write_toml, registry, monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEFLOW_TEST_DIR", "elsewhere")
    pipeline = load_pipeline(
        write_toml(GOOD.replace('"tables"', '"${LAKEFLOW_TEST_DIR}"')), registry
    )
    assert pipeline.sink.uri == str(tmp_path / "elsewhere")


def test_variables_come_from_a_dotenv_beside_the_pipeline(
    write_toml, registry, tmp_path, monkeypatch
):
    monkeypatch.delenv("LAKEFLOW_TEST_DOTENV", raising=False)
    (tmp_path / ".env").write_text('# comment\nexport LAKEFLOW_TEST_DOTENV="from-dotenv"\n')
    pipeline = load_pipeline(
        write_toml(GOOD.replace('"tables"', '"${LAKEFLOW_TEST_DOTENV}"')), registry
    )
    assert pipeline.sink.uri == str(tmp_path / "from-dotenv")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("count = 10", "cuont = 10"), "unknown key"),
        (("count = 10", 'count = "x"'), "sources.seq.count"),
        (('"tables"', '"${NOT_SET_ANYWHERE_X}"'), "NOT_SET_ANYWHERE_X is not set"),
        (("count = 10", 'count = 10\ntable = "a/b"'), "sources.seq.table"),
        (("test_sequence", "nonexistent"), "unknown source type"),
    ],
    ids=["unknown-key", "wrong-type", "missing-variable", "bad-table-name", "unknown-type"],
)
def test_validate_exits_2_with_the_message(cli, write_toml, change, expected):
    write_toml(GOOD.replace(*change))
    done = cli("validate")
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_secret_values_never_appear_in_validate_output(cli, write_toml, tmp_path: Path):
    write_toml(GOOD + '\n[sink.storage_options]\naws_secret_access_key = "${THE_SECRET}"\n')
    done = cli("validate", env={"THE_SECRET": "hunter2-very-secret"})
    assert done.returncode == 0, done.stderr
    assert "hunter2-very-secret" not in done.stdout + done.stderr
