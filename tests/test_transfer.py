"""移交: every version of the records in scope is handed over verified, with a 移交清册 that lets the receiver
check the set alone; a damaged original stops the whole transfer; the 移交清册 is archived (30年)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, EventRow, TransferRow
from archive_hub.pipeline import run_sync
from archive_hub.verification import verify_archive
from archive_sink.filesystem import published_packages
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, seed
from tests.test_cli import cli

SCOPE = "J001-KJ·2025-D30-PZ"
PEOPLE = ("--to", "市档案馆", "--handed-by", "赵移交", "--received-by", "钱接收", "--supervised-by", "孙监交")


def test_a_transfer_hands_over_every_version_verified_and_the_receiver_checks_it_alone(
    hub: Hub, catalog_url: str
) -> None:
    seed(hub, vouchers=20, bad_records=False)
    run_sync("erp_sample", "run-1")
    touch_voucher(hub.erp_url, 5, new_summary="更正摘要")
    run_sync("erp_sample", "run-2")
    dest = hub.home / "handover" / "2025凭证"

    out = cli("transfer", "out", str(dest), "--code", SCOPE, *PEOPLE)
    assert out.returncode == 0, out.stderr
    assert "移交 1: 20 件, 21 package version(s)" in out.stdout
    register_code = f"J001-KJ·{dt.datetime.now(dt.UTC).year}-D30-QT-0001"  # 会计档案移交清册: 30年
    assert f"移交清册 1 archived 30年 as {register_code}" in out.stdout
    originals = {
        p.relative_to(hub.settings.archive_root): p
        for p in published_packages(hub.settings.archive_root)
        if SCOPE in p.parent.name
    }
    handed = {p.relative_to(dest / "archive"): p for p in published_packages(dest / "archive")}
    assert set(handed) == set(originals) and len(handed) == 21
    for rel, original in originals.items():
        for f in original.rglob("*"):
            if f.is_file():
                assert (handed[rel] / f.relative_to(original)).read_bytes() == f.read_bytes()
    assert not list(dest.parent.glob(".*partial"))

    check = cli("transfer", "check", str(dest))
    assert check.returncode == 0, check.stderr
    assert "20 件, 21 package version(s)" in check.stdout and "ok" in check.stdout

    (archived_register,) = (
        p for p in published_packages(hub.settings.archive_root) if p.parent.name == register_code
    )
    (xml,) = archived_register.rglob("*移交清册-0001.xml")
    assert xml.read_bytes() == (dest / "移交清册.xml").read_bytes()  # the very 清册 handed over

    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        kinds = [
            e.kind
            for e in s.execute(
                select(EventRow).where(EventRow.kind.like("transfer%")).order_by(EventRow.seq)
            ).scalars()
        ]
        row = s.execute(select(TransferRow)).scalar_one()
        voucher_5 = s.execute(
            select(ArchiveRecordRow.archival_code).where(ArchiveRecordRow.business_id == "5")
        ).scalar_one()
    assert kinds == ["transferred"] * 20 + ["transfer"]
    assert (row.status, row.records, row.packages) == ("done", 20, 21)
    assert row.people == {"handed_by": "赵移交", "received_by": "钱接收", "supervised_by": "孙监交"}
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()
    shown = json.loads(cli("show", voucher_5, "--json").stdout)
    assert [e["kind"] for e in shown["events"]] == ["archived", "new-version", "transferred", "consulted"]

    (register_line,) = [line for line in cli("inventory").stdout.splitlines() if "-D30-QT" in line]
    assert "多币种" not in register_line  # a register has no amount, not many currencies

    again = cli("transfer", "out", str(dest), "--code", SCOPE, *PEOPLE)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert "市档案馆" in cli("transfer", "list").stdout

    # The receiver's check finds what changed on the way, what is missing and what was slipped in.
    victim = sorted(handed.values())[3]
    (victim / "data" / "voucher.xml").write_bytes(b"<voucher/>")
    gone = sorted(handed.values())[7]
    shutil.rmtree(gone)
    slipped = dest / "archive" / "J001" / "2025" / "PZ" / "J001-KJ·2025-D30-PZ-9999" / "v1"
    shutil.copytree(sorted(handed.values())[0], slipped)
    bad = cli("transfer", "check", str(dest))
    assert bad.returncode == 2
    text = bad.stderr.replace("\n", "")
    assert f"{victim.parent.name} v1: data/voucher.xml" in text
    assert "listed in the 移交清册 but not in the set" in text
    assert "J001-KJ·2025-D30-PZ-9999/v1: in the set but not in the 移交清册" in text


def test_a_damaged_original_stops_the_whole_transfer(hub: Hub) -> None:
    seed(hub, vouchers=10, bad_records=False)
    run_sync("erp_sample", "run-1")
    victim = published_packages(hub.settings.archive_root)[4]
    (victim / "data" / "voucher.xml").write_bytes(b"<voucher/>")
    dest = hub.home / "handover"
    out = cli("transfer", "out", str(dest), "--code", SCOPE, *PEOPLE)
    assert out.returncode == 2
    assert f"{victim.parent.name} v1: data/voucher.xml" in out.stderr.replace("\n", "")
    assert not dest.exists() and not list(hub.home.glob(".*partial"))
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        assert s.execute(select(TransferRow.status)).scalar_one() == "failed"
        assert not s.execute(select(EventRow).where(EventRow.kind == "transferred")).first()
    catalog.dispose()
    nobody = cli("transfer", "out", str(dest), "--code", SCOPE, *PEOPLE[:6], "--supervised-by", " ")
    assert nobody.returncode == 2 and "监交人" in nobody.stderr
    nothing = cli("transfer", "out", str(dest), "--code", "J999", *PEOPLE)
    assert nothing.returncode == 2 and "no archived record" in nothing.stderr


def test_a_register_with_a_doctype_is_refused_unread(hub: Hub) -> None:
    seed(hub, vouchers=8, bad_records=False)
    run_sync("erp_sample", "run-1")
    dest = hub.home / "handover"
    assert cli("transfer", "out", str(dest), "--code", SCOPE, *PEOPLE).returncode == 0
    register = dest / "移交清册.xml"
    body = register.read_text(encoding="utf-8").split("\n", 1)[1]
    register.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n' + body,
        encoding="utf-8",
    )
    out = cli("transfer", "check", str(dest))
    assert out.returncode == 2 and "has a DOCTYPE" in out.stderr


def test_transfers_a_killed_process_left_open_are_settled_by_the_next_one(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the set went into view: it was handed over, so the next transfer registers it (events,
    kept 清册, archived 30年). Killed while copying: nothing became visible; the partial folder goes and the
    row says interrupted. Either way no row stays `preparing`."""
    import archive_hub.transfer as transfer

    seed(hub, vouchers=6, bad_records=False)
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    registers = hub.home / "registers" / "transfers"
    handed = hub.home / "handover" / "first"

    def killed(*args: object) -> None:
        raise SystemExit(137)  # the process dies between publishing the set and registering it

    with monkeypatch.context() as m:
        m.setattr(transfer, "_finish", killed)
        with pytest.raises(SystemExit):
            transfer.transfer_out(
                catalog,
                hub.settings.archive_root,
                handed,
                registers,
                code_prefix=SCOPE,
                receiver="市档案馆",
                people={"handed_by": "赵", "received_by": "钱", "supervised_by": "孙"},
            )
    assert (handed / "移交清册.xml").exists()
    broken = hub.home / "handover" / "second"  # as a kill in the middle of copying leaves it
    partial = broken.parent / f".{broken.name}.partial"
    (partial / "archive").mkdir(parents=True)
    with catalog.transaction() as s:
        s.add(
            TransferRow(
                status="preparing", code_prefix=SCOPE, receiver="x", people={}, destination=str(broken)
            )
        )
    with catalog.reading() as s:
        assert s.scalars(select(TransferRow.status).order_by(TransferRow.id)).all() == ["preparing"] * 2
        assert not s.execute(select(EventRow).where(EventRow.kind == "transferred")).first()
    catalog.dispose()

    out = cli("transfer", "out", str(hub.home / "handover" / "third"), "--code", SCOPE, *PEOPLE)
    assert out.returncode == 0, out.stderr
    assert f"settled first: 移交 1 to {handed} was handed over whole; registered now" in out.stdout
    assert f"settled first: 移交 2 to {broken} was interrupted before the set was whole" in out.stdout
    assert "移交清册 1 archived 30年" in out.stdout and "移交清册 3 archived 30年" in out.stdout
    assert not partial.exists() and not broken.exists()
    with catalog.reading() as s:
        assert s.scalars(select(TransferRow.status).order_by(TransferRow.id)).all() == [
            "done",
            "interrupted",
            "done",
        ]
        transferred = s.scalars(select(EventRow.detail).where(EventRow.kind == "transferred")).all()
    assert sorted(json.loads(d)["transfer"] for d in transferred) == [1] * 6 + [3] * 6
    assert (registers / "移交清册-0001.xml").read_bytes() == (handed / "移交清册.xml").read_bytes()
    report = verify_archive(catalog, hub.settings.archive_root)
    assert report.ok, report.problems
