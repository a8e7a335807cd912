"""lakeflow.testing.hostnames: stand-ins at real hostnames, over TLS, in a private namespace.

Each test runs a small Python client in the namespace; the client prints what it saw as
JSON on its last line. Skipped where namespaces cannot be made, failed instead under CI.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import lakeflow.testing.hostnames
from lakeflow.testing import (
    HostnameStandIn,
    HttpRoute,
    WebSocketRoute,
    require_hostnames,
    run_at_hostnames,
)

RESTRICTED = (
    b'{"code":0,"msg":"Service unavailable from a restricted location according to '
    b"'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer "
    b'service if you believe you received this message in error."}'
)


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    require_hostnames()


def run_client(standin: HostnameStandIn, body: str, **kwargs: Any) -> tuple[Any, Any]:
    """Run ``async def main()`` (the ``body``) in the namespace; its JSON result and the run."""
    script = "import asyncio, json, aiohttp\n\n" + textwrap.dedent(body)
    script += "\nprint(json.dumps(asyncio.run(main())))\n"
    result = run_at_hostnames([sys.executable, "-c", script], standin, timeout=30, **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result


def test_https_get_reaches_the_standin_with_certificates_checked() -> None:
    standin = HostnameStandIn(
        [
            HttpRoute("api.example-exchange.test", "/x", body=b'{"made": "up"}'),
            HttpRoute("api.binance.com", "/api/v3/ticker/24hr", body=[{"symbol": "BTCUSDT"}]),
        ]
    )
    seen, result = run_client(
        standin,
        """
        import urllib.request

        async def main():
            # aiohttp's default context, and urllib's: both verify against SSL_CERT_FILE.
            async with aiohttp.ClientSession() as session:
                async with session.get("https://api.example-exchange.test/x?a=1") as response:
                    made_up = [response.status, response.content_type, await response.text()]
            with urllib.request.urlopen("https://api.binance.com/api/v3/ticker/24hr") as r:
                real = r.read().decode()
            return made_up, real
        """,
    )

    assert seen == [[200, "application/json", '{"made": "up"}'], '[{"symbol":"BTCUSDT"}]']
    assert result.served["https://api.example-exchange.test/x"].responses == 1
    assert [r.target for r in result.requests] == ["/x?a=1", "/api/v3/ticker/24hr"]
    assert not result.unexpected


def test_the_machines_own_cas_are_not_trusted_in_the_namespace() -> None:
    standin = HostnameStandIn([HttpRoute("api.binance.com", "/x", body=b"{}")])
    seen, _ = run_client(
        standin,
        """
        async def main():
            try:
                async with aiohttp.ClientSession() as session:
                    await session.get("https://api.binance.com/x")
            except aiohttp.ClientConnectorCertificateError:
                return "refused"
            return "trusted"
        """,
        env={"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"},
    )

    assert seen == "refused"


def test_websocket_client_receives_exactly_the_frames() -> None:
    frames = [json.dumps({"n": n}) for n in range(50)]
    standin = HostnameStandIn(
        [WebSocketRoute("stream.example-exchange.test", "/ws/a", frames=frames, rate=500.0)]
    )
    seen, result = run_client(
        standin,
        """
        async def main():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect("wss://stream.example-exchange.test/ws/a") as ws:
                    return [await ws.receive_str() for _ in range(50)]
        """,
    )

    served = result.served["wss://stream.example-exchange.test/ws/a"]
    assert seen == frames
    assert (served.connections, served.frames) == (1, 50)
    assert result.all_sent


def test_settle_stops_the_command_once_every_frame_is_sent() -> None:
    standin = HostnameStandIn([WebSocketRoute("fstream.binance.com", "/ws/x", frames=["1", "2"])])
    script = textwrap.dedent(
        """
        import asyncio, aiohttp

        async def main():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect("wss://fstream.binance.com/ws/x") as ws:
                    async for message in ws:
                        print(message.data, flush=True)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("stopped", flush=True)
        """
    )

    result = run_at_hostnames([sys.executable, "-c", script], standin, settle=0.5, timeout=30)

    assert result.stopped_by == "settle"
    assert result.stdout.split() == ["1", "2", "stopped"]


def test_silent_route_answers_subscribe_and_sends_nothing() -> None:
    path = "/market/stream?streams=btcusdt@forceOrder/ethusdt@forceOrder"
    standin = HostnameStandIn([WebSocketRoute("fstream.binance.com", path)])
    seen, result = run_client(
        standin,
        f"""
        async def main():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect("wss://fstream.binance.com{path}") as ws:
                    await ws.send_str('{{"method":"SUBSCRIBE","params":["a@b"],"id":1}}')
                    reply = await ws.receive_str()
                    try:
                        extra = await ws.receive(timeout=0.5)
                    except asyncio.TimeoutError:
                        extra = None
                    return reply, extra
        """,
    )

    served = result.served[f"wss://fstream.binance.com{path}"]
    assert seen == ['{"result": null, "id": 1}', None]
    assert served.frames == 0
    assert served.messages == ['{"method":"SUBSCRIBE","params":["a@b"],"id":1}']


def test_unknown_path_is_a_404_recorded_as_unexpected() -> None:
    standin = HostnameStandIn(
        [
            WebSocketRoute("fstream.binance.com", "/ws/x"),
            # With a query, the route takes only that query.
            WebSocketRoute("fstream.binance.com", "/stream?streams=a"),
        ]
    )
    seen, result = run_client(
        standin,
        """
        async def main():
            statuses = []
            async with aiohttp.ClientSession() as session:
                for url in ["wss://fstream.binance.com/ws/y", "wss://fstream.binance.com/stream?streams=b"]:
                    try:
                        await session.ws_connect(url)
                    except aiohttp.WSServerHandshakeError as error:
                        statuses.append(error.status)
                async with session.get("https://fstream.binance.com/nothing") as response:
                    statuses.append(response.status)
            return statuses
        """,
    )

    assert seen == [404, 404, 404]
    assert [(r.target, r.websocket) for r in result.unexpected] == [
        ("/ws/y", True),
        ("/stream?streams=b", True),
        ("/nothing", False),
    ]


def test_a_route_can_refuse_the_handshake_with_451() -> None:
    standin = HostnameStandIn(
        [WebSocketRoute("fstream.binance.com", "/ws/x", status=451, body=RESTRICTED)]
    )
    seen, result = run_client(
        standin,
        """
        async def main():
            async with aiohttp.ClientSession() as session:
                try:
                    await session.ws_connect("wss://fstream.binance.com/ws/x")
                except aiohttp.WSServerHandshakeError as error:
                    return error.status
        """,
    )

    served = result.served["wss://fstream.binance.com/ws/x"]
    assert seen == 451
    assert (served.connections, served.responses) == (0, 1)


def test_the_machines_etc_hosts_is_untouched() -> None:
    def mounts() -> list[str]:
        return Path("/proc/self/mountinfo").read_text().splitlines()

    hosts, before = Path("/etc/hosts").read_bytes(), mounts()
    standin = HostnameStandIn([HttpRoute("api.binance.com", "/x", body=b"{}")])

    seen, _ = run_client(
        standin,
        """
        async def main():
            return open("/etc/hosts").read()
        """,
    )

    assert "api.binance.com" in seen
    assert Path("/etc/hosts").read_bytes() == hosts
    assert b"api.binance.com" not in hosts
    assert mounts() == before


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]
)
def test_without_namespaces_tests_skip_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(lakeflow.testing.hostnames, "hostnames_available", lambda: "no unshare")
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome, match="no unshare"):
        require_hostnames()
