"""The demo's OA side: a local WeCom peer, the hub's callback receiver, and WeCom's callbacks sent to it.

`make demo` plays the part of WeCom: it writes the sample approvals behind the sample books once
(connectors/oa/sample_wecom.py) with generated credentials (var/sample_wecom/secrets.env, mode 600), starts
the WeCom API peer and `archive-hub oa serve` as real processes on free loopback ports, and sends the
approvals' callbacks, encrypted and signed as WeCom does, plus one forged one, to the receiver. The
archiving DAG then reads the inbox and fetches forms and files from the peer.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from archive_hub.settings import PROJECT_ROOT, Settings

CORP_ID = "ww5a1f7e3c9d2b4e60"  # the shape of a WeCom corp id; fictitious
AGENT_ID = "3010040"  # WeCom's 审批 application


@dataclass(frozen=True)
class Delivered:
    sent: int
    kept: int
    refused_forgery: bool
    already: bool  # sent by an earlier demo run: not sent again


def sample_dir(settings: Settings) -> Path:
    return settings.home / "sample_wecom"


def wecom_env(settings: Settings) -> dict[str, str]:
    """The demo's WeCom credentials, generated once; exported for the peer, the receiver and the DAG."""
    path = sample_dir(settings) / "secrets.env"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "WECOM_CORP_ID": CORP_ID,
            "WECOM_SECRET": secrets.token_urlsafe(32),
            "WECOM_CALLBACK_TOKEN": secrets.token_urlsafe(16),
            "WECOM_CALLBACK_AES_KEY": base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in values.items())
    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    os.environ.update(env)
    return env


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open while choosing, so no two are the same)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} stopped at start (exit {process.returncode}); its log: {log}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {timeout:g} s; its log: {log}")


@contextmanager
def running_wecom(settings: Settings) -> Iterator[tuple[str, str]]:
    """(WeCom API peer URL, callback receiver URL), both real processes, stopped on exit."""
    env = {**os.environ, **wecom_env(settings), "ARCHIVE_HUB_HOME": str(settings.home)}
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    peer_port, receiver_port = _free_ports(2)
    peer_log, receiver_log = logs / "wecom-peer.log", logs / "oa-receiver.log"
    started: list[subprocess.Popen[bytes]] = []
    try:
        with peer_log.open("ab") as fh:
            peer = subprocess.Popen(
                [sys.executable, "-m", "connectors.oa.wecom_peer", "--data", str(sample_dir(settings)),
                 "--port", str(peer_port), "--corp-id", env["WECOM_CORP_ID"], "--secret-env", "WECOM_SECRET"],
                cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(peer)
        with receiver_log.open("ab") as fh:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "archive_hub.cli", "oa", "serve", "--port", str(receiver_port)],
                cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(receiver)
        peer_url, receiver_url = f"http://127.0.0.1:{peer_port}", f"http://127.0.0.1:{receiver_port}"
        _wait(peer_url + "/_peer/stats", peer, peer_log, "the WeCom peer")
        _wait(receiver_url + "/callbacks/none", receiver, receiver_log, "the callback receiver")
        before = os.environ.get("WECOM_API_URL")
        os.environ["WECOM_API_URL"] = peer_url  # for the DAG run inside the block, and only there
        try:
            yield peer_url, receiver_url
        finally:
            if before is None:
                os.environ.pop("WECOM_API_URL", None)
            else:
                os.environ["WECOM_API_URL"] = before
    finally:
        for p in started:
            p.terminate()
        for p in started:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def deliver_callbacks(settings: Settings, receiver_url: str, source_id: str) -> Delivered:
    """WeCom's callbacks for the sample approvals, once, and a forged one that must be refused."""
    from connectors.oa.callback_crypto import CallbackCrypt
    from connectors.oa.wecom_peer import send_approval_callback

    folder = sample_dir(settings)
    marker = folder / ".callbacks-sent"
    if marker.exists():
        return Delivered(0, 0, True, True)
    env = wecom_env(settings)
    crypt = CallbackCrypt(env["WECOM_CALLBACK_TOKEN"], env["WECOM_CALLBACK_AES_KEY"], env["WECOM_CORP_ID"])
    url = f"{receiver_url}/callbacks/{source_id}"
    kept = 0
    events = json.loads((folder / "callbacks.json").read_text(encoding="utf-8"))
    with requests.Session() as session:
        for e in events:
            answer = send_approval_callback(
                url, crypt, corp_id=env["WECOM_CORP_ID"], agent_id=AGENT_ID, sp_no=e["sp_no"],
                sp_status=e["sp_status"], sp_name=e["sp_name"], template_id=e["template_id"],
                apply_time=e["apply_time"], applyer_userid=e["applyer_userid"], session=session,
            )  # fmt: skip
            kept += answer.status_code == 200 and answer.text == "success"
    # A forgery: a well-formed message sealed with another token. The receiver must refuse it.
    forger = CallbackCrypt("not-the-token", env["WECOM_CALLBACK_AES_KEY"], env["WECOM_CORP_ID"])
    e = events[-1]
    forged = send_approval_callback(
        url, forger, corp_id=env["WECOM_CORP_ID"], agent_id=AGENT_ID, sp_no="209912310001", sp_status=2,
        sp_name="报销", template_id=e["template_id"], apply_time=e["apply_time"], applyer_userid="Mallory",
    )  # fmt: skip
    if kept == len(events):  # otherwise the next demo sends them again (the inbox takes repeats)
        marker.write_text(f"{kept} of {len(events)} callbacks kept\n")
    return Delivered(len(events), kept, forged.status_code == 403, False)
