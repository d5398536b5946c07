"""Search the catalog by 档号, category, voucher number, period or dates, amount, text and 发票号码."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ArchiveRecordRow, InvoiceClaimRow, PackageRow
from archive_hub.catalog.packages import code_scope


@dataclass
class SearchQuery:
    archival_code: str | None = None
    voucher_no: str | None = None
    year: int | None = None
    period: int | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    text: str | None = None
    limit: int = 50
    category: str | None = None  # 类别号: PZ 凭证, ZB 账簿, BG 报告, QT 其他
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    invoice: str | None = None  # 发票号码 (or 代码-号码) of an e-invoice the record booked


def search(session: Session, q: SearchQuery) -> list[tuple[ArchiveRecordRow, PackageRow | None]]:
    query = select(ArchiveRecordRow, PackageRow).join(
        PackageRow,
        (PackageRow.record_id == ArchiveRecordRow.id)
        & (PackageRow.version == ArchiveRecordRow.current_version),
        isouter=True,
    )
    if q.archival_code:
        query = query.where(code_scope(q.archival_code))
    if q.voucher_no:
        query = query.where(ArchiveRecordRow.voucher_no == q.voucher_no)
    if q.year:
        query = query.where(ArchiveRecordRow.fiscal_year == q.year)
    if q.period:
        query = query.where(ArchiveRecordRow.period == q.period)
    if q.amount_min is not None:
        query = query.where(ArchiveRecordRow.amount_total >= q.amount_min)
    if q.amount_max is not None:
        query = query.where(ArchiveRecordRow.amount_total <= q.amount_max)
    if q.category:
        query = query.where(ArchiveRecordRow.category == q.category)
    if q.date_from:
        query = query.where(ArchiveRecordRow.record_date >= q.date_from)
    if q.date_to:
        query = query.where(ArchiveRecordRow.record_date <= q.date_to)
    if q.invoice:
        query = query.where(
            exists().where(
                InvoiceClaimRow.source_id == ArchiveRecordRow.source_id,
                InvoiceClaimRow.business_id == ArchiveRecordRow.business_id,
                or_(InvoiceClaimRow.invoice_no == q.invoice, InvoiceClaimRow.invoice_key == q.invoice),
            )
        )
    if q.text:
        for word in q.text.split():
            query = query.where(ArchiveRecordRow.search_text.contains(word))
    query = query.order_by(
        ArchiveRecordRow.fiscal_year, ArchiveRecordRow.period, ArchiveRecordRow.item_no
    ).limit(q.limit)
    return [(rec, pkg) for rec, pkg in session.execute(query).all()]


def hit_summary(rec: ArchiveRecordRow) -> dict[str, object]:
    """One search hit as JSON: what `search --json` prints and `GET /api/records` returns."""
    return {
        "archival_code": rec.archival_code,
        "voucher_no": rec.voucher_no,
        "date": rec.record_date.isoformat(),
        "amount": str(rec.amount_total) if rec.amount_total is not None else None,
        "title": rec.title,
        "version": rec.current_version,
        "status": rec.status,
    }
