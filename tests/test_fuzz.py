"""Property tests: no input crashes a decoder or the config loader, and nothing is dropped."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeflow import TIMESTAMP, Batch
from lakeflow.config import load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load

REGISTRY = load()
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
def force_orders(draw: st.DrawFn) -> bytes:
    """forceOrder frames with arbitrary values, missing and extra fields."""
    order = {
        key: draw(numbers if key in "qpapzl" else st.text(max_size=8))
        for key in ["s", "S", "o", "f", "q", "p", "ap", "X", "l", "z"]
        if draw(st.booleans()) or key in "sp"
    }
    order["T"] = draw(st.integers(min_value=-(2**63), max_value=2**63) | st.text(max_size=5))
    event = {"e": "forceOrder", "E": draw(st.integers(0, 2**62)), "o": order}
    if draw(st.booleans()):
        event["extra"] = draw(json_values)
    return json.dumps(event).encode()


payloads = st.lists(
    st.one_of(
        st.binary(max_size=60),
        json_values.map(lambda v: json.dumps(v).encode()),
        force_orders(),
        force_orders().map(lambda b: b[: len(b) // 2]),  # truncated
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


def assert_accounted(kind: str, items: list[bytes], per_payload_rows: bool) -> None:
    decoded = source(kind).decode(batch_of(items))
    indices = [i for i, _ in decoded.rejects]
    assert len(set(indices)) == len(indices)
    assert all(0 <= i < len(items) for i in indices)
    assert all(reason for _, reason in decoded.rejects)
    schema = REGISTRY.schemas[REGISTRY.sources[kind].cls.schema]
    schema.conform(decoded.rows)  # every row fits the table
    if per_payload_rows:
        # Each payload is exactly one of: a row, a dead letter, an ignored control frame.
        assert decoded.rows.height + len(indices) + decoded.ignored == len(items)


@SETTINGS
@given(payloads)
def test_liquidation_decoder_accounts_for_every_payload(items):
    assert_accounted("binance_liquidations", items, per_payload_rows=True)


@SETTINGS
@given(payloads)
def test_test_source_decoder_accounts_for_every_payload(items):
    assert_accounted("test_sequence", items, per_payload_rows=True)


@SETTINGS
@given(
    st.lists(
        st.one_of(payloads.map(lambda p: b"[" + b",".join(p) + b"]"), st.binary(max_size=80)),
        min_size=1,
        max_size=5,
    )
)
def test_prices_decoder_never_raises_and_rows_fit_the_table(items):
    assert_accounted("binance_prices", items, per_payload_rows=False)


toml_scalars = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=3),
)
sections = st.dictionaries(
    st.sampled_from(["type", "table", "market", "symbols", "interval", "count", "ws_url", "bogus"]),
    toml_scalars | st.sampled_from(["binance_prices", "binance_liquidations", "test_sequence"]),
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
