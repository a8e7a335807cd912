"""The source's config: what it accepts, what it refuses and how, and what it implies."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from lakeflow_okx_liquidations import OkxLiquidationsConfig
from pydantic import ValidationError

from lakeflow.cli import cli
from lakeflow.testing import write_pipeline


def lakeflow(*args: str) -> Result:
    """The ``lakeflow`` command, run in this process (the plugins are installed)."""
    return CliRunner().invoke(cli, list(args))


def test_okx_default_follows_swap_and_futures_at_okx():
    config = OkxLiquidationsConfig()

    assert config.inst_types == ["SWAP", "FUTURES"]
    assert config.stream_url() == "wss://ws.okx.com:8443/ws/v5/public"
    assert config.instruments_url() == "https://www.okx.com/api/v5/public/instruments"
    assert config.refresh_interval == 300


def test_okx_subscribe_message_names_every_type_on_the_channel():
    message = json.loads(OkxLiquidationsConfig(inst_types=["FUTURES"]).subscribe_message())

    assert message == {
        "op": "subscribe",
        "args": [{"channel": "liquidation-orders", "instType": "FUTURES"}],
    }


def test_okx_ws_url_replaces_scheme_host_and_port_and_keeps_a_proxy_prefix():
    config = OkxLiquidationsConfig(ws_url="wss://proxy.example/okx/")

    assert config.stream_url() == "wss://proxy.example/okx/ws/v5/public"


@pytest.mark.parametrize("url", ["wss://ws.okx.com:8443/ws/v5/public", "ws://127.0.0.1:1/ws"])
def test_okx_ws_url_that_ends_in_the_path_the_source_appends_is_refused(url):
    with pytest.raises(ValidationError, match="the source appends itself"):
        OkxLiquidationsConfig(ws_url=url)


@pytest.mark.parametrize("url", ["https://ws.okx.com:8443", "ws.okx.com:8443", "wss://h/?a=1"])
def test_okx_ws_url_that_is_not_a_websocket_base_url_is_refused(url):
    with pytest.raises(ValidationError, match=r"ws:// or wss://|base URL only"):
        OkxLiquidationsConfig(ws_url=url)


def test_okx_rest_url_replaces_the_instrument_host():
    config = OkxLiquidationsConfig(rest_url="http://127.0.0.1:8080/")

    assert config.instruments_url() == "http://127.0.0.1:8080/api/v5/public/instruments"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://www.okx.com/api/v5/public/instruments", "the source appends itself"),
        ("wss://www.okx.com", "http:// or https://"),
        ("https://www.okx.com?instType=SWAP", "base URL only"),
    ],
)
def test_okx_rest_url_that_is_not_a_base_url_is_refused(url, says):
    with pytest.raises(ValidationError, match=says):
        OkxLiquidationsConfig(rest_url=url)


@pytest.mark.parametrize("inst_type", ["MARGIN", "OPTION", "option"])
def test_okx_margin_and_option_are_refused_because_their_sz_is_not_in_contracts(inst_type):
    with pytest.raises(ValidationError, match="sz is not a number of ctVal contracts"):
        OkxLiquidationsConfig(inst_types=["SWAP", inst_type])


@pytest.mark.parametrize("inst_type", ["swap", "SPOT", "PERP", ""])
def test_okx_unknown_inst_type_is_refused_with_the_choices(inst_type):
    with pytest.raises(ValidationError, match="choose from 'SWAP', 'FUTURES'"):
        OkxLiquidationsConfig(inst_types=[inst_type])


def test_okx_empty_inst_types_is_refused():
    with pytest.raises(ValidationError, match="names no instrument type"):
        OkxLiquidationsConfig(inst_types=[])


def test_okx_inst_type_named_twice_is_subscribed_once():
    assert OkxLiquidationsConfig(inst_types=["SWAP", "SWAP"]).inst_types == ["SWAP"]


@pytest.mark.parametrize("seconds", [0, -1])
def test_okx_refresh_interval_must_be_positive(seconds):
    with pytest.raises(ValidationError, match="greater than 0"):
        OkxLiquidationsConfig(refresh_interval=seconds)


def test_okx_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        OkxLiquidationsConfig(url="wss://example.com")


def test_okx_silence_is_judged_after_ten_minutes_with_swaps():
    assert OkxLiquidationsConfig().silence_limit() == 600


def test_okx_silence_is_judged_after_an_hour_on_futures_alone():
    assert OkxLiquidationsConfig(inst_types=["FUTURES"]).silence_limit() == 3600


def test_okx_silence_timeout_in_the_pipeline_beats_the_default():
    assert OkxLiquidationsConfig(silence_timeout="2m").silence_limit() == 120


def test_okx_validate_accepts_a_pipeline_and_shows_the_stream_url(tmp_path):
    path = write_pipeline(tmp_path, "okx_liquidations", {"inst_types": ["SWAP"]})

    done = lakeflow("validate", str(path))

    assert done.exit_code == 0, done.stderr
    assert "okx_liquidations (streaming) -> table liquidations [liquidation]" in done.stdout
    assert "wss://ws.okx.com:8443/ws/v5/public" in done.stdout


def test_okx_validate_refuses_an_unknown_key_naming_the_allowed_ones(tmp_path):
    path = write_pipeline(tmp_path, "okx_liquidations", {"inst_type": ["SWAP"]})

    done = lakeflow("validate", str(path))

    assert done.exit_code == 2
    assert "sources.source.inst_type: unknown key; did you mean 'inst_types'?" in done.stderr
    allowed = "inst_types, refresh_interval, rest_url, silence_timeout, table, type, ws_url"
    assert f"allowed: {allowed}" in done.stderr
