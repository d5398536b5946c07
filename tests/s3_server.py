"""Pytest plugin: moto's S3 server as a real HTTP process on a free loopback port.

Fixtures:
    s3_endpoint  session-scoped URL of the server (started here, stopped at session end).
    s3_backup    function-scoped `s3://<fresh bucket>/<prefix>`, with the AWS_* environment pointing at the
                 server; `S3_SECRET` is the secret key, for tests that look for it where it must not be.
    s3_locked_backup  the same in a bucket created with S3 Object Lock.

The hub talks to it over HTTP with boto3 exactly as to any S3-compatible store. moto does not check a
ChecksumSHA256 it is sent (AWS does), which is why the hub reads every object back itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

S3_ACCESS_KEY = "AKIAARCHIVEHUBTEST"
S3_SECRET = "archive-hub-s3-secret-7Qx9vL2pW"  # a value a test can search logs and the catalog for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoUnavailable(RuntimeError):
    """moto's S3 server exited or did not answer; the message carries the end of its log."""


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free loopback port, logging into `log` (a file, not a pipe: moto logs every
    request and a full pipe would stop it). Returns the process and its URL once it answers. Used by the
    fixture below and by bench/bench_backup.py."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                message = log.read_text(errors="replace")[-2000:]
                raise MotoUnavailable(f"moto's S3 server did not start on port {port}:\n{message}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        process, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    except MotoUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def s3_client(endpoint: str) -> Any:
    """The test's own client, to look at and tamper with the bucket behind the hub's back."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


def _bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch, object_lock: bool) -> str:
    bucket = f"archive-backup-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return f"s3://{bucket}/异地备份/J001"


@pytest.fixture
def s3_backup(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    return _bucket(s3_endpoint, monkeypatch, object_lock=False)


@pytest.fixture
def s3_locked_backup(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket created with S3 Object Lock (WORM; versioned)."""
    return _bucket(s3_endpoint, monkeypatch, object_lock=True)


class CorruptingProxy:
    """A store that keeps other bytes than it was sent and does not check the checksum it got: an HTTP proxy in
    front of moto that flips one byte of every PUT body whose path contains `needle`. Nothing else changes."""

    def __init__(self, endpoint: str, needle: str) -> None:
        import http.server
        import threading
        import urllib.parse

        import requests

        target = endpoint.rstrip("/")
        encoded = urllib.parse.quote(needle)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "PUT" and body and (needle in self.path or encoded in self.path):
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = requests.request(
                    self.command, target + self.path, headers=headers, data=body, timeout=60, stream=True
                )
                content = answer.raw.read(decode_content=False)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
