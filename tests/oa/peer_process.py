"""A local vendor peer (connectors.oa.<vendor>_peer) as a real process on a free loopback port.

The secret reaches the peer through an environment variable, never its command line, so a test can look
for it in the log; output goes to a file (a pipe nobody reads could fill and stop it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.s3_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class PeerUnavailable(RuntimeError):
    """The peer exited or did not answer; the message carries the end of its log."""


def start_peer(
    module: str, args: list[str], log: Path, *, secret_env: str, secret: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m <module> <args> --port N --secret-env <secret_env>`; returns the process and its base URL
    once GET /_peer/stats answers."""
    port = free_port()
    command = [sys.executable, "-m", module, *args, "--port", str(port), "--secret-env", secret_env]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, secret_env: secret, "PYTHONUNBUFFERED": "1"},
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
            stop_peer(process)
            message = log.read_text(errors="replace")[-2000:]
            raise PeerUnavailable(f"{module} did not start on port {port}:\n{message}")
        time.sleep(0.1)


def stop_peer(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
