"""lakeflow.base_url: the check of a base URL a plugin's config lets a user replace."""

from __future__ import annotations

import pytest

from lakeflow import base_url

WS = {"schemes": ("ws", "wss"), "example": "wss://stream.example.com", "appended": "/v1/feed"}


def test_a_base_url_comes_back_without_its_trailing_slash():
    assert base_url("wss://proxy.test/feeds/", **WS) == "wss://proxy.test/feeds"


@pytest.mark.parametrize("url", ["https://stream.example.com", "stream.example.com", "ws://"])
def test_another_scheme_or_no_host_is_refused_naming_the_schemes_and_an_example(url):
    with pytest.raises(ValueError, match=r"must be a ws:// or wss:// URL such as wss://stream"):
        base_url(url, **WS)


def test_a_query_is_refused_since_the_path_is_appended():
    with pytest.raises(ValueError, match=r"without '\?' or '#': /v1/feed is appended"):
        base_url("wss://stream.example.com/?a=1", **WS)


def test_a_path_that_repeats_what_the_source_appends_is_refused_with_the_hint():
    with pytest.raises(ValueError, match=r"contains '/v1'.*; choose the feed with `feed`$"):
        base_url(
            "wss://x.test/v1", **WS, reserved={"v1", "feed"}, hint="choose the feed with `feed`"
        )


def test_an_http_base_says_an_http_url():
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        base_url("ftp://x", schemes=("http", "https"), example="https://x", appended="/api")
