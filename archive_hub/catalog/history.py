"""One 件 as the catalog knows it: its 档号 and search fields, every package version with its files,
the events that name it and the quarantine items of its source record.

This is what an archivist opens for a single record (档案详情) and what an auditor reads to see how a
voucher came to be archived, corrected (new versions, each linked to the one it replaces) and checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import (
    ApprovalLinkRow,
    ArchiveRecordRow,
    EventRow,
    FileRow,
    InvoiceClaimRow,
    PackageRow,
    QuarantineRow,
)
from canonical_model.retention import RetentionPeriod


@dataclass
class PackageVersion:
    package: PackageRow
    files: list[FileRow]
    previous_version: int | None  # the version this one replaces (None for the first)


@dataclass
class RecordHistory:
    record: ArchiveRecordRow
    versions: list[PackageVersion] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    invoices: list[InvoiceClaimRow] = field(default_factory=list)  # e-invoices it booked (booked once)
    links: list[RecordLink] = field(default_factory=list)  # related 件: 审批单 ↔ 记账凭证 (oa reconcile)

    @property
    def current(self) -> PackageVersion | None:
        return next((v for v in self.versions if v.package.version == self.record.current_version), None)

    def as_dict(self) -> dict[str, Any]:
        rec = self.record
        return {
            "archival_code": rec.archival_code,
            "status": rec.status,
            "source": f"{rec.source_id}:{rec.business_id}",
            "title": rec.title,
            "voucher_no": rec.voucher_no,
            "book_code": rec.book_code,
            "date": rec.record_date.isoformat(),
            "fiscal_year": rec.fiscal_year,
            "period": rec.period,
            "amount_total": str(rec.amount_total) if rec.amount_total is not None else None,
            "currency": rec.currency,
            "retention": RetentionPeriod(rec.retention).label,
            "retention_due": rec.retention_due.isoformat() if rec.retention_due else None,
            "current_version": rec.current_version,
            "versions": [
                {
                    "version": v.package.version,
                    "path": v.package.path,
                    "previous_version": v.previous_version,
                    "created_at": v.package.created_at.isoformat(),
                    "run_id": v.package.run_id,
                    "source_changed_at": (
                        v.package.source_changed_at.isoformat() if v.package.source_changed_at else None
                    ),
                    "fingerprint": v.package.fingerprint,
                    "manifest_sha256": v.package.manifest_sha256,
                    "manifest_sm3": v.package.manifest_sm3,
                    "byte_size": v.package.byte_size,
                    "files": [
                        {
                            "path": f.path,
                            "role": f.role,
                            "media_type": f.media_type,
                            "size": f.size,
                            "sha256": f.sha256,
                            "sm3": f.sm3,
                        }
                        for f in v.files
                    ],
                }
                for v in self.versions
            ],
            "events": [
                {
                    "seq": e.seq,
                    "at": e.at.isoformat(),
                    "kind": e.kind,
                    "run_id": e.run_id,
                    "detail": json.loads(e.detail),
                    "hash": e.hash,
                }
                for e in self.events
            ],
            "links": [
                {"relation": k.relation, "archival_code": k.other, "basis": k.basis} for k in self.links
            ],
            "invoices": [
                {
                    "invoice_no": i.invoice_no,
                    "key": i.invoice_key,
                    "issued": i.issued,
                    "total": i.total,
                    "seller_tax_id": i.seller_tax_id,
                    "carrier": i.carrier,
                    "file_name": i.file_name,
                    "sha256": i.sha256,
                }
                for i in self.invoices
            ],
            "quarantine": [
                {
                    "id": q.id,
                    "stage": q.stage,
                    "status": q.status,
                    "attempts": q.attempts,
                    "reason": q.reason,
                    "run_id": q.run_id,
                    "created_at": q.created_at.isoformat(),
                    "resolved_at": q.resolved_at.isoformat() if q.resolved_at else None,
                }
                for q in self.quarantine
            ],
        }


def record_history(session: Session, archival_code: str) -> RecordHistory | None:
    """Everything the catalog holds about the record with exactly this 档号 (None if there is none)."""
    record = session.execute(
        select(ArchiveRecordRow).where(ArchiveRecordRow.archival_code == archival_code)
    ).scalar_one_or_none()
    if record is None:
        return None
    packages = (
        session.execute(
            select(PackageRow).where(PackageRow.record_id == record.id).order_by(PackageRow.version)
        )
        .scalars()
        .all()
    )
    files: dict[int, list[FileRow]] = {p.id: [] for p in packages}
    if packages:
        for f in session.execute(
            select(FileRow).where(FileRow.package_id.in_(list(files))).order_by(FileRow.id)
        ).scalars():
            files[f.package_id].append(f)
    version_of = {p.id: p.version for p in packages}
    history = RecordHistory(
        record,
        [PackageVersion(p, files[p.id], version_of.get(p.previous_package_id or -1)) for p in packages],
    )
    history.events = list(
        session.execute(
            select(EventRow).where(EventRow.subject == archival_code).order_by(EventRow.seq)
        ).scalars()
    )
    history.quarantine = list(
        session.execute(
            select(QuarantineRow)
            .where(
                QuarantineRow.source_id == record.source_id, QuarantineRow.business_id == record.business_id
            )
            .order_by(QuarantineRow.id)
        ).scalars()
    )
    history.invoices = list(
        session.execute(
            select(InvoiceClaimRow)
            .where(
                InvoiceClaimRow.source_id == record.source_id,
                InvoiceClaimRow.business_id == record.business_id,
            )
            .order_by(InvoiceClaimRow.invoice_key)
        ).scalars()
    )
    history.links = links_of(session, archival_code)
    return history


@dataclass(frozen=True)
class RecordLink:
    relation: str  # what the other 件 is to this one: 入账凭证 (of an approval) or 审批单 (of a voucher)
    other: str  # its 档号
    basis: str  # why they belong together


def links_of(session: Session, archival_code: str) -> list[RecordLink]:
    """The vouchers that booked an approval, or the approvals a voucher booked."""
    return links_of_many(session, [archival_code]).get(archival_code, [])


def links_of_many(session: Session, codes: list[str], chunk: int = 500) -> dict[str, list[RecordLink]]:
    """`links_of` for many 档号 at once (a 移交清册 lists the relations of every 件 it hands over)."""
    wanted = set(codes)
    out: dict[str, list[RecordLink]] = {}
    seen: set[int] = set()
    for start in range(0, len(codes), chunk):
        part = codes[start : start + chunk]
        rows = session.scalars(
            select(ApprovalLinkRow)
            .where(ApprovalLinkRow.approval_code.in_(part) | ApprovalLinkRow.voucher_code.in_(part))
            .order_by(ApprovalLinkRow.id)
        ).all()
        for r in rows:
            if r.id in seen:
                continue
            seen.add(r.id)
            if r.approval_code in wanted:
                out.setdefault(r.approval_code, []).append(RecordLink("入账凭证", r.voucher_code, r.basis))
            if r.voucher_code in wanted:
                out.setdefault(r.voucher_code, []).append(RecordLink("审批单", r.approval_code, r.basis))
    return out
