"""Every config key that is a duration takes one grammar: seconds, or a string with units."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from harness import needs_workspace_plugins
from lakeflow.config.models import PipelineFile
from lakeflow.plugins import load

#: What makes a key a duration by its name. A new key named like these is found (and must
#: take the grammar) without editing this file.
DURATION_KEY = re.compile(r"(^|_)(interval|timeout|retention)$")
#: Values for the keys some source types require, so that a duration key is tried alone.
REQUIRED = {"url": "http://127.0.0.1:9/"}


def _models() -> list[tuple[str, type[BaseModel]]]:
    """The core sections, every installed sink type's Config and every source type's Config."""
    registry = load()
    models: list[tuple[str, type[BaseModel]]] = [
        (section, field.annotation)
        for section, field in PipelineFile.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    ]
    models += [(f"sink type {name}", sink.Config) for name, sink in registry.sinks.items()]
    models += [(f"source type {name}", info.cls.Config) for name, info in registry.sources.items()]
    return models


def _duration_keys() -> list[Any]:
    return [
        pytest.param(model, key, id=f"{where}.{key}")
        for where, model in _models()
        for key, field in model.model_fields.items()
        # A key typed Any is kept as written (the deprecated [maintenance] retentions,
        # which the sink type's Config reads).
        if DURATION_KEY.search(key) and field.annotation is not Any
    ]


DURATION_KEYS = _duration_keys()


def _with(model: type[BaseModel], key: str, value: object) -> dict[str, object]:
    """``{key: value}`` and the model's required keys (from :data:`REQUIRED`)."""
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    missing = [name for name in required if name not in REQUIRED]
    assert not missing, f"{model.__name__} requires {missing}: add a value to REQUIRED"
    return {**{name: REQUIRED[name] for name in required}, key: value}


@needs_workspace_plugins
def test_the_known_duration_keys_are_found():
    found = {param.id for param in DURATION_KEYS}
    assert {
        "sink.flush_interval",
        "log.status_interval",
        "runtime.fsync_interval",
        "runtime.stop_timeout",
        "maintenance.interval",
        "sink type delta.vacuum_retention",
        "sink type delta.log_retention",
        "source type binance_prices.interval",
        "source type binance_prices.timeout",
        "source type bybit_liquidations.refresh_interval",
        "source type okx_liquidations.refresh_interval",
        "source type binance_liquidations.silence_timeout",
    } <= found


@pytest.mark.parametrize(("model", "key"), DURATION_KEYS)
def test_a_duration_key_takes_1m_as_60_seconds(model: type[BaseModel], key: str):
    written = getattr(model.model_validate(_with(model, key, "1m")), key)
    assert written == getattr(model.model_validate(_with(model, key, 60)), key) == 60


@pytest.mark.parametrize(("model", "key"), DURATION_KEYS)
def test_a_duration_key_refuses_what_is_not_a_duration(model: type[BaseModel], key: str):
    with pytest.raises(ValidationError) as info:
        model.model_validate(_with(model, key, "1 fortnight"))
    assert [error["loc"] for error in info.value.errors()] == [(key,)]


PRICES = """
[sink]
uri = "tables"

[sources.prices]
type = "binance_prices"
symbols = ["BTCUSDT"]
interval = {interval}
"""


@needs_workspace_plugins
def test_validate_takes_a_prices_interval_with_a_unit(cli, write_toml):
    write_toml(PRICES.format(interval='"1m"'))
    done = cli("validate")
    assert done.returncode == 0, done.stderr


@needs_workspace_plugins
def test_validate_names_the_key_of_a_bad_duration(cli, write_toml):
    write_toml(PRICES.format(interval='"1 minute"'))
    done = cli("validate")
    assert done.returncode == 2, done.stderr
    assert "sources.prices.interval" in done.stderr
    assert "is not a duration" in done.stderr
