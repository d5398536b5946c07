"""`archive-hub invoices`: the e-invoices the archive holds, each with the 件 that booked it (发票台账).

An auditor checking 财会〔2020〕6号 wants the list behind "booked once": every e-invoice read from an
archived OFD or XML, its number, date, total and seller, and the voucher (档号, 凭证号, amount) it is
booked to. The list comes from the claims (catalog/claims.py), so it is exactly what the duplicate
check compares against. One flag is raised where an auditor would look twice: an invoice whose 价税合计
is larger than the whole voucher it is booked to.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from openpyxl import Workbook
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ArchiveRecordRow, InvoiceClaimRow
from archive_hub.catalog.packages import code_scope
from archive_hub.workbooks import BOLD, save_workbook


@dataclass(frozen=True)
class BookedInvoiceLine:
    invoice_key: str
    invoice_no: str
    issued: str | None
    total: str | None
    seller_tax_id: str | None
    carrier: str
    file_name: str
    archival_code: str
    voucher_no: str | None
    record_date: dt.date
    voucher_amount: Decimal | None
    status: str  # archived, or destroyed under a 销毁清册

    @property
    def exceeds_voucher(self) -> bool:
        """价税合计 above the voucher's 金额合计: one invoice cannot be worth more than the whole booking."""
        try:
            return (
                self.total is not None
                and self.voucher_amount is not None
                and Decimal(self.total.replace(",", "")) > self.voucher_amount
            )
        except InvalidOperation:
            return False

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["record_date"] = self.record_date.isoformat()
        out["voucher_amount"] = str(self.voucher_amount) if self.voucher_amount is not None else None
        out["exceeds_voucher"] = self.exceeds_voucher
        return out


def booked_invoices(session: Session, code_prefix: str | None = None) -> list[BookedInvoiceLine]:
    """Every claimed e-invoice whose holder is catalogued, in 档号 order (a stale claim is not listed)."""
    c, r = InvoiceClaimRow, ArchiveRecordRow
    rows = session.execute(
        select(
            c.invoice_key,
            c.invoice_no,
            c.issued,
            c.total,
            c.seller_tax_id,
            c.carrier,
            c.file_name,
            r.archival_code,
            r.voucher_no,
            r.record_date,
            r.amount_total,
            r.status,
        )
        .join(r, and_(r.source_id == c.source_id, r.business_id == c.business_id))
        .where(r.status.in_(("archived", "destroyed")), code_scope(code_prefix))
        .order_by(r.archival_code, c.invoice_key)
    ).all()
    return [BookedInvoiceLine(*row) for row in rows]


COLUMNS = (
    ("档号", "archival_code"),
    ("凭证号", "voucher_no"),
    ("凭证日期", "record_date"),
    ("凭证金额", "voucher_amount"),
    ("发票号码", "invoice_key"),
    ("开票日期", "issued"),
    ("价税合计", "total"),
    ("销售方纳税人识别号", "seller_tax_id"),
    ("载体", "carrier"),
    ("文件", "file_name"),
    ("状态", "status"),
    ("发票金额大于凭证金额", "exceeds_voucher"),
)


def write_xlsx(lines: list[BookedInvoiceLine], path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.title = "发票台账"
    sheet.append([title for title, _ in COLUMNS])
    for cell in sheet[1]:
        cell.font = BOLD
    for line in lines:
        sheet.append(
            [
                ("是" if line.exceeds_voucher else "") if key == "exceeds_voucher" else getattr(line, key)
                for _, key in COLUMNS
            ]
        )
    return save_workbook(book, path)
