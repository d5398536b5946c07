"""银行存款余额调节表 from the archive: the sample statements against the sample ERP's 基本户, synced for real.

The expected figures come from the two generators and the ERP database directly, never from the code under
test: the bank's balances and bookings from `icbc_year`, the book balance by summing the ERP's own lines.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.bank_accounts import load_bank_accounts
from archive_hub.bank_reconciliation import reconcile_bank
from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, PackageRow
from archive_hub.pipeline import run_sync
from connectors.bank.sample_statements import OPENING_BALANCE, write_sample_inbox
from connectors.bank.sample_statements import icbc_year as bank_year
from tests.conftest import Hub, seed
from tests.test_cli import cli

ACCOUNT = "1102021209000456789"


def synced(hub: Hub) -> Catalog:
    seed(hub, vouchers=60, bad_records=False, bank_books=True)
    write_sample_inbox(hub.home / "bank_inbox")
    assert run_sync("erp_sample", "run-erp")["status"] == "success"
    assert run_sync("bank_inbox", "run-bank")["archived"] == 4  # April's file is cut off: quarantined
    return Catalog(hub.settings.catalog_url)


def erp_balance(hub: Hub, on: dt.date) -> Decimal:
    """The 日记账 balance by the ERP's own lines: opening + Σ(debit − credit) on 1002.01 up to `on`."""
    db = sqlite3.connect(hub.erp_url.removeprefix("sqlite:///"))
    rows = db.execute(
        "SELECT l.debit, l.credit FROM erp_voucher_line l JOIN erp_voucher v ON v.id = l.voucher_id "
        "WHERE l.account_code = '1002.01' AND v.voucher_date <= ?",
        (on.isoformat(),),
    ).fetchall()
    db.close()
    return OPENING_BALANCE + sum((Decimal(str(d)) - Decimal(str(c)) for d, c in rows), Decimal(0))


def test_month_ends_reconcile_with_the_timing_differences_the_books_really_have(
    hub: Hub, catalog_url: str
) -> None:
    catalog = synced(hub)
    (acct,) = load_bank_accounts(hub.settings)
    months = bank_year()
    for month, on in ((1, dt.date(2025, 1, 31)), (2, dt.date(2025, 2, 28)), (3, dt.date(2025, 3, 31))):
        with catalog.reading() as session:
            report = reconcile_bank(session, acct, on, hub.settings)
        assert report.problems == []
        assert report.bank_balance == months[month - 1].closing
        assert report.book_balance == erp_balance(hub, on)
        assert report.balanced and report.adjusted_bank == report.adjusted_books
        # what the books do not carry yet: March's 结息 (credited on the 21st) and every month's 电子银行服务费
        this = months[month - 1].bookings
        bank_side = {
            ("bank_in" if b.amount > 0 else "bank_out", b.amount)
            for b in this
            if b.kind == "interest" or b.purpose == "电子银行服务费"
        }
        # what the bank does not carry yet: next month's first receipt and first payment, booked on the last day
        following = months[month].bookings
        book_side = {
            (
                f"book_{'in' if kind == 'receipt' else 'out'}",
                min((b for b in following if b.kind == kind), key=lambda b: b.at).amount,
            )
            for kind in ("receipt", "payment")
        }
        assert {(o.kind, o.amount) for o in report.outstanding} == bank_side | book_side
        for o in report.outstanding:
            if o.kind.startswith("bank"):  # the books booked it on the first working day after
                assert o.settled_on is not None and o.settled_on.month == month + 1
            else:  # the bank booked it in the next month; April's statement is quarantined
                assert (o.settled_on is None) == (month == 3)
        assert not report.stale
    with catalog.reading() as session:  # before the first statement's first day: the balance it opens with
        first = reconcile_bank(session, acct, dt.date(2025, 1, 2), hub.settings)
    assert first.bank_balance == OPENING_BALANCE and first.balanced


def test_the_cli_prints_the_table_and_refuses_a_day_the_statements_do_not_cover(hub: Hub) -> None:
    synced(hub)
    done = cli("bank", "reconcile")  # the day defaults to the last statement's closing day
    assert done.returncode == 0, done.stderr
    assert "银行存款余额调节表 2025-03-31" in done.stdout and "balanced" in done.stdout
    assert "企业已付、银行未付" in done.stdout and "not in the bank yet" in done.stdout

    later = cli("bank", "reconcile", ACCOUNT, "--on", "2025-04-30", "--json")
    assert later.returncode == 4
    (report,) = json.loads(later.stdout)
    assert report["bank_balance"] is None and report["balanced"] is False
    assert "the bank balance on 2025-04-30 is unknown" in report["problems"][0]
    assert "the next one is missing or quarantined" in report["problems"][0]

    months = cli("bank", "reconcile", "--month-ends", "--json")
    assert months.returncode == 0, months.stderr
    assert [(r["on"], r["balanced"]) for r in json.loads(months.stdout)] == [
        ("2025-01-31", True),
        ("2025-02-28", True),
        ("2025-03-31", True),
    ]
    assert cli("bank", "reconcile", "--on", "2025-03-31", "--month-ends").returncode == 2

    xlsx = hub.home / "调节表.xlsx"
    assert cli("bank", "reconcile", "--on", "2025-02-28", "--xlsx", str(xlsx)).returncode == 0
    from openpyxl import load_workbook

    sheet = load_workbook(xlsx).active
    cells = [c for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    assert "银行对账单余额" in cells and "balanced" in cells


def test_a_wrong_opening_balance_shows_as_the_difference(hub: Hub, tmp_path: Path) -> None:
    synced(hub)
    config = Path(hub.settings.bank_accounts_file).read_text(encoding="utf-8")
    wrong = tmp_path / "bank_accounts.yaml"
    wrong.write_text(config.replace('"3286415.62"', '"3286400.00"'), encoding="utf-8")
    done = cli(
        "bank", "reconcile", "--on", "2025-03-31", "--json", env={"ARCHIVE_HUB_BANK_ACCOUNTS": str(wrong)}
    )
    assert done.returncode == 4
    (report,) = json.loads(done.stdout)
    assert report["difference"] == "15.62" and report["problems"] == []

    wrong.write_text(config.replace("ledger_account:", "ledger_acount:"), encoding="utf-8")
    refused = cli("bank", "reconcile", env={"ARCHIVE_HUB_BANK_ACCOUNTS": str(wrong)})
    assert refused.returncode == 2 and "ledger_acount" in refused.stderr and str(wrong) in refused.stderr
    unknown = cli("bank", "reconcile", "DE00NOSUCHACCOUNT")
    assert unknown.returncode == 2 and ACCOUNT in unknown.stderr


def test_a_voucher_whose_archived_bytes_changed_is_not_believed(hub: Hub) -> None:
    """The table reads the books from the archive; a voucher.xml that no longer matches its catalog hash is
    left out and named, and the bank's entry for it stands as unbooked, old enough to be chased."""
    catalog = synced(hub)
    (acct,) = load_bank_accounts(hub.settings)
    with catalog.reading() as session:
        before = reconcile_bank(session, acct, dt.date(2025, 3, 31), hub.settings)
        code, path = session.execute(
            select(ArchiveRecordRow.archival_code, PackageRow.path)
            .join(PackageRow, PackageRow.record_id == ArchiveRecordRow.id)
            .where(ArchiveRecordRow.search_text.contains("代发2025-01工资"))
        ).one()
    voucher = hub.settings.archive_root / path / "data" / "voucher.xml"
    voucher.write_bytes(voucher.read_bytes().replace("<摘要>".encode(), "<摘要>x".encode(), 1))
    with catalog.reading() as session:
        after = reconcile_bank(session, acct, dt.date(2025, 3, 31), hub.settings)
    assert before.balanced and not after.balanced
    assert after.problems == [f"{code}: data/voucher.xml differs from the catalog's hash; run verify"]
    (salary,) = [o for o in after.outstanding if o.kind == "bank_out" and "代发2025-01工资" in o.text]
    assert salary.settled_on is None and salary in after.stale
    assert after.vouchers == before.vouchers - 1
    # the table itself still adds up: the missing book line is on it as an unbooked bank entry
    assert after.difference == 0


@pytest.mark.parametrize("on", ["2024-12-31", "yesterday"])
def test_days_outside_the_books_are_refused(hub: Hub, on: str) -> None:
    done = cli("bank", "reconcile", "--on", on)
    assert done.returncode == 2
    assert ("before the opening balance" if on[0] == "2" else "not a date") in done.stderr


def test_a_kept_table_is_archived_as_a_record_kept_ten_years(hub: Hub) -> None:
    """附表一 keeps the 银行存款余额调节表 10年: `--keep --by` keeps a balanced table and archives it through the
    registers source as a 件 of 其他会计资料, linked to the statements it rests on; drawing it up again unchanged
    archives nothing new; a table that does not balance is not kept."""
    catalog = synced(hub)
    assert cli("bank", "reconcile", "--keep").returncode == 2  # a kept table names who drew it up
    done = cli("bank", "reconcile", "--on", "2025-03-31", "--keep", "--by", "李娜")
    assert done.returncode == 0, done.stderr
    code = "J001-KJ·2025-D10-QT-0005"  # after the four statements of 2025
    assert f"银行存款余额调节表 {ACCOUNT} 2025-03-31 archived 10年 as {code}" in done.stdout
    with catalog.reading() as s:
        record = s.scalars(select(ArchiveRecordRow).where(ArchiveRecordRow.archival_code == code)).one()
        package = s.scalars(select(PackageRow).where(PackageRow.record_id == record.id)).one()
        statements = s.scalars(
            select(ArchiveRecordRow.archival_code).where(ArchiveRecordRow.title.contains(ACCOUNT))
        ).all()
    assert (record.retention, record.category, record.business_id) == (
        "D10",
        "QT",
        f"银行存款余额调节表-{ACCOUNT}-2025-03-31",
    )
    assert record.record_date == dt.date(2025, 3, 31) and record.current_version == 1
    (table,) = (hub.settings.archive_root / package.path / "data" / "attachments").iterdir()
    xml = table.read_text(encoding="utf-8")
    assert "<结论>相符</结论>" in xml and "<银行对账单余额>4998449.02</银行对账单余额>" in xml
    metadata = (hub.settings.archive_root / package.path / "data" / "metadata.xml").read_text(
        encoding="utf-8"
    )
    assert all(f"<关系对象>{s}</关系对象>" in metadata for s in statements if s != code)  # 关联档案号

    again = cli("bank", "reconcile", "--on", "2025-03-31", "--keep", "--by", "李娜")
    assert again.returncode == 0 and f"as {code}" in again.stdout
    with catalog.reading() as s:
        assert s.get(ArchiveRecordRow, record.id).current_version == 1  # type: ignore[union-attr]
    not_kept = cli("bank", "reconcile", "--on", "2025-04-30", "--keep", "--by", "李娜")
    assert not_kept.returncode == 4 and "does not balance, so it is not kept" in not_kept.stderr
    assert cli("verify").returncode == 0
