"""归档文件目录 and 保管清册: the archive's own list of what it holds, class by class.

An archive keeps a directory of its files in 档号 order (the 归档文件目录 of each class) and a register
of the classes in its custody (会计档案保管清册, itself kept 永久 under 附表一). Both are drawn from the
catalog here, never typed by hand, so they cannot drift from what is archived. Only archived records
are listed; a 档号 still reserved by a run in flight is not a file yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from archive_hub.catalog.integrity import ClassKey, class_label, render_code
from archive_hub.catalog.models import ArchiveRecordRow, FileRow, PackageRow
from archive_hub.catalog.packages import CURRENT_VERSION, code_scope
from canonical_model.archival_code import ArchivalCodeRule
from canonical_model.retention import RetentionPeriod


@dataclass(frozen=True)
class InventoryClass:
    """One line of the 保管清册: a class (全宗/年度/保管期限/类别) and what it holds."""

    fonds_no: str
    year: int
    retention: str
    category: str
    records: int
    first_item: int
    last_item: int
    first_date: dt.date
    last_date: dt.date
    amount_total: Decimal | None  # None when the class mixes currencies: a sum of those means nothing
    currency: str | None
    due: dt.date | None  # None: 永久

    @property
    def key(self) -> ClassKey:
        return (self.fonds_no, self.year, self.retention, self.category)

    @property
    def retention_label(self) -> str:
        return RetentionPeriod(self.retention).label

    def label(self, rule: ArchivalCodeRule) -> str:
        return class_label(self.key, rule)

    def code(self, item_no: int, rule: ArchivalCodeRule) -> str:
        """The 档号 of one of its 件."""
        return render_code(self.key, item_no, rule)


@dataclass(frozen=True)
class InventoryItem:
    """One line of the 归档文件目录: a 件 in its current version."""

    item_no: int
    archival_code: str
    voucher_no: str | None
    title: str
    record_date: dt.date
    period: int | None
    amount_total: Decimal | None
    currency: str
    version: int
    attachments: int
    files: int
    byte_size: int
    retention_due: dt.date | None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["record_date"] = self.record_date.isoformat()
        data["amount_total"] = None if self.amount_total is None else str(self.amount_total)
        data["retention_due"] = self.retention_due.isoformat() if self.retention_due else None
        return data


def _in_scope(code_prefix: str | None) -> ColumnElement[bool]:
    return and_(ArchiveRecordRow.status == "archived", code_scope(code_prefix))


def inventory_classes(
    session: Session, code_prefix: str | None = None, due_by: dt.date | None = None
) -> list[InventoryClass]:
    """Every class holding archived records whose 档号 starts with `code_prefix`, in 档号 order.

    With `due_by`, only the records whose 保管期限 has ended by then (永久 never has).
    """
    r = ArchiveRecordRow
    condition = _in_scope(code_prefix)
    if due_by is not None:
        condition = and_(condition, r.retention_due.is_not(None), r.retention_due <= due_by)
    rows = session.execute(
        select(
            r.fonds_no,
            r.year,
            r.retention,
            r.category,
            func.count(r.id),
            func.min(r.item_no),
            func.max(r.item_no),
            func.min(r.record_date),
            func.max(r.record_date),
            func.sum(r.amount_total),
            func.min(r.currency),
            func.max(r.currency),
            func.max(r.retention_due),
        )
        .where(condition)
        .group_by(r.fonds_no, r.year, r.retention, r.category)
        .order_by(r.fonds_no, r.year, r.retention, r.category)
    ).all()
    classes = []
    for *parts, amount, low_currency, high_currency, due in rows:
        single = low_currency == high_currency
        classes.append(
            InventoryClass(*parts, amount if single else None, low_currency if single else None, due)
        )
    return classes


def inventory_items(
    session: Session, key: ClassKey, code_prefix: str | None = None, batch: int = 2000
) -> Iterator[InventoryItem]:
    """The class's 件 in 件号 order, read in batches so a class of a million 件 streams."""
    r, p = ArchiveRecordRow, PackageRow
    attachments = (  # per package, through the index on archive_file.package_id
        select(func.count(FileRow.id))
        .where(FileRow.package_id == p.id, FileRow.role == "attachment")
        .correlate(p)
        .scalar_subquery()
    )
    last = 0
    while True:
        rows = session.execute(
            select(
                r.item_no,
                r.archival_code,
                r.voucher_no,
                r.title,
                r.record_date,
                r.period,
                r.amount_total,
                r.currency,
                r.current_version,
                attachments,
                p.file_count,
                p.byte_size,
                r.retention_due,
            )
            .join(p, CURRENT_VERSION)
            .where(
                _in_scope(code_prefix),
                r.fonds_no == key[0],
                r.year == key[1],
                r.retention == key[2],
                r.category == key[3],
                r.item_no > last,
            )
            .order_by(r.item_no)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield InventoryItem(*row)
        last = rows[-1][0]
