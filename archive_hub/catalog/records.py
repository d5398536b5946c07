"""Catalog lookups the archive step needs, batched (one IN query per 500 keys)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ArchiveRecordRow, PackageRow


@dataclass
class KnownRecord:
    record_id: int
    archival_code: str
    item_no: int
    status: str
    current_version: int
    current_package_id: int | None
    current_fingerprint: str | None
    current_path: str | None
    current_manifest_sha256: str | None
    reserved_run: str | None = None  # the run that reserved its 档号, while status is "reserved"


def records_with_current_package(source_id: str) -> Select[tuple[ArchiveRecordRow, PackageRow]]:
    """A source's records, each with the package of its current version (None while only reserved)."""
    return (
        select(ArchiveRecordRow, PackageRow)
        .join(
            PackageRow,
            (PackageRow.record_id == ArchiveRecordRow.id)
            & (PackageRow.version == ArchiveRecordRow.current_version),
            isouter=True,
        )
        .where(ArchiveRecordRow.source_id == source_id)
    )


def known_records(session: Session, source_id: str, business_ids: Sequence[str]) -> dict[str, KnownRecord]:
    found: dict[str, KnownRecord] = {}
    for start in range(0, len(business_ids), 500):
        chunk = list(business_ids[start : start + 500])
        rows = session.execute(
            records_with_current_package(source_id).where(ArchiveRecordRow.business_id.in_(chunk))
        ).all()
        for rec, pkg in rows:
            found[rec.business_id] = KnownRecord(
                rec.id,
                rec.archival_code,
                rec.item_no,
                rec.status,
                rec.current_version,
                pkg.id if pkg else None,
                pkg.fingerprint if pkg else None,
                pkg.path if pkg else None,
                pkg.manifest_sha256 if pkg else None,
                rec.reserved_run,
            )
    return found


def archived_voucher_numbers(
    session: Session, source_id: str, keys: set[tuple[str, int, int, str]]
) -> dict[tuple[str, int, int, str], str]:
    """(book, year, period, 凭证号) → business id of this source's archived voucher holding it.

    Scoped to one source (two ERPs may both have a book "01") and to archived records (a bare 档号
    reservation holds no voucher number yet).
    """
    if not keys:
        return {}
    result: dict[tuple[str, int, int, str], str] = {}
    years = {k[1] for k in keys}
    numbers = sorted({k[3] for k in keys})
    for start in range(0, len(numbers), 500):
        rows = session.execute(
            select(
                ArchiveRecordRow.book_code,
                ArchiveRecordRow.fiscal_year,
                ArchiveRecordRow.period,
                ArchiveRecordRow.voucher_no,
                ArchiveRecordRow.business_id,
            ).where(
                ArchiveRecordRow.source_id == source_id,
                ArchiveRecordRow.status == "archived",
                ArchiveRecordRow.fiscal_year.in_(years),
                ArchiveRecordRow.voucher_no.in_(numbers[start : start + 500]),
            )
        ).all()
        for book, year, period, number, business_id in rows:
            key = (book, year, period, number)
            if key in keys:
                result[key] = business_id
    return result
