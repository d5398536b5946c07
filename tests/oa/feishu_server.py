"""The local Feishu peer (connectors.oa.feishu_peer) as a real process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.oa.peer_process import REPO_ROOT, start_peer, stop_peer

__all__ = ["REPO_ROOT", "start_feishu_peer", "stop_feishu_peer"]

SECRET_ENV = "ARCHIVE_HUB_TEST_FEISHU_SECRET"
stop_feishu_peer = stop_peer


def start_feishu_peer(
    data_dir: Path, log: Path, *, app_id: str, secret: str, token_ttl: float = 7200
) -> tuple[subprocess.Popen[bytes], str]:
    args = [
        "--data",
        str(data_dir),
        "--app-id",
        app_id,
        "--token-ttl",
        str(token_ttl),
    ]
    return start_peer("connectors.oa.feishu_peer", args, log, secret_env=SECRET_ENV, secret=secret)
