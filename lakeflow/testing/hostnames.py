"""Stand-ins at an exchange's real hostnames: run a command against them over TLS, offline.

The loopback stand-ins of :mod:`lakeflow.testing.standins` need the source to be told
their URL. To test the real ``lakeflow run`` with its real configuration, the stand-ins
must answer where the exchange does: ``wss://stream.example.com/...`` and
``https://api.example.com/...``, port 443, TLS with a certificate the client trusts.
:func:`run_at_hostnames` arranges that for one command, and nothing else on the machine
sees it::

    from lakeflow.testing import HostnameStandIn, HttpRoute, WebSocketRoute, run_at_hostnames

    standin = HostnameStandIn([
        WebSocketRoute("stream.example.com", "/ws/trades", frames=frames, rate=40.0),
        HttpRoute("api.example.com", "/v1/instruments", body=b'{"symbols": []}'),
    ])
    result = run_at_hostnames([lakeflow, "run"], standin, cwd=tmp_path, settle=2.0)
    assert result.served["wss://stream.example.com/ws/trades"].frames == len(frames)
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
into a temporary folder and runs ``unshare -mn python -P namespace.py spec.json``; that
process sets the namespace up, serves, runs the command, stops it as asked, and writes a
JSON report that comes back as a :class:`HostnameRun` (that side is
:mod:`lakeflow.testing.namespace`). Not being root works too where the
kernel allows user namespaces (``unshare --map-root-user``). Needs Linux, ``unshare``
(util-linux) and ``trustme`` (``pip install 'lakeflow-core[testing]'``); see
:func:`hostnames_available` and :func:`require_hostnames` to skip elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from lakeflow.errors import LakeflowError
from lakeflow.testing import namespace
from lakeflow.testing.namespace import namespaces

#: A frame: text (``str``, or UTF-8 ``bytes``), or anything else, sent as compact JSON.
Frame = bytes | str | Mapping[str, Any] | list[Any]

#: How much of the command's output a timeout error shows.
_TAIL = 4000
#: Seconds the outer side waits beyond ``timeout`` before it kills the namespace itself.
_MARGIN = 30.0
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


class HostnamesError(LakeflowError, RuntimeError):
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
            "outer": namespaces(),
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        argv = [*_unshare(), sys.executable, "-P", namespace.__file__, str(folder / "spec.json")]
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
