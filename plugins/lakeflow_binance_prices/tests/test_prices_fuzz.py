"""Property tests: no body crashes the decoder and every row fits the table; no section
crashes the pipeline loader (moved here from the core suite's tests/test_fuzz.py)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime

import lakeflow_binance_prices
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lakeflow_binance_prices import TICKER_24H, BinancePricesConfig, BinancePricesSource

from lakeflow import TIMESTAMP, Batch
from lakeflow.config import load_pipeline
from lakeflow.errors import ConfigError
from lakeflow.plugins import load, make_manager
from lakeflow.testing import write_pipeline

#: When the bodies were polled: a real time, for a ticker time more than 2 days after its
#: receipt, or before 2009, is implausible (``lakeflow.decode.PLAUSIBLE``).
POLLED = datetime(2026, 4, 25, 12, tzinfo=UTC)
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
PRICE_KEYS = ["priceChange", "lastPrice", "lastQty", "openPrice", "highPrice", "volume"]
epochs = st.integers(min_value=-(2**63), max_value=2**63) | st.text(max_size=5)


@st.composite
def tickers(draw: st.DrawFn) -> bytes:
    """24 h ticker objects with arbitrary values, missing and extra fields."""
    ticker = {
        key: draw(numbers)
        for key in ["symbol", *PRICE_KEYS]
        if draw(st.booleans()) or key in ("symbol", "lastPrice")
    }
    for key in ["openTime", "closeTime", "firstId", "count"]:
        if draw(st.booleans()) or key in ("openTime", "closeTime"):
            ticker[key] = draw(epochs)
    if draw(st.booleans()):
        ticker["extra"] = draw(json_values)
    return json.dumps(ticker).encode()


items = st.lists(
    st.one_of(
        st.binary(max_size=60),
        json_values.map(lambda v: json.dumps(v).encode()),
        tickers(),
        tickers().map(lambda b: b[: len(b) // 2]),  # truncated
    ),
    min_size=1,
    max_size=25,
)
#: Response bodies: arrays of the items above (most not valid JSON), or any bytes.
bodies = st.lists(
    st.one_of(items.map(lambda p: b"[" + b",".join(p) + b"]"), st.binary(max_size=80)),
    min_size=1,
    max_size=5,
)


@SETTINGS
@given(bodies)
def test_prices_decoder_never_raises_and_rows_fit_the_table(bodies):
    source = BinancePricesSource("fuzz", BinancePricesConfig())
    times = pl.Series([POLLED] * len(bodies), dtype=TIMESTAMP)
    decoded = source.decode(Batch(payloads=bodies, received_at=times))
    indices = [i for i, _ in decoded.rejects]
    assert len(set(indices)) == len(indices)
    assert all(0 <= i < len(bodies) for i in indices)
    assert all(reason for _, reason in decoded.rejects)
    TICKER_24H.conform(decoded.rows)  # every row fits the table


#: TOML strings without control characters (a pipeline file cannot hold them raw).
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=12)
toml_scalars = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    text,
    st.lists(text, max_size=3),
    st.lists(st.sampled_from(["BTCUSDT", "btcusdt", "BTCUSD_PERP", ""]), max_size=3),
)
sections = st.dictionaries(
    st.sampled_from(["table", "market", "symbols", "base_url", "interval", "timeout", "bogus"]),
    toml_scalars | st.sampled_from(["spot", "usdm", "coinm", "http://127.0.0.1:9"]),
    max_size=5,
)


def registry():
    pm = make_manager()
    pm.register(lakeflow_binance_prices, name="binance_prices")
    return load(pm, entry_points=False)


REGISTRY = registry()


@SETTINGS
@given(sections)
def test_any_prices_section_loads_or_fails_with_a_config_error(section):
    with tempfile.TemporaryDirectory() as folder:
        path = write_pipeline(folder, "binance_prices", section)
        try:
            load_pipeline(path, REGISTRY)
        except ConfigError as exc:
            assert str(exc).startswith(str(path))
