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
from archive_hub.catalog.models import ArchiveRecordRow, AttachmentClaimRow, QuarantineRow
from archive_hub.pipeline import run_step, run_sync
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.finalize import QuarantineThresholdError
from archive_hub.pipeline.redrive import redrive
from archive_hub.verification import verify_archive
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, book_copy_of_voucher, override_erp_sample, seed


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
