"""Property tests: no input crashes a decoder or the config loader, and nothing is dropped.

The in-test plugin's sources stand for every plugin here; each first-party plugin fuzzes
its own decoder and config in its tests folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import lakeflow_testsource
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeflow import TIMESTAMP, Batch
from lakeflow.config import load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load, make_manager


def in_test_registry():
    """The built-in sink and the in-test plugin only: no entry point, no installed plugin."""
    pm = make_manager()
    pm.register(lakeflow_testsource, name="testsource")
    return load(pm, entry_points=False)


REGISTRY = in_test_registry()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
numbers = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(max_size=10),
)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """``test_record`` payloads with arbitrary values, missing and extra fields."""
    record = {}
    if draw(st.booleans()):
        record["n"] = draw(st.integers(min_value=-(2**70), max_value=2**70) | numbers)
    if draw(st.booleans()):
        record["value"] = draw(numbers | json_values)
    if draw(st.booleans()):
        record["extra"] = draw(json_values)
    return json.dumps(record).encode()


payloads = st.lists(
    st.one_of(
        st.binary(max_size=60),
        json_values.map(lambda v: json.dumps(v).encode()),
        records(),
        records().map(lambda b: b[: len(b) // 2]),  # truncated
    ),
    min_size=1,
    max_size=25,
)


def batch_of(items: list[bytes]) -> Batch:
    times = pl.Series(range(len(items)), dtype=pl.Int64).cast(TIMESTAMP)
    return Batch(payloads=items, received_at=times)


def source(kind: str):
    cls = REGISTRY.sources[kind].cls
    return cls("fuzz", cls.Config())


def assert_accounted(kind: str, items: list[bytes]) -> None:
    decoded = source(kind).decode(batch_of(items))
    indices = [i for i, _ in decoded.rejects]
    assert len(set(indices)) == len(indices)
    assert all(0 <= i < len(items) for i in indices)
    assert all(reason for _, reason in decoded.rejects)
    schema = REGISTRY.schemas[REGISTRY.sources[kind].cls.schema]
    schema.conform(decoded.rows)  # every row fits the table
    # Each payload is exactly one of: a row, a dead letter, an ignored control frame.
    assert decoded.rows.height + len(indices) + decoded.ignored == len(items)


@SETTINGS
@given(payloads)
def test_test_source_decoder_accounts_for_every_payload(items):
    assert_accounted("test_sequence", items)


toml_scalars = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=3),
)
sections = st.dictionaries(
    st.sampled_from(["type", "table", "count", "rate", "bad_every", "url", "interval", "bogus"]),
    toml_scalars | st.sampled_from(["test_sequence", "test_clock", "test_websocket", "test_http"]),
    max_size=5,
)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["uri", "flush_interval", "flush_rows", "type", "nope"]),
        toml_scalars,
        max_size=3,
    ),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_-]{0,8}", fullmatch=True) | st.text(max_size=4),
        sections,
        max_size=3,
    ),
)
def test_any_pipeline_file_loads_or_fails_with_a_config_error(sink, sources):
    lines = ["[sink]", *(f"{k} = {toml_value(v)}" for k, v in sink.items())]
    for name, section in sources.items():
        lines.append(f"[sources.{json.dumps(name)}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in section.items()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lakeflow.toml"
        path.write_text("\n".join(lines))
        try:
            load_pipeline(path, REGISTRY)
        except ConfigError as exc:
            assert str(exc).startswith(str(path))
