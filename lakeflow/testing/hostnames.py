"""Stand-ins at an exchange's real hostnames: run a command against them over TLS, offline.

The loopback stand-ins of :mod:`lakeflow.testing.standins` need the source to be told
their URL. To test the real ``lakeflow run`` with its real configuration, the stand-ins
must answer where the exchange does: ``wss://fstream.binance.com/...`` and
``https://api.binance.com/...``, port 443, TLS with a certificate the client trusts.
:func:`run_at_hostnames` arranges that for one command, and nothing else on the machine
sees it::

    from lakeflow.testing import HostnameStandIn, HttpRoute, WebSocketRoute, run_at_hostnames

    standin = HostnameStandIn([
        WebSocketRoute("fstream.binance.com", "/ws/!forceOrder@arr", frames=frames, rate=40.0),
        HttpRoute("fapi.binance.com", "/fapi/v1/exchangeInfo", body=b'{"symbols": []}'),
    ])
    result = run_at_hostnames([lakeflow, "run"], standin, cwd=tmp_path, settle=2.0)
    assert result.served["wss://fstream.binance.com/ws/!forceOrder@arr"].frames == len(frames)
    assert not result.unexpected

How, and why each piece:

- **A private network namespace** (``unshare -n``): the command, and the stand-in server,
  run where the only network is a loopback of their own. Nothing they do can reach the
  internet or any other host, and port 443 is free there whatever listens on the machine.
  Its loopback starts down; it is brought up with the ``SIOCSIFFLAGS`` ioctl (no
  ``iproute2`` needed).
- **A private mount namespace** (``unshare -m``) with a **bind mount over /etc/hosts**: a
  generated hosts file sends every route's hostname to ``127.0.0.1``, for this command
  only. The machine's ``/etc/hosts`` is never written; mount propagation is made private
  first, so the bind mount cannot leak out. ``/etc/nsswitch.conf`` gets ``hosts: files``
  the same way, so no other resolver (a local DNS daemon reached over a Unix socket)
  answers instead. Names of other hosts do not resolve at all.
- **A throwaway CA** made by ``trustme`` signs one certificate for every route's hostname;
  the command gets ``SSL_CERT_FILE`` (OpenSSL's, so Python's ``ssl``, aiohttp, websockets,
  urllib) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` pointing at it, and ``SSL_CERT_DIR``
  at an empty folder, so that CA is the only one trusted: certificate checks stay on and
  are really made. Proxy variables are removed.
- The server is aiohttp on ``127.0.0.1:443`` (and any other port a route names), routing by
  the ``Host`` header and path, sending server pings (``heartbeat``) as exchanges do.

The outer side writes a spec (routes, frames as JSON lines, certificates, the command)
into a temporary folder and runs ``unshare -mn python -P this_file.py spec.json``; that
process sets the namespace up, serves, runs the command, stops it as asked, and writes a
JSON report that comes back as a :class:`HostnameRun`. Not being root works too where the
kernel allows user namespaces (``unshare --map-root-user``). Needs Linux, ``unshare``
(util-linux) and ``trustme`` (``pip install 'lakeflow-core[testing]'``); see
:func:`hostnames_available` and :func:`require_hostnames` to skip elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from yarl import URL

#: A frame: text (``str``, or UTF-8 ``bytes``), or anything else, sent as compact JSON.
Frame = bytes | str | Mapping[str, Any] | list[Any]

#: How much of the command's output a timeout error shows.
_TAIL = 4000
#: Seconds the outer side waits beyond ``timeout`` before it kills the namespace itself.
_MARGIN = 30.0
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


class HostnamesError(RuntimeError):
    """The namespace or the stand-in could not be set up, or the command could not start."""


class HostnamesTimeout(HostnamesError):
    """The command was still running at ``timeout``: it was killed. ``result`` has what was seen."""

    def __init__(self, message: str, result: HostnameRun) -> None:
        super().__init__(message)
        self.result = result


def _json_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class _Route:
    host: str
    path: str
    _: KW_ONLY
    port: int = 443
    #: Answer every request with this status instead (a refused location: 451).
    status: int | None = None
    body: Any = field(default=b"", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)

    scheme = ""

    def __post_init__(self) -> None:
        host = self.host.lower().rstrip(".")
        if not host or ":" in host or "/" in host:
            raise ValueError(f"route host {self.host!r}: give a bare hostname; the port is `port=`")
        if not self.path.startswith("/"):
            raise ValueError(f"route path {self.path!r} for {host} must start with '/'")
        object.__setattr__(self, "host", host)

    @property
    def url(self) -> str:
        """Where a client reaches this route; also its key in :attr:`HostnameRun.served`."""
        port = "" if self.port == 443 else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"

    def _spec(self, folder: Path, index: int) -> dict[str, Any]:
        body = self.body if isinstance(self.body, bytes) else _json_text(self.body).encode()
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "status": self.status,
            "body": base64.b64encode(body).decode(),
            "headers": dict(self.headers),
        }


@dataclass(frozen=True)
class WebSocketRoute(_Route):
    """A WebSocket feed at ``wss://host[:port]/path``.

    ``path`` with a query (``/stream?streams=a@trade/b@trade``) matches only that exact
    query; without one, it matches the path whatever the query. ``frames`` are sent as
    text frames (``binary=True``: binary frames), ``rate`` per second (``None``: as fast as
    the connection takes them), then the connection stays open and quiet. Frames are sent
    once in all, one connection at a time: a client that reconnects gets those not yet
    sent. :attr:`Served.frames` counts frames written to a connection; a client that
    leaves while frames are in flight may not have read the last of them. With no frames
    the route is silent.

    Every accepted connection gets server pings (``heartbeat``), has its pings answered,
    and gets an answer to each JSON request with a ``method`` and an ``id`` (``{"method":
    "SUBSCRIBE", "params": [...], "id": 1}`` gets ``{"result": null, "id": 1}``), as
    exchanges do; what the client sent is in :attr:`Served.messages`. ``status`` refuses
    every handshake with that HTTP status, ``body`` and ``headers`` instead.
    """

    _: KW_ONLY
    frames: Sequence[Frame] = field(default=(), repr=False)
    rate: float | None = None
    binary: bool = False

    scheme = "wss"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"{self.url}: rate must be positive frames per second, or None")
        if self.status is not None and self.frames:
            raise ValueError(
                f"{self.url}: a route refused with status {self.status} sends no frames"
            )

    def _spec(self, folder: Path, index: int) -> dict[str, Any]:
        # Frames may be thousands: a file of JSON lines (one JSON string each), not argv.
        path = folder / f"frames-{index}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for frame in self.frames:
                if self.binary:
                    data = frame if isinstance(frame, bytes) else _json_text(frame).encode()
                    text = base64.b64encode(data).decode()
                else:
                    text = _json_text(frame)
                out.write(json.dumps(text) + "\n")
        return {
            **super()._spec(folder, index),
            "kind": "ws",
            "frames": str(path),
            "count": len(self.frames),
            "rate": self.rate,
            "binary": self.binary,
        }


@dataclass(frozen=True)
class HttpRoute(_Route):
    """A REST endpoint at ``https://host[:port]/path``: every GET gets ``body``.

    ``body`` is sent as is when ``bytes``/``str``, else as JSON; ``Content-Type`` is
    ``application/json`` unless ``headers`` say otherwise. ``status`` defaults to 200.
    The query is matched as for :class:`WebSocketRoute`. Other methods get 405 and are
    recorded as unexpected.
    """

    scheme = "https"

    def _spec(self, folder: Path, index: int) -> dict[str, Any]:
        return {**super()._spec(folder, index), "kind": "http"}


Route = WebSocketRoute | HttpRoute


class HostnameStandIn:
    """The routes one server answers, at their hostnames, over TLS.

    ``hosts`` are further hostnames sent to the stand-in without routes (every request
    there is a 404 recorded as unexpected). ``heartbeat`` is the seconds between the
    server's pings on WebSocket connections (``None``: no pings); a client that does not
    answer one within half of it is dropped. Its certificates are made on first use and
    kept: :attr:`ca_pem` is the CA a client must trust.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        hosts: Iterable[str] = (),
        heartbeat: float | None = 5.0,
    ) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        seen: dict[tuple[str, int, str], Route] = {}
        for route in self.routes:
            key = (route.host, route.port, route.path)
            if key in seen:
                raise ValueError(f"two routes for {route.url}: give each host and path once")
            seen[key] = route
        names = [route.host for route in self.routes] + [h.lower().rstrip(".") for h in hosts]
        self.hosts: tuple[str, ...] = tuple(dict.fromkeys(names))
        if not self.hosts:
            raise ValueError("a HostnameStandIn needs at least one route or host")
        self.ports: tuple[int, ...] = tuple(sorted({route.port for route in self.routes} | {443}))
        self.heartbeat = heartbeat
        self._pems: tuple[bytes, bytes] | None = None

    @property
    def ca_pem(self) -> bytes:
        """The PEM of the CA that signed the stand-in's certificate."""
        return self._certificates()[0]

    def _certificates(self) -> tuple[bytes, bytes]:
        """The CA's PEM, and the server's key and certificate chain as one PEM."""
        if self._pems is None:
            trustme = _import_trustme()
            ca = trustme.CA(organization_name="lakeflow test CA")
            names = dict.fromkeys([*self.hosts, "localhost", "127.0.0.1"])
            cert = ca.issue_cert(*names)
            self._pems = (ca.cert_pem.bytes(), cert.private_key_and_cert_chain_pem.bytes())
        return self._pems


def _import_trustme() -> Any:
    try:
        import trustme  # optional: only this kit needs it
    except ImportError:
        raise HostnamesError(
            "lakeflow.testing.hostnames makes its certificates with trustme, which is not "
            "installed: pip install 'lakeflow-core[testing]' (or add trustme>=1.1)"
        ) from None
    return trustme


@dataclass(frozen=True)
class HostRequest:
    """One request the stand-in received: an HTTP request or a WebSocket handshake."""

    method: str
    #: The ``Host`` header without its port, lower case.
    host: str
    port: int
    #: Path and query, as sent.
    target: str
    websocket: bool
    #: The :attr:`~WebSocketRoute.url` of the route that answered; ``None``: unexpected.
    route: str | None
    #: The status answered: 101 for an accepted WebSocket handshake.
    status: int
    #: What the client sent over this WebSocket connection (text; binary as base64).
    messages: list[str]
    #: Frames sent over this connection.
    frames: int
    #: Wall-clock time it arrived, ``time.time()``.
    at: float


@dataclass(frozen=True)
class Served:
    """What one route did during the run."""

    url: str
    #: Requests that reached the route: WebSocket handshakes included.
    requests: int
    #: WebSocket connections opened (handshakes accepted).
    connections: int
    #: WebSocket frames sent, over all connections.
    frames: int
    #: HTTP answers sent: GETs answered, handshakes refused.
    responses: int
    #: What clients sent over the route's WebSocket connections, in order.
    messages: list[str]


@dataclass(frozen=True)
class HostnameRun:
    """What :func:`run_at_hostnames` saw: the command's exit and output, and the server's log."""

    returncode: int
    stdout: str
    stderr: str
    #: Per route, by :attr:`~WebSocketRoute.url`.
    served: dict[str, Served]
    #: Every request, in arrival order.
    requests: list[HostRequest]
    #: Why the command ended: ``"exit"`` (by itself), ``"settle"`` or ``"stop_after"``
    #: (SIGINT sent for that reason), ``"timeout"`` (killed).
    stopped_by: str
    #: Whether every frame of every WebSocket route was sent.
    all_sent: bool
    #: Seconds from the command's start to its end.
    duration: float

    @property
    def unexpected(self) -> list[HostRequest]:
        """Requests no route answered (each got a 404; 405 for a method a route does not take)."""
        return [request for request in self.requests if request.route is None]


def run_at_hostnames(
    command: Sequence[str | os.PathLike[str]],
    standin: HostnameStandIn,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    stop_after: float | None = None,
    settle: float | None = None,
    timeout: float = 60.0,
) -> HostnameRun:
    """Run ``command`` where ``standin``'s hostnames reach only the stand-in; wait; report.

    The command inherits this process's environment, then the CA variables (see the
    module's docstring), then ``env``, so ``env`` may override them; its stdin is
    ``/dev/null``; its output is captured. It is stopped with SIGINT (to its process
    group, as Ctrl-C would) for the first of:

    - ``settle``: once every :class:`WebSocketRoute` with frames has sent all of them,
      ``settle`` seconds more (from the start when no route has frames). For "all that
      was served, then the collector stops": compare :attr:`HostnameRun.served` with
      what landed, and check :attr:`HostnameRun.all_sent`. A route with frames that no
      client connects to keeps it waiting (the timeout's error names the route);
    - ``stop_after``: seconds after the command started.

    With neither, the command runs until it exits. At ``timeout`` seconds after the start,
    whatever the phase (a command that ignores SIGINT too), it is killed and
    :class:`HostnamesTimeout` is raised with its output. Raises :class:`HostnamesError`
    when the namespace or the server cannot be set up or the command cannot start.
    """
    for name, value in (("stop_after", stop_after), ("settle", settle)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be seconds >= 0, not {value}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, not {timeout}")
    reason = hostnames_available()
    if reason is not None:
        raise HostnamesError(f"cannot run stand-ins at real hostnames here: {reason}")
    ca_pem, chain_pem = standin._certificates()
    with tempfile.TemporaryDirectory(prefix="lakeflow-hostnames-") as tmp:
        folder = Path(tmp)
        (folder / "ca.pem").write_bytes(ca_pem)
        (folder / "server.pem").write_bytes(chain_pem)
        (folder / "certs").mkdir()
        spec = {
            "routes": [route._spec(folder, i) for i, route in enumerate(standin.routes)],
            "hosts": list(standin.hosts),
            "ports": list(standin.ports),
            "heartbeat": standin.heartbeat,
            "command": [os.fspath(part) for part in command],
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "env": _command_env(folder, env),
            "stop_after": stop_after,
            "settle": settle,
            "timeout": timeout,
            "folder": str(folder),
            "outer": _namespaces(),
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        argv = [*_unshare(), sys.executable, "-P", __file__, str(folder / "spec.json")]
        try:
            # Its own session: only this kit signals it (not a Ctrl-C meant for pytest).
            inner = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout + _MARGIN,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            _kill_command(folder)
            raise HostnamesError(
                f"the namespace did not finish {timeout + _MARGIN:.0f} s after it started "
                "(a bug of this kit: it kills the command at `timeout`)"
            ) from None
        except BaseException:
            # Interrupted: subprocess.run killed the namespace's process, not the command
            # (a session of its own); do not leave it running.
            _kill_command(folder)
            raise
        return _result(folder, inner)


def _command_env(folder: Path, env: Mapping[str, str] | None) -> dict[str, Any]:
    """How the command's environment differs from ours.

    Only the difference goes into the spec file: no secret of the environment is
    written to disk.
    """
    ca = str(folder / "ca.pem")
    changes = {
        "SSL_CERT_FILE": ca,
        # Empty, so the machine's CAs are not trusted beside ours: a check that passes
        # here passed against our CA.
        "SSL_CERT_DIR": str(folder / "certs"),
        "REQUESTS_CA_BUNDLE": ca,
        "CURL_CA_BUNDLE": ca,
        **(env or {}),
    }
    # A proxy would take the request elsewhere, or nowhere.
    drop = [key for key in os.environ if key.lower() in _PROXY_VARIABLES and key not in changes]
    return {"set": changes, "drop": drop}


def _result(folder: Path, inner: subprocess.CompletedProcess[str]) -> HostnameRun:
    report_path = folder / "report.json"
    if not report_path.exists():
        raise HostnamesError(
            f"the namespace could not be set up (exit {inner.returncode}): "
            f"{(inner.stderr or inner.stdout).strip() or 'no output'}"
        )
    report = json.loads(report_path.read_text())
    if report.get("error"):
        raise HostnamesError(report["error"])

    def read(name: str) -> str:
        path = folder / name
        return path.read_text(errors="replace") if path.exists() else ""

    result = HostnameRun(
        returncode=report["returncode"],
        stdout=read("stdout"),
        stderr=read("stderr"),
        served={route["url"]: Served(**route) for route in report["routes"]},
        requests=[HostRequest(**request) for request in report["requests"]],
        stopped_by=report["stopped_by"],
        all_sent=report["all_sent"],
        duration=report["duration"],
    )
    if result.stopped_by == "timeout":
        unsent = [
            f"{s.url} ({s.frames}/{report['counts'][s.url]} sent, {s.connections} connections)"
            for s in result.served.values()
            if s.frames < report["counts"][s.url]
        ]
        waiting = f"; frames not all sent: {', '.join(unsent)}" if unsent else ""
        raise HostnamesTimeout(
            f"the command was still running after {report['timeout']} s and was killed"
            f"{waiting}\n"
            f"--- stdout (end) ---\n{result.stdout[-_TAIL:]}\n"
            f"--- stderr (end) ---\n{result.stderr[-_TAIL:]}",
            result,
        )
    return result


def _kill_command(folder: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int((folder / "command.pid").read_text()), signal.SIGKILL)


def _namespaces() -> dict[str, int]:
    return {kind: os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("mnt", "net")}


def _unshare() -> list[str]:
    # Root makes the namespaces directly; anyone else through a user namespace, where
    # they are root enough for a loopback, port 443 and a bind mount.
    return ["unshare", "-mn"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "-mn"]


@functools.cache
def hostnames_available() -> str | None:
    """``None`` if :func:`run_at_hostnames` can run on this machine, else why not.

    Checks Linux, ``unshare``, that a network and mount namespace can be made here (a
    container may forbid it), and that ``trustme`` is installed.
    """
    if not sys.platform.startswith("linux"):
        return f"needs Linux network namespaces (this is {sys.platform})"
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    try:
        _import_trustme()
    except HostnamesError as exc:
        return str(exc)
    try:
        probe = subprocess.run(
            [*_unshare(), "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare -mn true` failed: {exc}"
    if probe.returncode != 0:
        return f"cannot make namespaces: {probe.stderr.strip() or f'exit {probe.returncode}'}"
    return None


def require_hostnames() -> None:
    """Skip the calling test when :func:`hostnames_available` says no; under CI, fail.

    A skip on a developer's machine is fine; in CI (``CI`` set and not ``0``/``false``) a
    skip would hide that the tests never ran, so the test fails with the reason instead.
    """
    reason = hostnames_available()
    if reason is None:
        return
    import pytest  # the kit itself runs without pytest

    message = f"stand-ins at real hostnames are not available: {reason}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


# --- Inside the namespace -------------------------------------------------------------
# Run as `python -P hostnames.py spec.json` (see `run_at_hostnames`); `-P` keeps this
# folder off sys.path, and not going through `-m` skips importing lakeflow itself.

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
    here = _namespaces()
    for kind, outer in spec["outer"].items():
        if here[kind] == outer:
            # Without unshare this would mount over the machine's own /etc/hosts.
            raise HostnamesError(f"not in a {kind} namespace of its own; refusing to mount")
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
                raise HostnamesError(
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
            raise HostnamesError(f"cannot run {spec['command'][0]!r}: {exc}") from None
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
    except HostnamesError as exc:
        report = {"error": str(exc)}
    except OSError as exc:
        report = {"error": f"{type(exc).__name__}: {exc}"}
    (folder / "report.json").write_text(json.dumps(report))
    return 0 if report.get("error") is None else 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
