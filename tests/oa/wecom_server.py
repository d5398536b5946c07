"""The local WeCom peer (connectors.oa.wecom_peer) as a real process on a free loopback port.

`start_wecom_peer` starts one and returns it once it answers HTTP; `stop_wecom_peer` ends it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.oa.peer_process import REPO_ROOT, start_peer, stop_peer

__all__ = ["REPO_ROOT", "start_wecom_peer", "stop_wecom_peer"]

SECRET_ENV = "ARCHIVE_HUB_TEST_WECOM_SECRET"


def start_wecom_peer(
    data_dir: Path, log: Path, *, corp_id: str, secret: str, token_ttl: float = 7200
) -> tuple[subprocess.Popen[bytes], str]:
    """The peer serving `data_dir`, its output in the file `log`; returns it once it answers HTTP."""
    args = ["--data", str(data_dir), "--corp-id", corp_id, "--token-ttl", str(token_ttl)]
    return start_peer("connectors.oa.wecom_peer", args, log, secret_env=SECRET_ENV, secret=secret)


stop_wecom_peer = stop_peer
