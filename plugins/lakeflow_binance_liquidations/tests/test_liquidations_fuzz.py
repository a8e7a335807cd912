"""Property tests: no frame crashes the decoder and none is dropped; no section crashes the
pipeline loader (moved here from the core suite's tests/test_fuzz.py)."""

from __future__ import annotations

import json
import tempfile

import lakeflow_binance_liquidations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lakeflow_binance_liquidations import LIQUIDATION, BinanceLiquidationsSource, LiquidationsConfig

from lakeflow import Batch
from lakeflow.config import load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load, make_manager
from lakeflow.testing import write_pipeline

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


@SETTINGS
@given(payloads)
def test_liquidation_decoder_accounts_for_every_payload(received_at, items):
    source = BinanceLiquidationsSource("fuzz", LiquidationsConfig())
    decoded = source.decode(Batch(payloads=items, received_at=received_at(len(items))))
    indices = [i for i, _ in decoded.rejects]
    assert len(set(indices)) == len(indices)
    assert all(0 <= i < len(items) for i in indices)
    assert all(reason for _, reason in decoded.rejects)
    LIQUIDATION.conform(decoded.rows)  # every row fits the table
    # Each payload is exactly one of: a row, a dead letter, an ignored control frame.
    assert decoded.rows.height + len(indices) + decoded.ignored == len(items)


#: TOML strings without control characters (a pipeline file cannot hold them raw).
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=12)
toml_scalars = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    text,
    st.lists(text, max_size=3),
    st.lists(st.sampled_from(["market", "legacy", "BTCUSDT", "usdm"]), max_size=3),
)
sections = st.dictionaries(
    st.sampled_from(["table", "market", "symbols", "ws_url", "routes", "bogus"]),
    toml_scalars | st.sampled_from(["usdm", "coinm", "ws://127.0.0.1:9", "wss://x/ws"]),
    max_size=5,
)


def registry():
    pm = make_manager()
    pm.register(lakeflow_binance_liquidations, name="binance_liquidations")
    return load(pm, entry_points=False)


REGISTRY = registry()


@SETTINGS
@given(sections)
def test_any_liquidations_section_loads_or_fails_with_a_config_error(section):
    with tempfile.TemporaryDirectory() as folder:
        path = write_pipeline(folder, "binance_liquidations", section)
        try:
            load_pipeline(path, REGISTRY)
        except ConfigError as exc:
            assert str(exc).startswith(str(path))
