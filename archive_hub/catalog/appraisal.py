"""Records whose 保管期限 has run out: the candidates an archivist appraises (鉴定) before any 销毁.

《会计档案管理办法》 Art. 18: when the period ends, the unit appraises the records and writes a
鉴定意见书; only then may a 销毁清册 be drawn up and signed. This list is where that work starts, one
line per class (全宗/年度/保管期限/类别) with its 档号 range, so it reads like the 清册 it leads to.
Nothing here deletes or marks anything: records of unsettled debts, for one, must never be destroyed,
and only the appraisal can tell.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ArchiveRecordRow
from canonical_model.retention import RetentionPeriod, fiscal_year_end


@dataclass(frozen=True)
class DueClass:
    fonds_no: str
    year: int
    retention: str
    category: str
    due: dt.date
    records: int
    first_code: str
    last_code: str
    first_item: int
    last_item: int

    @property
    def retention_label(self) -> str:
        return RetentionPeriod(self.retention).label

    def as_dict(self, on: dt.date) -> dict[str, object]:
        return {
            "fonds_no": self.fonds_no,
            "year": self.year,
            "retention": self.retention_label,
            "category": self.category,
            "due": self.due.isoformat(),
            "kept_years": kept_years(self.year, on),
            "records": self.records,
            "first_archival_code": self.first_code,
            "last_archival_code": self.last_code,
            "first_item_no": self.first_item,
            "last_item_no": self.last_item,
        }


def kept_years(fiscal_year: int, on: dt.date) -> int:
    """已保管期限: whole years kept by `on`, counted from the first day after the fiscal year ended."""
    start = fiscal_year_end(fiscal_year) + dt.timedelta(days=1)
    years = on.year - start.year - (1 if (on.month, on.day) < (start.month, start.day) else 0)
    return max(years, 0)


def due_for_appraisal(session: Session, on: dt.date) -> list[DueClass]:
    """Archived records whose 保管期限 ends on or before `on`, by class; 永久 records are never listed."""
    r = ArchiveRecordRow
    rows = session.execute(
        select(
            r.fonds_no,
            r.year,
            r.retention,
            r.category,
            func.max(r.retention_due),
            func.count(r.id),
            func.min(r.archival_code),
            func.max(r.archival_code),
            func.min(r.item_no),
            func.max(r.item_no),
        )
        .where(r.status == "archived", r.retention_due.is_not(None), r.retention_due <= on)
        .group_by(r.fonds_no, r.year, r.retention, r.category)
        .order_by(r.fonds_no, r.year, r.category, r.retention)
    ).all()
    return [DueClass(*row) for row in rows]
