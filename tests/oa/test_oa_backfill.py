"""`archive-hub oa backfill` against the WeCom peer (a real process), and an approval the callback called
finished before WeCom's detail did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from connectors.testing import read_all
from tests.oa.test_wecom_stream import (
    CALLBACK_AES_KEY,
    CALLBACK_TOKEN,
    CORP_ID,
    GOOD,
    REJECTED,
    SECRET,
    announce,
    approval,
    make_stream,
    write_wecom_data,
)
from tests.oa.wecom_server import start_wecom_peer, stop_wecom_peer

PAID = "202503120001"  # 已支付 (10): finished too
RUNNING = "202503120002"  # 审批中


def _add(data: Path, sp_no: str, n: int, status: int) -> None:
    info = approval(n, sp_no, status=status, with_receipt=False)
    info["sp_status"] = status
    (data / "approvals" / f"{sp_no}.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    for control in info["apply_data"]["contents"]:  # its 发票, so a finished one can be archived whole
        for f in (control.get("value") or {}).get("files") or []:
            (data / "media" / f["file_id"]).write_bytes(b"%PDF-1.7\n" + sp_no.encode() + b"\n%%EOF\n")
            (data / "media" / f"{f['file_id']}.json").write_text(
                json.dumps({"file_name": f"{sp_no}.pdf", "content_type": "application/pdf"}), encoding="utf-8"
            )


def _backfill(home: Path, peer_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_HUB_", "WECOM_"))}
    env |= {
        "ARCHIVE_HUB_HOME": str(home),
        "WECOM_API_URL": peer_url,
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "WECOM_CALLBACK_AES_KEY": CALLBACK_AES_KEY,
    }
    return subprocess.run(
        [sys.executable, "-m", "archive_hub.cli", "oa", "backfill", "wecom_approvals", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_backfill_adds_finished_and_paid_approvals_once(tmp_path: Path) -> None:
    data = write_wecom_data(tmp_path / "wecom")
    _add(data, PAID, 10, 10)
    _add(data, RUNNING, 11, 1)
    process, url = start_wecom_peer(data, tmp_path / "peer.log", corp_id=CORP_ID, secret=SECRET)
    try:
        home = tmp_path / "hub"
        first = _backfill(home, url, "--since", "2025-03-01", "--until", "2025-03-31")
        assert first.returncode == 0, first.stderr
        inbox = home / "oa_inbox" / "wecom_approvals"
        polled = {json.loads(p.read_text())["sp_no"] for p in inbox.iterdir()}
        assert set(GOOD) | {PAID} <= polled  # 已通过 and 已支付, each listed by its own status filter
        assert REJECTED not in polled and RUNNING not in polled
        second = _backfill(home, url, "--since", "2025-03-01", "--until", "2025-03-31")
        assert second.returncode == 0 and "0 added" in " ".join(second.stdout.split())
        assert len(list(inbox.iterdir())) == len(polled)
        assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr
        wrong = _backfill(home, url, "--since", "2025-03-31", "--until", "2025-03-01")
        assert wrong.returncode == 0 and "0 added" in " ".join(wrong.stdout.split())
        bad = _backfill(home, url.replace("http://", "ftp://"), "--since", "2025-03-01")
        assert bad.returncode == 2 and "connection.base_url" in bad.stderr and SECRET not in bad.stderr
    finally:
        stop_wecom_peer(process)


def test_callback_said_finished_but_wecom_still_says_running_is_kept_for_retry(tmp_path: Path) -> None:
    data = write_wecom_data(tmp_path / "wecom")
    _add(data, RUNNING, 11, 1)
    process, url = start_wecom_peer(data, tmp_path / "peer.log", corp_id=CORP_ID, secret=SECRET)
    try:
        stream = make_stream(url, tmp_path)
        announce(stream, RUNNING, 2)
        (record,) = read_all(stream)
        assert record.key == RUNNING and "审批中" in record.data["_refused"]
        assert RUNNING not in stream.passed_over  # not silently dropped: quarantined, so a retry asks again
        _add(data, RUNNING, 11, 2)  # WeCom catches up
        (again,) = stream.read_keys([RUNNING])
        assert "_refused" not in again.data and again.data["status"] == "已通过"
    finally:
        stop_wecom_peer(process)
