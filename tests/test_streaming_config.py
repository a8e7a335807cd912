"""``silence_timeout`` lives in :class:`lakeflow.StreamingConfig`: validated there, defaulted
by the source type's config, read by the runtime through ``silence_limit()`` alone."""

from __future__ import annotations

import polars as pl
import pytest
from lakeflow_testsource import ClockSource

import lakeflow
from harness import Plugin
from lakeflow.config import SourceSpec, load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load


class AnyStreamSource(lakeflow.StreamingSource):
    """A stream that never connects: only its config is under test."""

    schema = "test_record"

    async def stream(self, feed: lakeflow.Feed) -> None:
        raise NotImplementedError

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        return lakeflow.Decoded(rows=pl.DataFrame())


class BusyConfig(lakeflow.StreamingConfig):
    """A stream that pushes every second: its type's default is the field's."""

    silence_timeout: float | None = 30.0


class MarketConfig(lakeflow.StreamingConfig):
    """A whole market is busy, one symbol may be quiet for hours: a default by method."""

    symbols: list[str] = []

    def default_silence_timeout(self) -> float | None:
        return None if self.symbols else 300.0


class PlainStream(AnyStreamSource):
    type = "in_test_plain"


class BusyStream(AnyStreamSource):
    type = "in_test_busy"
    Config = BusyConfig


class MarketStream(AnyStreamSource):
    type = "in_test_market"
    Config = MarketConfig


@pytest.fixture
def configure(pm, tmp_path):
    """Load a pipeline of one source ``s`` with the given keys; return its spec."""
    pm.register(Plugin(PlainStream, BusyStream, MarketStream, ClockSource), name="t")
    registry = load(pm, entry_points=False)

    def spec_of(section: str) -> SourceSpec:
        path = tmp_path / "lakeflow.toml"
        path.write_text(f"[sources.s]\n{section}\n")
        return load_pipeline(path, registry).sources["s"]

    return spec_of


def limit(spec: SourceSpec) -> float | None:
    assert isinstance(spec.config, lakeflow.StreamingConfig)
    return spec.config.silence_limit()


def test_a_streaming_source_without_a_config_of_its_own_gets_the_streaming_config(configure):
    spec = configure('type = "in_test_plain"')

    assert type(spec.config) is lakeflow.StreamingConfig
    assert limit(spec) is None


def test_silence_timeout_takes_a_duration_string(configure):
    spec = configure('type = "in_test_plain"\nsilence_timeout = "5m"')

    assert limit(spec) == 300.0


def test_silence_timeout_takes_seconds(configure):
    assert limit(configure('type = "in_test_plain"\nsilence_timeout = 90')) == 90.0


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-1", "must not be negative"),
        ('"soon"', "not a duration"),
        ("true", "must be seconds"),
    ],
)
def test_a_bad_silence_timeout_is_refused_naming_the_file_and_key(configure, value, problem):
    with pytest.raises(
        ConfigError, match=rf"lakeflow\.toml: sources\.s\.silence_timeout: .*{problem}"
    ):
        configure(f'type = "in_test_busy"\nsilence_timeout = {value}')


def test_silence_timeout_zero_turns_the_check_off_even_over_a_default(configure):
    assert limit(configure('type = "in_test_busy"\nsilence_timeout = 0')) is None
    assert limit(configure('type = "in_test_market"\nsilence_timeout = 0')) is None


def test_a_source_type_sets_its_default_as_the_fields_default(configure):
    assert limit(configure('type = "in_test_busy"')) == 30.0


def test_a_source_type_derives_its_default_from_its_other_keys(configure):
    assert limit(configure('type = "in_test_market"')) == 300.0
    assert limit(configure('type = "in_test_market"\nsymbols = ["BTCUSDT"]')) is None


def test_the_pipelines_silence_timeout_beats_the_source_types_default(configure):
    assert limit(configure('type = "in_test_busy"\nsilence_timeout = "2m"')) == 120.0
    market = 'type = "in_test_market"\nsymbols = ["BTCUSDT"]\nsilence_timeout = "1h"'
    assert limit(configure(market)) == 3600.0


def test_silence_timeout_left_unset_in_python_is_the_default_too():
    assert BusyConfig(silence_timeout=None).silence_limit() == 30.0
    assert MarketConfig(silence_timeout=None).silence_limit() == 300.0


def test_a_source_type_that_changes_only_the_default_keeps_the_keys_description():
    own = BusyConfig.model_fields["silence_timeout"]
    base = lakeflow.StreamingConfig.model_fields["silence_timeout"]

    assert own.default == 30.0
    assert own.description == base.description
    assert base.description and "0 turns the check off" in base.description


def test_a_polling_source_given_silence_timeout_is_told_its_health_follows_its_polls(
    configure,
):
    with pytest.raises(ConfigError) as refused:
        configure('type = "test_clock"\nsilence_timeout = "5m"')

    assert str(refused.value).endswith(
        "sources.s.silence_timeout: applies to streaming sources only; 'test_clock' polls, "
        "and its health follows its polls"
    )


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ("", "never judged without data (source type's default)"),
        ('silence_timeout = "90s"', "more than 90s without data (pipeline)"),
        ("silence_timeout = 0", "never judged without data (pipeline)"),
    ],
)
def test_validate_says_when_a_stream_is_silent_and_who_said_so(cli, write_toml, keys, said):
    write_toml(f'[sources.seq]\ntype = "test_sequence"\n{keys}\n')

    done = cli("validate")

    assert done.returncode == 0, done.stderr
    assert f"    silent when: {said}" in done.stdout
