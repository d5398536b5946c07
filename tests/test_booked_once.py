"""An attachment is archived with one record only (财会〔2020〕6号: an e-invoice is booked once).

The sample ERP books copies of vouchers that point at the very same invoice files, the way a
reimbursement is filed twice; every other voucher is archived as before.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import select, text

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import (
    ArchiveRecordRow,
    AttachmentClaimRow,
    FileRow,
    PackageRow,
    QuarantineRow,
)
from archive_hub.pipeline import run_step, run_sync
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.finalize import QuarantineThresholdError
from archive_hub.pipeline.redrive import redrive
from archive_hub.verification import verify_archive
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, book_copy_of_voucher, claims_race, override_erp_sample, run_at_once, seed


def vouchers_with_attachments(hub: Hub) -> list[int]:
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        return [
            r[0] for r in erp.execute("select distinct voucher_id from erp_attachment order by voucher_id")
        ]


def quarantined(catalog: Catalog) -> dict[str, str]:
    with catalog.reading() as s:
        rows = s.execute(select(QuarantineRow).where(QuarantineRow.status == "open")).scalars().all()
        return {q.business_id: q.reason for q in rows if q.stage == "archive"}


def archived(catalog: Catalog, business_id: str) -> ArchiveRecordRow | None:
    with catalog.reading() as s:
        return s.execute(
            select(ArchiveRecordRow).where(
                ArchiveRecordRow.business_id == business_id, ArchiveRecordRow.status == "archived"
            )
        ).scalar_one_or_none()


def test_an_invoice_booked_twice_is_archived_once_and_the_copy_quarantined(
    hub: Hub, catalog_url: str
) -> None:
    seed(hub, vouchers=120, bad_records=False)  # the sample's own duplicate invoice is in test_pipeline
    first, *_, last = vouchers_with_attachments(hub)
    book_copy_of_voucher(hub.erp_url, first, 9001, 9001, with_attachments=True)  # same run, same invoice
    run_sync("erp_sample", "run-1")
    catalog = Catalog(catalog_url)
    original = archived(catalog, str(first))
    assert original is not None and archived(catalog, "9001") is None
    reason = quarantined(catalog)["9001"]
    assert (
        f"already archived with {original.archival_code} ({original.voucher_no}, source record erp_sample:{first})"
        in reason
    )
    assert "booked only once (财会〔2020〕6号)" in reason
    assert "duplicate_attachments: allow" in reason

    # A later copy of an archived voucher: the reason names the 档号 and 凭证号 that hold the invoice.
    book_copy_of_voucher(hub.erp_url, last, 9002, 9002, with_attachments=True)
    touch_voucher(hub.erp_url, 9002, new_summary="重复报销")
    with pytest.raises(QuarantineThresholdError):  # 1 of the few records read: the run fails, as it should
        run_sync("erp_sample", "run-2")
    holder = archived(catalog, str(last))
    assert holder is not None and archived(catalog, "9002") is None
    assert (
        f"already archived with {holder.archival_code} ({holder.voucher_no}, " in quarantined(catalog)["9002"]
    )

    # The copy's invoice is replaced in the ERP by its own (here: it no longer carries one): re-driven, archived.
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        erp.execute("delete from erp_attachment where voucher_id = 9002")
    ctx = RunContext.open("erp_sample", "retry-1")
    redrive(ctx)
    ctx.close()
    assert archived(catalog, "9002") is not None and "9002" not in quarantined(catalog)
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_workers_on_separate_batches_still_archive_an_invoice_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original and its copy in different batches on different workers: the claim is taken in the
    batch's 档号 turn, in source order, so exactly one of them is archived, and always the first."""
    override_erp_sample(hub, monkeypatch, "batch_size: 500", "batch_size: 10")
    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "2")
    seed(hub, vouchers=120, bad_records=False)  # the sample's own duplicate invoice is in test_pipeline
    first = vouchers_with_attachments(hub)[0]
    book_copy_of_voucher(hub.erp_url, first, 9001, 9001, with_attachments=True)
    touch_voucher(hub.erp_url, 9001, new_summary="重复报销")  # read last: the original is batches earlier
    for step in ("extract", "map", "validate"):
        run_step(step, "erp_sample", "run-1")
    assert run_step("archive", "erp_sample", "run-1")["workers"] == 2
    run_step("finalize", "erp_sample", "run-1")
    valid = hub.settings.runs_root / "erp_sample" / "run-1" / "valid.jsonl"
    order = [json.loads(line)["source"]["business_id"] for line in valid.read_text().splitlines()]
    assert order.index("9001") // 10 > order.index(str(first)) // 10 + 1  # batches apart
    catalog = Catalog(hub.settings.catalog_url)
    assert archived(catalog, str(first)) is not None and archived(catalog, "9001") is None
    assert "9001" in quarantined(catalog)
    catalog.dispose()


def test_a_source_that_allows_shared_files_archives_both(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    override_erp_sample(hub, monkeypatch, "schedule:", "duplicate_attachments: allow\nschedule:")
    seed(hub, vouchers=120, bad_records=False)  # the sample's own duplicate invoice is in test_pipeline
    first = vouchers_with_attachments(hub)[0]
    book_copy_of_voucher(hub.erp_url, first, 9001, 9001, with_attachments=True)
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    assert archived(catalog, str(first)) is not None and archived(catalog, "9001") is not None
    catalog.dispose()


def test_a_catalog_from_before_claims_gets_its_archived_attachments_claimed(hub: Hub) -> None:
    seed(hub, vouchers=120, bad_records=False)  # the sample's own duplicate invoice is in test_pipeline
    first = vouchers_with_attachments(hub)[0]
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.transaction() as s:
        claims = s.execute(select(AttachmentClaimRow.sha256, AttachmentClaimRow.business_id)).all()
        s.execute(text("DROP TABLE attachment_claim"))  # as an older release left the catalog
    catalog.dispose()
    catalog = Catalog(hub.settings.catalog_url)
    catalog.create_schema()  # what every command does when it opens the catalog
    with catalog.reading() as s:
        assert sorted(
            s.execute(select(AttachmentClaimRow.sha256, AttachmentClaimRow.business_id)).all()
        ) == sorted(claims)
    book_copy_of_voucher(hub.erp_url, first, 9001, 9001, with_attachments=True)
    touch_voucher(hub.erp_url, 9001, new_summary="重复报销")
    with pytest.raises(QuarantineThresholdError):
        run_sync("erp_sample", "run-2")
    assert archived(catalog, "9001") is None and "9001" in quarantined(catalog)
    catalog.dispose()


def _sync(source_id: str) -> None:
    run_sync(source_id, f"{source_id}-run")  # threshold 1.0: a quarter of the records refused is expected


def test_two_sources_presenting_the_same_files_at_once_archive_each_file_once(
    hub: Hub, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sources read the same ERP at the same time (two processes): every invoice file ends up with
    exactly one archived record, the claim row names it, and every other presentation is quarantined."""
    sources = override_erp_sample(hub, monkeypatch, "quarantine_threshold: 0.05", "quarantine_threshold: 1.0")
    config = (sources / "erp_sample.yaml").read_text(encoding="utf-8")
    (sources / "erp_twin.yaml").write_text(config.replace("id: erp_sample", "id: erp_twin"), encoding="utf-8")
    seed(hub, vouchers=120, bad_records=False)
    with_files = vouchers_with_attachments(hub)
    run_at_once(_sync, ("erp_sample",), ("erp_twin",))
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        holders = s.execute(
            select(FileRow.sha256, ArchiveRecordRow.source_id, ArchiveRecordRow.business_id)
            .join(PackageRow, PackageRow.id == FileRow.package_id)
            .join(ArchiveRecordRow, ArchiveRecordRow.id == PackageRow.record_id)
            .where(FileRow.role == "attachment", ArchiveRecordRow.status == "archived")
        ).all()
        claims = {
            c.sha256: (c.source_id, c.business_id) for c in s.execute(select(AttachmentClaimRow)).scalars()
        }
        refused = s.execute(
            select(QuarantineRow.source_id, QuarantineRow.business_id).where(
                QuarantineRow.stage == "archive", QuarantineRow.status == "open"
            )
        ).all()
    catalog.dispose()
    assert len(holders) == len({h.sha256 for h in holders}) == len(with_files)  # each file archived once
    assert claims == {h.sha256: (h.source_id, h.business_id) for h in holders}
    assert len(refused) == len(with_files)  # the other presentation of each file
    assert {b for _, b in refused} | {h.business_id for h in holders} == {str(v) for v in with_files}


def test_a_claim_lost_to_a_concurrent_transaction_refuses_the_record_and_keeps_none_of_its_files(
    hub: Hub, pg_database_url: str
) -> None:
    """On PostgreSQL two sources can read "unclaimed" at the same moment: the unique key decides. The loser
    waits for the winner's commit, finds the row taken, refuses that record and withdraws its other claims."""
    from archive_hub.catalog.claims import Presented

    contested, own, other = "a" * 64, "b" * 64, "c" * 64
    refused = claims_race(
        pg_database_url,
        ("src_a", [Presented("A1", [(contested, "发票.pdf")])]),
        (
            "src_b",
            [
                Presented("B1", [(own, "行程单.pdf"), (contested, "发票.pdf")]),
                Presented("B2", [(other, "回单.png")]),
            ],
        ),
    )
    catalog = Catalog(pg_database_url)
    assert isinstance(refused, dict) and set(refused) == {"B1"}
    assert refused["B1"].owner == ("src_a", "A1") and refused["B1"].file_name == "发票.pdf"
    with catalog.reading() as s:
        claims = {
            c.sha256: (c.source_id, c.business_id) for c in s.execute(select(AttachmentClaimRow)).scalars()
        }
    assert claims == {contested: ("src_a", "A1"), other: ("src_b", "B2")}  # B1 keeps none of its files
    catalog.dispose()
