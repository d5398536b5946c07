"""Records whose 保管期限 has run out: the candidates an archivist appraises (鉴定) before any 销毁.

《会计档案管理办法》 Art. 18: when the period ends, the unit appraises the records and writes a
鉴定意见书; only then may a 销毁清册 be drawn up and signed. This list is where that work starts, one
line per class (全宗/年度/保管期限/类别) with its 档号 range, so it reads like the 清册 it leads to.
Nothing here deletes or marks anything: records of unsettled debts, for one, must never be destroyed,
and only the appraisal can tell; those already under a hold are counted per class.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from archive_hub.catalog.integrity import ClassKey
from archive_hub.catalog.inventory import InventoryClass, inventory_classes
from canonical_model.archival_code import ArchivalCodeRule
from canonical_model.retention import fiscal_year_end


def kept_years(fiscal_year: int, on: dt.date) -> int:
    """已保管期限: whole years kept by `on`, counted from the first day after the fiscal year ended."""
    start = fiscal_year_end(fiscal_year) + dt.timedelta(days=1)
    years = on.year - start.year - (1 if (on.month, on.day) < (start.month, start.day) else 0)
    return max(years, 0)


def due_for_appraisal(session: Session, on: dt.date) -> list[InventoryClass]:
    """Archived records whose 保管期限 ends on or before `on`, by class; 永久 records are never listed."""
    return inventory_classes(session, due_by=on)


def held_by_class(session: Session, on: dt.date) -> dict[ClassKey, int]:
    """How many of each class's due records are under a hold (未结清的债权债务 …): they stay, whatever is due."""
    from sqlalchemy import func, select

    from archive_hub.catalog.models import ArchiveRecordRow as R
    from archive_hub.catalog.models import DestructionHoldRow as H

    rows = session.execute(
        select(R.fonds_no, R.year, R.retention, R.category, func.count(func.distinct(R.id)))
        .join(H, H.record_id == R.id)
        .where(
            H.released_at.is_(None),
            R.status == "archived",
            R.retention_due.is_not(None),
            R.retention_due <= on,
        )
        .group_by(R.fonds_no, R.year, R.retention, R.category)
    ).all()
    return {(fonds, year, retention, category): n for fonds, year, retention, category, n in rows}


def due_line(c: InventoryClass, on: dt.date, rule: ArchivalCodeRule, held: int = 0) -> dict[str, object]:
    """One class due for appraisal, as the JSON line `archive-hub due --json` prints."""
    return {
        "fonds_no": c.fonds_no,
        "year": c.year,
        "retention": c.retention_label,
        "category": c.category,
        "due": c.due.isoformat() if c.due else None,
        "kept_years": kept_years(c.year, on),
        "records": c.records,
        "held": held,
        "first_archival_code": c.code(c.first_item, rule),
        "last_archival_code": c.code(c.last_item, rule),
        "first_item_no": c.first_item,
        "last_item_no": c.last_item,
    }
