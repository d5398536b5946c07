"""`archive-hub reconcile`: the source read in full against the catalog."""

from __future__ import annotations

import shutil

import openpyxl

from archive_hub.pipeline import run_sync
from archive_hub.pipeline.context import RunContext
from archive_hub.reconciliation import reconcile
from connectors.bank.sample_statements import write_sample_inbox
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, book_copy_of_voucher, seed
from tests.test_cli import cli


def report(source: str):  # type: ignore[no-untyped-def]
    ctx = RunContext.open(source, "reconcile-test")
    try:
        return reconcile(ctx)
    finally:
        ctx.close()


def test_erp_reconciliation_finds_missing_and_outdated_vouchers(hub: Hub) -> None:
    seed(hub, vouchers=120)
    run_sync("erp_sample", "run-1")
    first = report("erp_sample")
    assert first.ok and first.source_records == 126
    assert first.counts["archived"] == 120 and first.counts["quarantined"] == 6
    assert sum(sum(c.values()) for c in first.by_period.values()) == 126

    touch_voucher(hub.erp_url, 3, new_summary="补录摘要")
    book_copy_of_voucher(hub.erp_url, 5, 99999, 9999)  # a voucher booked after the sync
    second = report("erp_sample")
    assert not second.ok
    assert second.counts["missing"] == 1 and second.counts["outdated"] == 1
    assert {(p["record"], p["status"]) for p in second.problems if p["status"] != "quarantined"} == {
        ("99999", "missing"),
        ("3", "outdated"),
    }
    workbook = hub.home / "reconciliation.xlsx"
    out = cli("reconcile", "erp_sample", "--xlsx", str(workbook))
    assert out.returncode == 4 and "missing" in out.stdout
    book = openpyxl.load_workbook(workbook, read_only=True)  # the auditor's copy says the same
    rows = list(book["汇总"].iter_rows(values_only=True))
    header = next(r for r in rows if r[0] == "period")
    total = dict(zip(header[1:], next(r for r in rows if r[0] == "total")[1:], strict=True))
    assert total == {s: second.counts.get(s, 0) for s in header[1:]}
    listed = {(r[0], r[1]) for r in list(book["问题"].iter_rows(values_only=True))[1:]}
    assert listed == {(p["record"], p["status"]) for p in second.problems}
    assert not list(workbook.parent.glob(".*.partial"))  # written whole, then renamed
    nowhere = cli("reconcile", "erp_sample", "--xlsx", str(hub.home / "no" / "such" / "dir" / "r.xlsx"))
    assert nowhere.returncode == 2 and "cannot write the workbook" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr

    # The new voucher carries an old change timestamp (booked late): the incremental sync cannot see it,
    # and reconciliation keeps saying so until it is archived.
    run_sync("erp_sample", "run-2")
    third = report("erp_sample")
    assert third.counts["missing"] == 1 and third.counts["outdated"] == 0
    touch_voucher(hub.erp_url, 99999, new_summary="补录凭证")
    run_sync("erp_sample", "run-3")
    assert report("erp_sample").ok
    assert cli("reconcile", "erp_sample").returncode == 0


def test_bank_reconciliation_counts_every_inbox_file(hub: Hub) -> None:
    inbox = hub.home / "bank_inbox"
    files = write_sample_inbox(inbox)
    shutil.copy(files[0], inbox / "copy-of-the-same-export.csv")  # same bytes: one record
    run_sync("bank_inbox", "run-1")
    result = report("bank_inbox")
    assert result.source_records == 5  # 4 good + 1 truncated, the copy is the same content
    assert result.counts["archived"] == 4 and result.counts["quarantined"] == 1
    assert result.ok
