"""The local DingTalk peer (connectors.oa.dingtalk_peer) as a real process: both DingTalk hosts on one port."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.oa.peer_process import REPO_ROOT, start_peer, stop_peer

__all__ = ["REPO_ROOT", "start_dingtalk_peer", "stop_dingtalk_peer"]

SECRET_ENV = "ARCHIVE_HUB_TEST_DINGTALK_SECRET"
stop_dingtalk_peer = stop_peer


def start_dingtalk_peer(
    data_dir: Path, log: Path, *, app_key: str, secret: str, token_ttl: float = 7200, link_ttl: int = 900
) -> tuple[subprocess.Popen[bytes], str]:
    args = [
        "--data",
        str(data_dir),
        "--app-key",
        app_key,
        "--token-ttl",
        str(token_ttl),
        "--link-ttl",
        str(link_ttl),
    ]
    return start_peer("connectors.oa.dingtalk_peer", args, log, secret_env=SECRET_ENV, secret=secret)
