"""病毒检测 (四性检测, 安全性) with a real ClamAV daemon, started by scripts/clamav.sh.

Its signature database holds the EICAR anti-virus test string (no ClamAV mirror is reachable here); the
engine, the protocol and the refusal path are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, CursorRow, EventRow, QuarantineRow, SyncRunRow
from archive_hub.pipeline import run_step, run_sync
from archive_sink.filesystem import published_packages
from archive_sink.virus_scan import ClamdScanner, ScannerUnavailable
from tests.conftest import Hub, seed, service_script
from tests.test_cli import cli

ROOT = Path(__file__).resolve().parent.parent
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture(scope="session")
def clamd_url() -> Iterator[str]:
    yield service_script("clamav.sh", "start", timeout=600)  # a first run installs clamav-daemon


def test_the_scanner_speaks_clamd_instream(clamd_url: str) -> None:
    scanner = ClamdScanner(clamd_url)
    assert scanner.version().startswith("ClamAV 1.")
    assert scanner.scan(b"%PDF-1.7\n" + bytes(100)) is None
    assert scanner.scan(EICAR) == "ArchiveHub.Test.EICAR.UNOFFICIAL"
    # several chunks of the stream, the match straddling none of them: the daemon sees the whole file
    assert scanner.scan(bytes(3 << 20) + EICAR + bytes(1 << 20)) == "ArchiveHub.Test.EICAR.UNOFFICIAL"
    with pytest.raises(ScannerUnavailable, match="cannot be reached"):
        ClamdScanner("unix:///nonexistent/clamd.sock").scan(b"x")


def infect_one_attachment(hub: Hub) -> tuple[int, str]:
    """Overwrite 68 bytes inside one PDF on the ERP's file server with the test string (its size and its
    PDF header stay, so only the scanner can tell). Returns (voucher id, file name)."""
    db = sqlite3.connect(hub.erp_url.removeprefix("sqlite:///"))
    voucher_id, name, rel = db.execute(
        "SELECT voucher_id, file_name, storage_path FROM erp_attachment WHERE mime_type = 'application/pdf' "
        "ORDER BY voucher_id LIMIT 1 OFFSET 1"
    ).fetchone()
    db.close()
    path = hub.home / "sample_erp" / "attachments" / rel
    data = bytearray(path.read_bytes())
    data[200 : 200 + len(EICAR)] = EICAR
    path.write_bytes(bytes(data))
    return voucher_id, name


def test_an_infected_attachment_is_refused_and_the_rest_archived_with_the_check_on_record(
    hub: Hub, clamd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(hub, vouchers=24, bad_records=False, attachment_every=2)
    voucher_id, name = infect_one_attachment(hub)
    monkeypatch.setenv("ARCHIVE_HUB_CLAMD", clamd_url)
    summary = run_sync("erp_sample", "run-1")
    assert summary["status"] == "success"
    assert (summary["archived"], summary["quarantined"], summary["attachments_scanned"]) == (23, 1, 12)
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        (item,) = s.scalars(select(QuarantineRow)).all()
    assert item.business_id == str(voucher_id) and item.stage == "archive"
    assert f"attachment 1 {name!r}: virus found by ClamAV 1." in item.reason
    assert "ArchiveHub.Test.EICAR.UNOFFICIAL; not archived" in item.reason
    assert not list((hub.home / "quarantine").rglob("*.pdf"))  # the infected bytes are not copied in
    metadata = [
        (p / "data" / "metadata.xml").read_text(encoding="utf-8")
        for p in published_packages(hub.settings.archive_root)
    ]
    with_files = [m for m in metadata if "附件" in m and "attachments/" in m]
    assert with_files and all("病毒检测: ClamAV 1." in m for m in with_files)
    assert not any(
        "病毒检测" in m for m in metadata if m not in with_files
    )  # nothing to scan, nothing claimed


def test_a_scanner_that_does_not_answer_stops_the_run_before_anything_is_archived(
    hub: Hub, clamd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(hub, vouchers=10, bad_records=False, attachment_every=1)
    monkeypatch.setenv("ARCHIVE_HUB_CLAMD", f"unix://{hub.home}/no-clamd.sock")
    with pytest.raises(ScannerUnavailable, match="no-clamd.sock cannot be reached"):
        run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(ArchiveRecordRow)
                .where(ArchiveRecordRow.status == "archived")
            )
            == 0
        )
        assert s.scalar(select(func.count()).select_from(CursorRow)) == 0
        failed = s.get(SyncRunRow, "run-1")  # `archive-hub runs` says why, not "running" for ever
        assert failed is not None and failed.status == "failed" and failed.summary["failed_step"] == "archive"
        assert failed.summary["error"].startswith("ScannerUnavailable: virus scanner unix://")
    assert published_packages(hub.settings.archive_root) == []
    monkeypatch.setenv("ARCHIVE_HUB_CLAMD", clamd_url)  # the scanner is back: the step is retried and goes on
    assert run_step("archive", "erp_sample", "run-1")["archived"] == 10
    with catalog.reading() as s:
        assert s.get(SyncRunRow, "run-1").status == "running"  # type: ignore[union-attr]
    summary = run_step("finalize", "erp_sample", "run-1")
    assert (summary["status"], summary["archived"], summary["attachments_scanned"]) == ("success", 10, 10)


def test_scan_finds_what_was_archived_before_the_signatures_knew_it_and_logs_the_check(
    hub: Hub, clamd_url: str
) -> None:
    """Archived while no scanner was configured (as if its signature came out later): `scan` finds it,
    changes nothing (verify still passes) and leaves a virus-scan event with the finding."""
    seed(hub, vouchers=12, bad_records=False, attachment_every=2)
    infect_one_attachment(hub)
    assert run_sync("erp_sample", "run-1")["archived"] == 12
    env = {"ARCHIVE_HUB_CLAMD": clamd_url}
    done = cli("scan", env=env)
    assert done.returncode == 4, done.stderr
    assert "ArchiveHub.Test.EICAR.UNOFFICIAL" in done.stderr and "virus found" in done.stderr
    assert "1 found" in done.stdout and "logged as a virus-scan event" in done.stdout
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        (event,) = s.scalars(select(EventRow).where(EventRow.kind == "virus-scan")).all()
        codes = s.scalars(select(ArchiveRecordRow.archival_code)).all()
    detail = json.loads(event.detail)
    assert (
        detail["scanner"].startswith("ClamAV 1.") and detail["files"] == 30
    )  # 12 voucher.xml, 12 metadata.xml, 6 attachments
    assert [f["signature"] for f in detail["found"]] == ["ArchiveHub.Test.EICAR.UNOFFICIAL"]
    assert cli("verify").returncode == 0
    other = next(c for c in codes if c != detail["found"][0]["archival_code"])
    clean = cli("scan", "--code", other, env=env)
    assert clean.returncode == 0 and "nothing found" in clean.stdout
    unset = cli("scan")
    assert unset.returncode == 2 and "ARCHIVE_HUB_CLAMD" in unset.stderr


def test_a_file_larger_than_the_scanner_takes_is_refused_alone(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second real clamd that takes at most 1 MiB: the 2 MiB attachment is quarantined saying what to raise,
    the run goes on (one oversized file must not stop every run after it)."""
    state = Path(tempfile.mkdtemp(prefix="clam", dir="/tmp"))  # a unix socket path must stay short
    env = {**os.environ, "CLAMAV_STATE_DIR": str(state), "CLAMAV_STREAM_MAX": "1M"}
    script = ["bash", str(ROOT / "scripts" / "clamav.sh")]
    started = subprocess.run([*script, "start"], capture_output=True, text=True, env=env, timeout=600)
    assert started.returncode == 0, started.stderr
    try:
        seed(hub, vouchers=30, bad_records=False, attachment_every=3)
        db = sqlite3.connect(hub.erp_url.removeprefix("sqlite:///"))
        voucher_id, rel = db.execute("SELECT voucher_id, storage_path FROM erp_attachment LIMIT 1").fetchone()
        path = hub.home / "sample_erp" / "attachments" / rel
        path.write_bytes(path.read_bytes() + bytes(2 << 20))  # padding after the end: still the same format
        db.execute(
            "UPDATE erp_attachment SET size = ? WHERE voucher_id = ?", (path.stat().st_size, voucher_id)
        )
        db.commit()
        db.close()
        monkeypatch.setenv("ARCHIVE_HUB_CLAMD", started.stdout.strip())
        summary = run_sync("erp_sample", "run-1")
        assert (summary["status"], summary["archived"], summary["quarantined"]) == ("success", 29, 1)
        catalog = Catalog(hub.settings.catalog_url)
        with catalog.reading() as s:
            (item,) = s.scalars(select(QuarantineRow)).all()
        assert item.business_id == str(voucher_id)
        assert "was not scanned" in item.reason and "raise StreamMaxLength in its clamd.conf" in item.reason

        # archived without a scanner, the same file is named by `scan` as not scanned; the rest is scanned
        monkeypatch.delenv("ARCHIVE_HUB_CLAMD")
        assert cli("quarantine", "retry", "--source", "erp_sample").returncode == 0
        rescan = cli("scan", env={"ARCHIVE_HUB_CLAMD": started.stdout.strip()})
        assert rescan.returncode == 4, rescan.stderr
        (line,) = [x for x in rescan.stderr.splitlines() if "not scanned" in x]
        assert line.startswith("unreadable:") and "StreamMaxLength" in line
        assert "nothing found" in rescan.stdout and "virus found" not in rescan.stderr
    finally:
        subprocess.run([*script, "stop"], env=env, timeout=60, check=False)
        shutil.rmtree(state, ignore_errors=True)
