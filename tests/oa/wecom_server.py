"""The local WeCom peer (connectors.oa.wecom_peer) as a real process on a free loopback port.

`start_wecom_peer` starts one and returns it once it answers HTTP; `stop_wecom_peer` ends it. The fixture
`wecom_peer_factory` starts peers on demand and stops them at the end of the test. The secret reaches the
peer through an environment variable, never its command line, so a test can look for it in the log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.s3_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET_ENV = "ARCHIVE_HUB_TEST_WECOM_SECRET"


class WecomPeerUnavailable(RuntimeError):
    """The peer exited or did not answer; the message carries the end of its log."""


def start_wecom_peer(
    data_dir: Path, log: Path, *, corp_id: str, secret: str, token_ttl: float = 7200
) -> tuple[subprocess.Popen[bytes], str]:
    """The peer serving `data_dir`, its stdout and stderr in the file `log` (a pipe nobody reads could fill
    and stop it). Returns the process and its base URL once GET /_peer/stats answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "connectors.oa.wecom_peer",
        "--data",
        str(data_dir),
        "--port",
        str(port),
        "--corp-id",
        corp_id,
        "--secret-env",
        SECRET_ENV,
        "--token-ttl",
        str(token_ttl),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, SECRET_ENV: secret, "PYTHONUNBUFFERED": "1"},
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base_url + "/_peer/stats", timeout=2) as answer:
                if answer.status == 200:
                    return process, base_url
        except (OSError, urllib.error.URLError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_wecom_peer(process)
            message = log.read_text(errors="replace")[-2000:]
            raise WecomPeerUnavailable(f"the WeCom peer did not start on port {port}:\n{message}")
        time.sleep(0.1)


def stop_wecom_peer(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def wecom_peer_factory(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """start(data_dir, *, corp_id, secret, token_ttl=7200, log=None) -> (process, base_url); all stopped
    at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        data_dir: Path, *, corp_id: str, secret: str, token_ttl: float = 7200, log: Path | None = None
    ) -> tuple[subprocess.Popen[bytes], str]:
        log = log or tmp_path / f"wecom-peer-{len(started)}.log"
        process, url = start_wecom_peer(data_dir, log, corp_id=corp_id, secret=secret, token_ttl=token_ttl)
        started.append(process)
        return process, url

    try:
        yield start
    finally:
        for process in started:
            stop_wecom_peer(process)
