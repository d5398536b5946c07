"""The spine end to end on a seeded ERP: archive, quarantine, idempotency, versions, retry, verify.

Runs on both catalog dialects (SQLite file and a real PostgreSQL server).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import bagit
import defusedxml.ElementTree as DET
import pytest
from sqlalchemy import func, select, update

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import verify_chain
from archive_hub.catalog.history import record_history
from archive_hub.catalog.models import ArchiveRecordRow, CursorRow, EventRow, PackageRow, QuarantineRow
from archive_hub.pipeline import run_sync
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.finalize import QuarantineThresholdError
from archive_hub.pipeline.redrive import redrive
from archive_hub.verification import verify_archive
from archive_sink.filesystem import published_packages
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, override_erp_sample, seed

NS = {"m": "urn:archive-hub:da-t-94:1"}


def packages_on_disk(root: Path) -> list[Path]:
    return published_packages(root)


def defects(hub: Hub) -> dict[str, str]:
    return {str(b.voucher_id): str(b.defect) for b in hub.seed.bad_vouchers}  # type: ignore[attr-defined]


def test_sync_archives_good_vouchers_and_quarantines_each_bad_one(hub: Hub, catalog_url: str) -> None:
    seed(hub, vouchers=120)
    summary = run_sync("erp_sample", "run-1")
    assert summary["read"] == 126
    assert summary["archived"] == 120
    assert summary["quarantined"] == 6
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        items = {q.business_id: q for q in s.execute(select(QuarantineRow)).scalars()}
        records = s.execute(select(ArchiveRecordRow)).scalars().all()
    bad = defects(hub)
    # Of two vouchers sharing a number, the one with the lower source id keeps it; the other waits.
    dup = next(k for k, d in bad.items() if d == "duplicate_voucher_no")
    dup_item = next(q for q in items.values() if "already used" in q.reason)
    assert dup in (dup_item.business_id, dup_item.reason.rsplit(" ", 1)[-1])
    bad = {k: d for k, d in bad.items() if k != dup} | {dup_item.business_id: "duplicate_voucher_no"}
    assert set(items) == set(bad)
    reasons = {bad[k]: (q.stage, q.reason) for k, q in items.items()}
    assert reasons["unbalanced"][0] == "validate" and "not balanced" in reasons["unbalanced"][1]
    assert reasons["missing_account"][0] == "map" and "account_code" in reasons["missing_account"][1]
    assert reasons["invalid_date"][0] == "map" and "2025-13-45" in reasons["invalid_date"][1]
    assert (
        reasons["missing_attachment_file"][0] == "archive"
        and "cannot be read" in reasons["missing_attachment_file"][1]
    )
    assert (
        reasons["duplicate_voucher_no"][0] == "validate"
        and "already used" in reasons["duplicate_voucher_no"][1]
    )
    # The same invoice file on a second voucher: the earlier voucher holds it (财会〔2020〕6号).
    stage, reason = reasons["duplicate_invoice"]
    twin = next(b for b in hub.seed.bad_vouchers if b.defect == "duplicate_invoice").detail.split()[5]  # type: ignore[attr-defined]
    holder = next(r for r in records if r.business_id == twin.rstrip(":"))
    assert stage == "archive" and f"already archived with {holder.archival_code}" in reason
    for q in items.values():  # the original payload is kept for re-drive
        assert q.raw_payload.startswith("{") and f'"id":{q.business_id},' in q.raw_payload
        assert q.mapping_version == "erp_sample_voucher@1.0.0"
    # 档号: one per record, 件号 gap-free from 1
    assert len(records) == 120 and all(r.status == "archived" for r in records)
    assert sorted(r.item_no for r in records) == list(range(1, 121))
    assert len({r.archival_code for r in records}) == 120
    assert len(packages_on_disk(hub.settings.archive_root)) == 120
    report = verify_archive(catalog, hub.settings.archive_root)
    assert report.ok, report.problems[:5]
    catalog.dispose()


def test_package_is_a_valid_bag_with_dat94_metadata(seeded_hub: Hub) -> None:
    run_sync("erp_sample", "run-1")
    root = seeded_hub.settings.archive_root
    with_attachment = [p for p in packages_on_disk(root) if (p / "data" / "attachments").exists()]
    assert with_attachment, "the seed puts an attachment on every 4th voucher"
    package = with_attachment[0]
    bag = bagit.Bag(str(package))
    bag.validate()  # bagit-python re-hashes the payload against manifest-sha256.txt and the tag manifest
    names = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert {
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "manifest-sm3.txt",
        "tagmanifest-sha256.txt",
        "data/voucher.xml",
        "data/metadata.xml",
    } <= set(names)
    meta = DET.parse(package / "data" / "metadata.xml").getroot()
    entity = meta.find("m:文件实体", NS)
    code = entity.findtext("m:档号", namespaces=NS)
    assert code == package.parent.name and code.startswith("J001-KJ·2025-D30-PZ-")
    assert entity.findtext("m:保管期限", namespaces=NS) == "30年"
    assert entity.findtext("m:保管期限到期日", namespaces=NS) == "2056-01-01"
    assert entity.findtext("m:会计资料形式", namespaces=NS) == "凭证"
    assert entity.findtext("m:来源/m:全宗号", namespaces=NS) == "J001"
    hashes = {
        f.findtext("m:计算机文件名", namespaces=NS): [h.text for h in f.findall("m:哈希值", NS)]
        for f in entity.findall("m:计算机文件", NS)
    }
    manifest_sm3 = dict(
        reversed(line.split("  ", 1)) for line in (package / "manifest-sm3.txt").read_text().splitlines()
    )
    for name, (sha, sm3) in hashes.items():
        assert manifest_sm3[name] == sm3 and len(sha) == 64
    roles = {a.get("角色") for a in meta.find("m:机构人员实体", NS)}
    assert {"制单", "审核", "记账", "会计主管"} <= roles
    voucher = DET.parse(package / "data" / "voucher.xml").getroot()
    totals = voucher.find("{urn:archive-hub:voucher:1}合计")
    assert totals[0].text == totals[1].text  # balanced


def test_rerun_is_idempotent(hub: Hub, catalog_url: str) -> None:
    seed(hub, vouchers=120)
    first = run_sync("erp_sample", "run-1")
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        events_before = s.execute(
            select(func.count(EventRow.seq)).where(EventRow.kind == "archived")
        ).scalar_one()
        s.execute(update(CursorRow).values(value={"changed_at": "2000-01-01T00:00:00", "key": ""}))
        s.commit()  # force the next run to re-read everything
    second = run_sync("erp_sample", "run-2")
    assert first["archived"] == 120
    assert second["read"] == 126 and second["archived"] == 0 and second["unchanged"] == 120
    assert second["quarantined"] == 6  # still bad, counted again ...
    with catalog.reading() as s:
        assert s.execute(select(func.count(QuarantineRow.id))).scalar_one() == 6  # ... but not duplicated
        assert s.execute(select(func.count(PackageRow.id))).scalar_one() == 120
        assert (
            s.execute(select(func.count(EventRow.seq)).where(EventRow.kind == "archived")).scalar_one()
            == events_before
        )
        assert max(q.attempts for q in s.execute(select(QuarantineRow)).scalars()) == 2
    assert len(packages_on_disk(hub.settings.archive_root)) == 120
    catalog.dispose()


def test_changed_voucher_gets_a_new_linked_version(hub: Hub, catalog_url: str) -> None:
    seed(hub, vouchers=40, bad_records=False)
    run_sync("erp_sample", "run-1")
    touch_voucher(hub.erp_url, 7, new_summary="更正摘要：报销差旅费（补充发票）")
    summary = run_sync("erp_sample", "run-2")
    assert summary["new_versions"] == 1 and summary["archived"] == 0
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        record = s.execute(select(ArchiveRecordRow).where(ArchiveRecordRow.business_id == "7")).scalar_one()
        versions = (
            s.execute(
                select(PackageRow).where(PackageRow.record_id == record.id).order_by(PackageRow.version)
            )
            .scalars()
            .all()
        )
    assert record.current_version == 2 and "更正摘要" in record.search_text
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].previous_package_id == versions[0].id
    v1, v2 = (hub.settings.archive_root / v.path for v in versions)
    assert v1.is_dir() and v2.is_dir()  # history kept, never overwritten
    assert v1.parent == v2.parent  # same 档号
    assert "Archive-Hub-Previous-Version: " + versions[0].path in (v2 / "bag-info.txt").read_text()
    assert "替代" in (v2 / "data" / "metadata.xml").read_text()
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_quarantined_voucher_fixed_in_the_erp_is_redriven(seeded_hub: Hub) -> None:
    run_sync("erp_sample", "run-1")
    unbalanced = next(k for k, d in defects(seeded_hub).items() if d == "unbalanced")
    with sqlite3.connect(seeded_hub.erp_url.removeprefix("sqlite:///")) as erp:
        lines = erp.execute(
            "select id, debit, credit from erp_voucher_line where voucher_id=? order by line_no",
            (unbalanced,),
        ).fetchall()
        debit = sum(float(r[1]) for r in lines)
        credit_line = next(r for r in lines if float(r[2]) > 0)
        other_credit = sum(float(r[2]) for r in lines if r[0] != credit_line[0])
        erp.execute(
            "update erp_voucher_line set credit=? where id=?",
            (round(debit - other_credit, 2), credit_line[0]),
        )
    ctx = RunContext.open("erp_sample", "retry-1")
    summary = redrive(ctx)
    ctx.close()
    assert summary["retried"] == 6 and summary["resolved"] == 1 and summary["still_quarantined"] == 5
    catalog = Catalog(seeded_hub.settings.catalog_url)
    with catalog.reading() as s:
        row = s.execute(select(QuarantineRow).where(QuarantineRow.business_id == unbalanced)).scalar_one()
        assert row.status == "resolved"
        record = s.execute(
            select(ArchiveRecordRow).where(ArchiveRecordRow.business_id == unbalanced)
        ).scalar_one()
        assert record.status == "archived"
        history = record_history(s, record.archival_code)  # what `archive-hub show` prints
    assert history is not None
    assert [(q.stage, q.status, q.attempts) for q in history.quarantine] == [("validate", "resolved", 1)]
    assert "not balanced" in history.quarantine[0].reason
    assert [e.kind for e in history.events] == ["archived"] and history.events[0].run_id == "retry-1"
    assert history.current is not None and history.current.package.run_id == "retry-1"
    catalog.dispose()


def test_run_fails_above_the_quarantine_threshold_and_keeps_the_cursor(
    seeded_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    override_erp_sample(seeded_hub, monkeypatch, "quarantine_threshold: 0.05", "quarantine_threshold: 0.01")
    with pytest.raises(
        QuarantineThresholdError,
        match=r"6 of 126 records \(4.8%\) were newly quarantined, above the threshold of 1.0%",
    ):
        run_sync("erp_sample", "run-1")
    catalog = Catalog(seeded_hub.settings.catalog_url)
    with catalog.reading() as s:
        assert s.execute(select(CursorRow)).first() is None
        assert (
            s.execute(select(func.count(ArchiveRecordRow.id))).scalar_one() == 120
        )  # good ones are archived
    catalog.dispose()


def test_verify_detects_tampering_with_a_package_and_with_the_event_log(seeded_hub: Hub) -> None:
    run_sync("erp_sample", "run-1")
    catalog = Catalog(seeded_hub.settings.catalog_url)
    root = seeded_hub.settings.archive_root
    assert verify_archive(catalog, root).ok
    victim = packages_on_disk(root)[3]
    (victim / "data" / "voucher.xml").write_bytes(
        (victim / "data" / "voucher.xml").read_bytes().replace(b"</", b" </", 1)
    )
    problems = verify_archive(catalog, root).problems
    assert any("voucher.xml" in p and "SHA-256 differs" in p for p in problems)
    # The tag manifest is listed in no manifest: only the catalog's row of it can tell it was changed.
    other = packages_on_disk(root)[5]
    tagmanifest = other / "tagmanifest-sha256.txt"
    tagmanifest.write_bytes(tagmanifest.read_bytes() + b"0" * 64 + b"  notes.txt\n")
    (other / "notes.txt").write_bytes(b"added later")
    problems = verify_archive(catalog, root).problems
    code = other.parent.name
    assert f"{code} v1: tagmanifest-sha256.txt: hash or size differs from the catalog" in problems
    assert f"{code} v1: notes.txt: present but not in the catalog" in problems
    with catalog.transaction() as s:
        s.execute(update(EventRow).where(EventRow.seq == 10).values(subject="forged"))
    with catalog.reading() as s:
        chain = verify_chain(s)
    assert not chain.ok and chain.first_bad_seq == 10
    catalog.dispose()


def test_counts_reconcile_source_against_archive(seeded_hub: Hub) -> None:
    """Every source voucher is either archived once or quarantined once: nothing lost, nothing doubled."""
    run_sync("erp_sample", "run-1")
    with sqlite3.connect(seeded_hub.erp_url.removeprefix("sqlite:///")) as erp:
        source_ids = {str(r[0]) for r in erp.execute("select id from erp_voucher")}
    catalog = Catalog(seeded_hub.settings.catalog_url)
    with catalog.reading() as s:
        archived = Counter(s.execute(select(ArchiveRecordRow.business_id)).scalars())
        quarantined = Counter(
            s.execute(select(QuarantineRow.business_id).where(QuarantineRow.status == "open")).scalars()
        )
    catalog.dispose()
    assert max(archived.values()) == 1 and max(quarantined.values()) == 1
    assert set(archived) | set(quarantined) == source_ids
    assert not set(archived) & set(quarantined)


def test_metadata_is_checked_against_catalog_code_and_manifests(seeded_hub: Hub) -> None:
    """四性检测: metadata parses (defused), names the catalog's 档号, describes every content file."""
    from archive_sink.filesystem import verify_package_dir

    run_sync("erp_sample", "run-1")
    package = published_packages(seeded_hub.settings.archive_root)[0]
    code = package.parent.name
    assert verify_package_dir(package, archival_code=code) == []
    wrong = verify_package_dir(package, archival_code=code.replace("0001", "0002"))
    assert any("档号" in p.reason and "differs from the catalog" in p.reason for p in wrong)
    meta = package / "data" / "metadata.xml"
    meta.write_bytes(
        meta.read_bytes().replace(
            b"<?xml version='1.0' encoding='UTF-8'?>",
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
        )
    )
    refused = verify_package_dir(package, archival_code=code)
    assert any("DOCTYPE/ENTITY" in p.reason for p in refused)


def test_a_known_bad_voucher_does_not_fail_every_later_run(
    seeded_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The threshold judges new problems once; re-reading an open item with the same payload is not new."""
    override_erp_sample(seeded_hub, monkeypatch, "quarantine_threshold: 0.05", "quarantine_threshold: 0.01")
    with pytest.raises(QuarantineThresholdError):
        run_sync("erp_sample", "run-1")  # 6 new problems of 126: the run fails and the cursor stays
    summary = run_sync("erp_sample", "run-2")  # the same records again, nothing changed
    assert summary["status"] == "success"
    assert summary["quarantined"] == 6 and summary["quarantined_new"] == 0
    catalog = Catalog(seeded_hub.settings.catalog_url)
    with catalog.reading() as s:
        assert s.execute(select(CursorRow)).scalar_one().run_id == "run-2"
        assert s.execute(select(func.count(QuarantineRow.id))).scalar_one() == 6  # still open, still visible
    catalog.dispose()


def test_finalize_refuses_to_move_the_cursor_when_counts_do_not_add_up(seeded_hub: Hub) -> None:
    from archive_hub.pipeline import run_step
    from archive_hub.pipeline.finalize import RunIntegrityError

    for step in ("extract", "map", "validate"):
        run_step(step, "erp_sample", "run-1")
    ctx = RunContext.open("erp_sample", "run-1")
    valid = ctx.run_dir / "valid.jsonl"
    lines = valid.read_text(encoding="utf-8").splitlines()
    valid.write_text("\n".join(lines[:-3]) + "\n", encoding="utf-8")  # a truncated hand-off file
    ctx.close()
    run_step("archive", "erp_sample", "run-1")
    with pytest.raises(RunIntegrityError, match="records unaccounted for"):
        run_step("finalize", "erp_sample", "run-1")
    catalog = Catalog(seeded_hub.settings.catalog_url)
    with catalog.reading() as s:
        assert s.execute(select(CursorRow)).first() is None
    catalog.dispose()


def test_an_attachment_path_outside_the_erp_root_is_refused_not_read(seeded_hub: Hub) -> None:
    with sqlite3.connect(seeded_hub.erp_url.removeprefix("sqlite:///")) as erp:
        voucher_id = erp.execute("select voucher_id from erp_attachment order by id limit 1").fetchone()[0]
        erp.execute(
            "update erp_attachment set storage_path='../../../../etc/passwd' where voucher_id=?",
            (voucher_id,),
        )
    run_sync("erp_sample", "run-1")
    catalog = Catalog(seeded_hub.settings.catalog_url)
    with catalog.reading() as s:
        item = s.execute(
            select(QuarantineRow).where(QuarantineRow.business_id == str(voucher_id))
        ).scalar_one()
    catalog.dispose()
    assert item.stage == "archive" and "outside the attachment root" in item.reason
    for package in published_packages(seeded_hub.settings.archive_root):
        for f in (package / "data").rglob("*"):
            assert b"root:x:0:0" not in f.read_bytes()[:4096] if f.is_file() else True


def test_vouchers_renumbered_in_the_erp_swap_numbers_without_quarantine(hub: Hub) -> None:
    """凭证整理: two vouchers swap their numbers in one change; both get a new version, none is refused."""
    seed(hub, vouchers=60, bad_records=False)
    run_sync("erp_sample", "run-1")
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        (a, na), (b, nb) = erp.execute(
            "select id, voucher_no from erp_voucher where period=1 and voucher_word='记' order by voucher_no limit 2"
        ).fetchall()
        erp.execute("update erp_voucher set voucher_no=? where id=?", (nb, a))
        erp.execute("update erp_voucher set voucher_no=? where id=?", (na, b))
    touch_voucher(hub.erp_url, a, new_summary="凭证整理")
    touch_voucher(hub.erp_url, b, new_summary="凭证整理")
    summary = run_sync("erp_sample", "run-2")
    assert summary["quarantined"] == 0 and summary["new_versions"] == 2


def test_map_in_forked_workers_writes_what_one_process_writes(
    seeded_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks mapped by two workers come back in source order, with the same refusals."""
    import archive_hub.pipeline.transform as transform
    from archive_hub.pipeline import run_step

    run_step("extract", "erp_sample", "run-1")
    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "1")
    one = run_step("map", "erp_sample", "run-1")
    mapped = seeded_hub.settings.runs_root / "erp_sample" / "run-1" / "mapped.jsonl"
    serial = mapped.read_bytes()
    mapped.unlink()

    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "2")
    monkeypatch.setenv("ARCHIVE_HUB_PARALLEL_MIN_BYTES", "0")
    monkeypatch.setattr(transform, "CHUNK_BYTES", 5000)  # many parts, so order across workers matters
    two = run_step("map", "erp_sample", "run-1")
    assert two["workers"] == 2 and one["workers"] == 1
    assert mapped.read_bytes() == serial
    assert (two["mapped"], two["quarantined"]) == (one["mapped"], one["quarantined"]) == (124, 2)
    assert two["quarantined_new"] == 0  # the same refusals, already open from the first map

    validated = run_step("validate", "erp_sample", "run-1")
    assert (validated["valid"], validated["quarantined"]) == (
        122,
        2,
    )  # the duplicate invoice is refused at archive
    for step in ("archive", "finalize"):
        result = run_step(step, "erp_sample", "run-1")
    assert result["archived"] == 120 and result["status"] == "success"


def _worker_sigterm(_state: None, _chunk: int) -> str:
    import signal

    return "default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else "inherited"


def test_forked_workers_do_not_inherit_a_sigterm_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's task runner swallows SIGTERM; workers that inherited that could not be stopped."""
    import signal

    from archive_hub.pipeline.parallel import ordered_map

    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "2")
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        seen = list(ordered_map(_worker_sigterm, None, range(6), parallel=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == ["default"] * 6


@pytest.mark.parametrize("size", [1, 7, 100, 4096, 10**9])
def test_spans_hand_every_line_to_exactly_one_part(tmp_path: Path, size: int) -> None:
    """Workers map byte spans of extracted.jsonl: no line may be cut, lost or read twice."""
    import random

    from archive_hub.pipeline.jsonl import byte_spans, line_spans, read_span_lines

    rng = random.Random(size)
    lines = [json.dumps({"key": str(i), "text": "凭证" * rng.randint(0, 300)}) for i in range(400)]
    path = tmp_path / "extracted.jsonl"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # a trailing blank line is ignored
    spans = byte_spans(path, size)
    assert spans[0][0] == 0 and spans[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert [line for start, end in spans for line in read_span_lines(path, start, end)] == lines
    per_batch = max(1, min(size, 1000))  # archive batches: whole lines, `per_batch` of them
    batches = line_spans(path, per_batch)
    got = [read_span_lines(path, start, end) for start, end in batches]
    assert [line for batch in got for line in batch] == lines
    assert all(len(batch) == per_batch for batch in got[:-1]) and 0 < len(got[-1]) <= per_batch
