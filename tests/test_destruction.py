"""销毁 (Art. 18): a hold keeps a record; a list is drawn up from what is due, signed by five, executed under
three witnesses; what it lists is gone from disk and backups, the catalog keeps the proof, verify passes;
and nothing happens out of order: unsigned, changed since signing, held, not yet due, or done twice."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from lxml import etree
from sqlalchemy import select, update

from archive_hub import destruction
from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, EventRow, QuarantineRow
from archive_hub.pipeline import run_sync
from archive_hub.pipeline.finalize import QuarantineThresholdError
from archive_hub.registers import archive_register
from archive_hub.verification import verify_archive
from archive_sink.filesystem import published_packages
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, seed
from tests.test_backup import restored
from tests.test_cli import cli

OLD_YEAR = 1994  # 30 years kept from 1995-01-01: due 2025-01-01, before today
SIGNERS = {
    "unit-head": "王总",
    "archives-head": "李档案",
    "accounting-head": "张会计",
    "archives-handler": "赵经办",
    "accounting-handler": "钱经办",
}
WITNESS_ARGS = ("--archives-witness", "孙监销", "--accounting-witness", "周监销", "--it-witness", "吴信息")


def codes(catalog_url: str, status: str | None = None) -> list[str]:
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        query = select(ArchiveRecordRow.archival_code).order_by(ArchiveRecordRow.archival_code)
        if status:
            query = query.where(ArchiveRecordRow.status == status)
        found = list(s.execute(query).scalars())
    catalog.dispose()
    return found


def events(catalog_url: str, kind: str) -> list[EventRow]:
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        found = list(
            s.execute(select(EventRow).where(EventRow.kind == kind).order_by(EventRow.seq)).scalars()
        )
    catalog.dispose()
    return found


def sign_all(list_id: int) -> None:
    for role, name in SIGNERS.items():
        out = cli("destruction", "sign", str(list_id), "--role", role, "--name", name)
        assert out.returncode == 0, out.stderr


def verified(hub: Hub, catalog_url: str) -> list[str]:
    catalog = Catalog(catalog_url)
    report = verify_archive(catalog, hub.settings.archive_root)
    catalog.dispose()
    return report.problems


def test_a_signed_witnessed_list_destroys_exactly_its_records_and_the_archive_still_verifies(
    hub: Hub, catalog_url: str
) -> None:
    seed(hub, vouchers=30, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    all_codes = codes(catalog_url)
    assert len(all_codes) == 30
    kept = all_codes[4]
    held = cli("destruction", "hold", kept, "--reason", "未结清的债权债务: 合同 HT-1994-031")
    assert held.returncode == 0, held.stderr
    (due,) = [json.loads(line) for line in cli("due", "--json").stdout.splitlines()]
    assert (due["records"], due["held"]) == (30, 1)  # the appraisal sees what must stay

    drawn = cli("destruction", "draw-up", "--opinion", "已到期, 无未了事项, 可销毁")
    assert drawn.returncode == 0, drawn.stderr
    assert "销毁清册 1 drawn up: 29 record(s)" in drawn.stdout and "1 held record(s) left off" in drawn.stdout

    early = cli("destruction", "execute", "1", *WITNESS_ARGS)
    assert early.returncode == 2 and "not signed by 单位负责人" in early.stderr
    assert len(published_packages(hub.settings.archive_root)) == 30  # nothing happened

    sign_all(1)
    twice = cli("destruction", "sign", "1", "--role", "unit-head", "--name", "王总")
    assert twice.returncode == 2 and "already signed" in twice.stderr

    done = cli("destruction", "execute", "1", *WITNESS_ARGS)
    assert done.returncode == 0, done.stderr
    assert "29 record(s) destroyed, 29 package version(s)" in done.stdout
    list_code = f"J001-KJ·{dt.datetime.now(dt.UTC).year}-Y-QT-0001"  # 其他会计资料, 永久
    assert f"销毁清册 1 archived 永久 as {list_code}" in done.stdout
    on_disk = published_packages(hub.settings.archive_root)
    assert [p.parent.name for p in on_disk] == [kept, list_code]
    (xml_file,) = on_disk[1].rglob("*销毁清册-0001.xml")
    archived_list = etree.fromstring(xml_file.read_bytes())
    destroyed_events = {e.subject: json.loads(e.detail)["versions"] for e in events(catalog_url, "destroyed")}
    assert {
        item.get("档号"): {v.get("号"): v.get("manifest_sha256") for v in item.iter("版本")}
        for item in archived_list.iter("件")
    } == destroyed_events
    assert [s.text for s in archived_list.iter("签字人")] == list(SIGNERS.values())
    assert not (hub.settings.archive_root / destruction.TRASH / "1").exists()
    assert codes(catalog_url, "destroyed") == [c for c in all_codes if c != kept]
    assert list(destroyed_events) == [c for c in all_codes if c != kept]
    assert json.loads(events(catalog_url, "destruction-executed")[0].detail)["witnesses"]["it"] == "吴信息"
    assert verified(hub, catalog_url) == []  # 件号 still gap-free: the rows stay

    again = cli("destruction", "execute", "1", *WITNESS_ARGS)
    assert again.returncode == 2 and "is destroyed: nothing to execute" in again.stderr
    shown = json.loads(cli("destruction", "show", "1", "--json").stdout)
    assert shown["status"] == "destroyed" and len(shown["records"]) == 29
    (line,) = shown["lines"]
    assert line["件数"] == 29 and line["应保管期限"] == "30年" and line["起止年度"] == str(OLD_YEAR)
    assert line["档案编号"].count("–") == 2  # two runs of 件号 around the held one
    assert set(shown["signatures"]) == {
        "单位负责人",
        "档案管理机构负责人",
        "会计管理机构负责人",
        "档案管理机构经办人",
        "会计管理机构经办人",
    }
    workbook = hub.home / "销毁清册.xlsx"
    assert cli("destruction", "show", "1", "--xlsx", str(workbook)).returncode == 0 and workbook.is_file()

    victim = all_codes[0]
    refused = cli("copy", victim, str(hub.home / "copies"), "--purpose", "审计")
    assert refused.returncode == 2 and "destroyed under a 销毁清册" in refused.stderr
    inventory = cli("inventory", "--json")
    assert [json.loads(line)["archival_code"] for line in inventory.stdout.splitlines()] == [kept, list_code]
    assert cli("destruction", "draw-up", "--opinion", "x").returncode == 2  # only the held one is due

    rec = cli("reconcile", "erp_sample", "--json")
    assert rec.returncode == 0, rec.stdout  # destroyed lawfully is not missing
    assert json.loads(rec.stdout)["counts"] == {"archived": 1, "destroyed": 29}

    # The ERP still holds the vouchers: unchanged ones are left alone, a changed one is quarantined.
    touch_voucher(hub.erp_url, 1, new_summary="销毁后更正")
    with pytest.raises(QuarantineThresholdError):  # 1 of the 3 read in the look-back window
        run_sync("erp_sample", "run-2")
    assert [p.parent.name for p in published_packages(hub.settings.archive_root)] == [kept, list_code]
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        (item,) = s.execute(select(QuarantineRow)).scalars().all()
    catalog.dispose()
    assert "was destroyed under a 销毁清册" in item.reason
    assert codes(catalog_url, "destroyed") == [c for c in all_codes if c != kept]


def test_out_of_order_lists_are_refused_naming_why(hub: Hub, catalog_url: str) -> None:
    seed(hub, vouchers=12, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    all_codes = codes(catalog_url)
    assert (
        cli("destruction", "draw-up", "--on", "2024-12-31", "--opinion", "x").returncode == 2
    )  # not due yet
    assert cli("destruction", "draw-up", "--opinion", "  ").returncode == 2  # an opinion is required
    assert cli("destruction", "draw-up", "--opinion", "可销毁").returncode == 0
    assert cli("destruction", "draw-up", "--opinion", "可销毁").returncode == 2  # all on list 1 already

    out = cli("destruction", "sign", "1", "--role", "archives-handler", "--name", "赵经办")
    assert out.returncode == 0
    same = cli("destruction", "sign", "1", "--role", "accounting-handler", "--name", "赵经办")
    assert same.returncode == 2 and "two people" in same.stderr
    for role, name in SIGNERS.items():
        if role != "archives-handler":
            assert cli("destruction", "sign", "1", "--role", role, "--name", name).returncode == 0

    # Changed after signing: a correction in the ERP gives a listed record a new version.
    touch_voucher(hub.erp_url, 3, new_summary="更正")
    run_sync("erp_sample", "run-2")
    # and a hold placed after the list was drawn up
    assert cli("destruction", "hold", all_codes[7], "--reason", "诉讼未结").returncode == 0
    out = cli("destruction", "execute", "1", *WITNESS_ARGS)
    assert out.returncode == 2
    assert "changed since it was drawn up" in out.stderr and f"{all_codes[7]}: held (诉讼未结)" in out.stderr
    assert len(published_packages(hub.settings.archive_root)) == 13  # 12 + the new version: nothing went
    assert events(catalog_url, "destroyed") == []

    assert cli("destruction", "withdraw", "1", "--reason", "清册须重编").returncode == 0
    assert cli("destruction", "release", all_codes[7]).returncode == 0
    redrawn = cli("destruction", "draw-up", "--opinion", "可销毁")
    assert "销毁清册 2 drawn up: 12 record(s)" in redrawn.stdout
    sign_all(2)
    missing_witness = cli("destruction", "execute", "2", *WITNESS_ARGS[:4], "--it-witness", " ")
    assert missing_witness.returncode == 2 and "信息系统管理机构监销人" in missing_witness.stderr
    assert cli("destruction", "execute", "2", *WITNESS_ARGS).returncode == 0
    (left,) = published_packages(hub.settings.archive_root)  # only the 销毁清册 itself, archived 永久
    assert "-Y-QT-" in left.parent.name
    assert verified(hub, catalog_url) == []  # both versions of the corrected record went


WITNESSES = {"archives": "孙", "accounting": "周", "it": "吴"}


def signed_list_of_eight(hub: Hub) -> Catalog:
    """8 vouchers of a year long due, on 销毁清册 1, signed by all five; the catalog to execute it with."""
    from archive_hub.catalog.destruction import draw_up, sign

    seed(hub, vouchers=8, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.transaction() as s:
        draw_up(s, dt.date.today(), "可销毁", "tester")
    with catalog.transaction() as s:
        for role, name in SIGNERS.items():
            sign(s, 1, role, name)
    return catalog


def test_an_interrupted_destruction_is_named_by_verify_and_finished_by_running_it_again(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = signed_list_of_eight(hub)

    def crash(*_: object) -> None:
        raise OSError("power lost")

    with monkeypatch.context() as patched, pytest.raises(OSError):  # only this call: the hub's env stays
        patched.setattr(destruction, "remove_packages", crash)
        destruction.execute(catalog, hub.settings.archive_root, hub.settings.staging_root, 1, WITNESSES)
    problems = verify_archive(catalog, hub.settings.archive_root).problems
    assert len(problems) == 8 and all("is still on disk" in p for p in problems)
    done = destruction.execute(catalog, hub.settings.archive_root, hub.settings.staging_root, 1, WITNESSES)
    assert done.resumed and done.records == 8
    assert published_packages(hub.settings.archive_root) == []
    # The list is final but not yet a record (the CLI archives it at once; this test called the function).
    assert verify_archive(catalog, hub.settings.archive_root).problems == [
        "销毁清册-0001: final but not archived as a record (`archive-hub sync hub_registers` archives it)"
    ]
    assert archive_register(catalog, "销毁清册-0001")
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_a_record_deleted_outside_the_procedure_is_named_by_verify(hub: Hub) -> None:
    seed(hub, vouchers=6, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    victim = published_packages(hub.settings.archive_root)[2]
    code = victim.parent.name
    shutil.rmtree(victim.parent)
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.transaction() as s:  # an insider hides the deletion by marking the record destroyed
        s.execute(
            update(ArchiveRecordRow).where(ArchiveRecordRow.archival_code == code).values(status="destroyed")
        )
    problems = verify_archive(catalog, hub.settings.archive_root).problems
    catalog.dispose()
    assert problems == [
        f"{code}: marked destroyed but no destruction is recorded in the event chain",
        f"{code}: marked destroyed but on no executed 销毁清册 (deleted outside the destruction procedure)",
    ]


def test_a_backup_loses_what_was_destroyed_and_still_passes_verify_alone(hub: Hub) -> None:
    seed(hub, vouchers=10, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    dest = hub.home / "backup"
    assert cli("backup", str(dest)).returncode == 0
    keep = codes(hub.settings.catalog_url)[0]
    assert cli("destruction", "hold", keep, "--reason", "未结清的债权债务").returncode == 0
    assert cli("destruction", "draw-up", "--opinion", "可销毁").returncode == 0
    sign_all(1)
    assert cli("destruction", "execute", "1", *WITNESS_ARGS).returncode == 0
    out = cli("backup", str(dest))
    assert out.returncode == 0, out.stderr
    assert "9 destroyed (销毁) package(s) removed" in out.stdout
    assert [p.parent.name for p in published_packages(dest / "archive")][0] == keep  # and the list
    copy = sorted((dest / "catalog").glob("catalog-*.sqlite"))[-1]
    assert restored(copy, dest, hub.home) == (True, 2, [])


def test_records_not_yet_due_are_never_listed(hub: Hub) -> None:
    seed(hub, vouchers=5, bad_records=False)  # fiscal 2025: due 2056
    run_sync("erp_sample", "run-1")
    out = cli("destruction", "draw-up", "--opinion", "可销毁")
    assert out.returncode == 2 and "no record is due by" in out.stderr
    future = cli("destruction", "draw-up", "--on", "2057-01-01", "--opinion", "可销毁")
    assert future.returncode == 2 and "is in the future" in future.stderr


def test_a_run_killed_after_moving_packages_out_of_view_is_finished_without_leftovers(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = signed_list_of_eight(hub)

    def killed(path: object, *args: object, **kwargs: object) -> None:
        raise OSError("killed while deleting")

    with monkeypatch.context() as patched, pytest.raises(OSError):
        patched.setattr(shutil, "rmtree", killed)
        destruction.execute(catalog, hub.settings.archive_root, hub.settings.staging_root, 1, WITNESSES)
    assert published_packages(hub.settings.archive_root) == []  # out of view, not yet deleted
    trash = hub.settings.archive_root / destruction.TRASH / "1"
    assert len(list(trash.iterdir())) == 8
    done = destruction.execute(catalog, hub.settings.archive_root, hub.settings.staging_root, 1, WITNESSES)
    assert done.resumed and not trash.exists()
    assert (
        list((hub.settings.archive_root / "J001" / str(OLD_YEAR) / "PZ").iterdir()) == []
    )  # no empty 档号 folders
    assert archive_register(catalog, "销毁清册-0001")
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()
