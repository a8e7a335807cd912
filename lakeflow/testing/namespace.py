"""The inside of :func:`lakeflow.testing.run_at_hostnames`: what runs in the namespace.

Run as ``python -P namespace.py spec.json`` under ``unshare -mn`` (never imported by
tests): it brings the namespace's loopback up, bind-mounts a hosts file (and an
``nsswitch.conf``) privately over ``/etc``, serves the spec's routes over TLS on
127.0.0.1, runs the command, stops it as the spec says and writes ``report.json``.
``-P`` keeps this folder off ``sys.path``, and running it as a file rather than with
``-m`` skips importing lakeflow itself (only aiohttp and the standard library).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from yarl import URL

from lakeflow.errors import LakeflowError


class SetupError(LakeflowError, RuntimeError):
    """The namespace, the server or the command could not be set up; goes to the report."""


def namespaces() -> dict[str, int]:
    """The inode numbers of this process's mount and network namespaces."""
    return {kind: os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("mnt", "net")}


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


def _loopback_up() -> None:
    import fcntl  # Unix only: imported here so the module loads anywhere

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # struct ifreq: the interface's name, then its flags (a short), in 40 bytes.
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _mount(source: str | None, target: str, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
    encoded = source.encode() if source is not None else b"none"
    if libc.mount(encoded, target.encode(), None, flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount over {target}: {os.strerror(errno)}")


def _private_hosts(spec: dict[str, Any]) -> None:
    """Loopback up; route hosts to 127.0.0.1 by bind mounts over /etc/hosts and nsswitch."""
    here = namespaces()
    for kind, outer in spec["outer"].items():
        if here[kind] == outer:
            # Without unshare this would mount over the machine's own /etc/hosts.
            raise SetupError(f"not in a {kind} namespace of its own; refusing to mount")
    _mount(None, "/", _MS_REC | _MS_PRIVATE)  # unshare does this too; never leak a mount
    _loopback_up()
    folder = Path(spec["folder"])
    names = " ".join(dict.fromkeys([socket.gethostname(), *spec["hosts"]]))
    (folder / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {names}\n")
    _mount(str(folder / "hosts"), "/etc/hosts", _MS_BIND)
    nsswitch = Path("/etc/nsswitch.conf")
    if nsswitch.exists():
        lines = nsswitch.read_text().splitlines()
        kept = [line for line in lines if not line.strip().startswith("hosts:")]
        (folder / "nsswitch.conf").write_text("\n".join([*kept, "hosts: files", ""]))
        _mount(str(folder / "nsswitch.conf"), str(nsswitch), _MS_BIND)


class _RouteState:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.url: str = spec["url"]
        self.frames: list[Any] = []
        if spec.get("frames"):
            with open(spec["frames"], encoding="utf-8") as lines:
                texts = [json.loads(line) for line in lines]
            self.frames = [base64.b64decode(t) for t in texts] if spec["binary"] else texts
        self.sent = 0
        self.requests = self.connections = self.responses = 0
        self.messages: list[str] = []

    def report(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "connections": self.connections,
            "frames": self.sent,
            "responses": self.responses,
            "messages": self.messages,
        }


class _Server:
    """The stand-in inside the namespace: routes by Host and path, records everything."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.routes = [_RouteState(route) for route in spec["routes"]]
        self.requests: list[dict[str, Any]] = []
        self.pending = {r.url for r in self.routes if r.spec["kind"] == "ws" and r.frames}
        self.all_sent_at: float | None = None
        self.sockets: set[web.WebSocketResponse] = set()
        self.locks = {r.url: asyncio.Lock() for r in self.routes}
        self.targets = {r.url: URL(r.spec["path"]) for r in self.routes}

    def match(self, host: str, port: int, url: URL) -> _RouteState | None:
        """The route giving this exact query, else the one giving none (any query goes)."""
        best = None
        for route in self.routes:
            target = self.targets[route.url]
            if (route.spec["host"], route.spec["port"], target.path) != (host, port, url.path):
                continue
            if "?" not in route.spec["path"]:
                best = route
            elif target.query_string == url.query_string:
                return route
        return best

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = (request.host or "").lower()
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        seen: dict[str, Any] = {
            "method": request.method,
            "host": host.rstrip("."),
            "port": sockname[1] if sockname else 0,
            "target": request.raw_path,
            "websocket": websocket,
            "route": None,
            "status": 0,
            "messages": [],
            "frames": 0,
            "at": time.time(),
        }
        self.requests.append(seen)
        route = self.match(seen["host"], seen["port"], request.rel_url)
        if route is None:
            seen["status"] = 404
            known = [r.url for r in self.routes if r.spec["host"] == seen["host"]]
            return web.Response(
                status=404, text=f"no stand-in route for {seen['target']}; routes here: {known}"
            )
        spec = route.spec
        route.requests += 1
        if spec["kind"] == "http" and request.method not in ("GET", "HEAD"):
            seen["status"] = 405
            return web.Response(status=405, text=f"{route.url} answers GET only")
        seen["route"] = route.url
        if spec["status"] is not None or spec["kind"] == "http":
            route.responses += 1
            seen["status"] = spec["status"] if spec["status"] is not None else 200
            headers = {"Content-Type": "application/json", **spec["headers"]}
            body = base64.b64decode(spec["body"])
            return web.Response(status=seen["status"], body=body, headers=headers)
        return await self.websocket(request, route, seen)

    async def websocket(
        self, request: web.Request, route: _RouteState, seen: dict[str, Any]
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=self.spec["heartbeat"], autoping=True)
        if not ws.can_prepare(request).ok:
            seen["status"] = 426
            return web.Response(status=426, text=f"{route.url} is a WebSocket route")
        await ws.prepare(request)
        route.connections += 1
        seen["status"] = 101
        self.sockets.add(ws)
        sender = asyncio.create_task(self.send(ws, route, seen))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    text = message.data
                elif message.type is WSMsgType.BINARY:
                    text = base64.b64encode(message.data).decode()
                else:
                    continue
                seen["messages"].append(text)
                route.messages.append(text)
                reply = _reply(text) if message.type is WSMsgType.TEXT else None
                if reply is not None:
                    await ws.send_str(reply)
        finally:
            sender.cancel()
            self.sockets.discard(ws)
        return ws

    async def send(
        self, ws: web.WebSocketResponse, route: _RouteState, seen: dict[str, Any]
    ) -> None:
        """Send the route's frames not yet sent, at its rate; one connection at a time."""
        frames, rate, binary = route.frames, route.spec["rate"], route.spec["binary"]
        if route.sent >= len(frames):
            return
        async with self.locks[route.url]:
            loop = asyncio.get_running_loop()
            start, first = loop.time(), route.sent
            try:
                while route.sent < len(frames) and not ws.closed:
                    if rate:
                        # Due times from the start, so the rate does not drift with sends.
                        delay = start + (route.sent - first) / rate - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    frame = frames[route.sent]
                    await (ws.send_bytes(frame) if binary else ws.send_str(frame))
                    route.sent += 1
                    seen["frames"] += 1
            except (ConnectionError, RuntimeError):
                return  # the client left: the next connection gets the rest
        if route.sent >= len(frames):
            self.pending.discard(route.url)
            if not self.pending and self.all_sent_at is None:
                self.all_sent_at = asyncio.get_running_loop().time()


def _apply_env(changes: dict[str, Any]) -> dict[str, str]:
    """The command's environment: this one (the caller's, inherited), with the changes."""
    env = {key: value for key, value in os.environ.items() if key not in changes["drop"]}
    return {**env, **changes["set"]}


def _reply(text: str) -> str | None:
    """Exchanges answer a request that has an ``id`` (SUBSCRIBE and the like)."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if isinstance(message, dict) and "id" in message and "method" in message:
        return json.dumps({"result": None, "id": message["id"]})
    return None


async def _serve_and_run(
    server: _Server, context: ssl.SSLContext, stdout: Any, stderr: Any
) -> dict[str, Any]:
    """Serve on every port, run the command to its end, and report."""
    spec, folder = server.spec, Path(server.spec["folder"])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        for port in spec["ports"]:
            try:
                await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
            except OSError as exc:
                raise SetupError(
                    f"cannot listen on 127.0.0.1:{port} in the namespace: {exc}"
                ) from exc
        try:
            process = await asyncio.create_subprocess_exec(
                *spec["command"],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=spec["cwd"],
                env=_apply_env(spec["env"]),
                start_new_session=True,  # its own group: SIGINT reaches its children too
            )
        except OSError as exc:
            raise SetupError(f"cannot run {spec['command'][0]!r}: {exc}") from None
        (folder / "command.pid").write_text(str(process.pid))
        stopped_by, duration = await _supervise(process, server)
        with contextlib.suppress(ProcessLookupError):
            # What the command left running would outlive the run, unwatched.
            os.killpg(process.pid, signal.SIGKILL)
        for ws in list(server.sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"stand-in stopped"), 1.0)
    finally:
        await runner.cleanup()
    return {
        "error": None,
        "returncode": process.returncode,
        "stopped_by": stopped_by,
        "all_sent": not server.pending,
        "duration": round(duration, 3),
        "timeout": spec["timeout"],
        "counts": {route.url: len(route.frames) for route in server.routes},
        "routes": [route.report() for route in server.routes],
        "requests": server.requests,
    }


async def _supervise(process: asyncio.subprocess.Process, server: _Server) -> tuple[str, float]:
    """Wait for the command; SIGINT it at ``settle``/``stop_after``, SIGKILL at ``timeout``.

    Returns why it ended and how long it ran.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    if not server.pending:
        server.all_sent_at = started
    settle, stop_after = server.spec["settle"], server.spec["stop_after"]
    deadline = started + server.spec["timeout"]
    stopped_by = "exit"
    waiter = asyncio.ensure_future(process.wait())
    while not waiter.done():
        now = loop.time()
        if now >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            stopped_by = "timeout"
            break
        if stopped_by == "exit":
            sent_at = server.all_sent_at
            if settle is not None and sent_at is not None and now >= sent_at + settle:
                stopped_by = "settle"
            elif stop_after is not None and now >= started + stop_after:
                stopped_by = "stop_after"
            if stopped_by != "exit":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
        await asyncio.wait({waiter}, timeout=0.05)
    await waiter
    return stopped_by, loop.time() - started


def _main(argv: Sequence[str]) -> int:
    """The namespace's side: set up, serve, run the command, write ``report.json``."""
    (spec_path,) = argv
    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec["folder"])
    try:
        _private_hosts(spec)
        server = _Server(spec)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(folder / "server.pem")
        with open(folder / "stdout", "wb") as stdout, open(folder / "stderr", "wb") as stderr:
            report = asyncio.run(_serve_and_run(server, context, stdout, stderr))
    except SetupError as exc:
        report = {"error": str(exc)}
    except OSError as exc:
        report = {"error": f"{type(exc).__name__}: {exc}"}
    (folder / "report.json").write_text(json.dumps(report))
    return 0 if report.get("error") is None else 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
