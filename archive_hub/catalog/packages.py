"""Walking the catalog's packages with their files, batch by batch (verify, backup, formats).

One query for 500 packages with their records and one for their files, keyed by package id, so a
walk over a million packages never holds more than a batch and never asks once per package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, and_, func, select, true
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ArchiveRecordRow, FileRow, PackageRow
from archive_sink.durability import read_bytes

CURRENT_VERSION = and_(
    PackageRow.record_id == ArchiveRecordRow.id, PackageRow.version == ArchiveRecordRow.current_version
)


def code_scope(code_prefix: str | None) -> ColumnElement[bool]:
    """The records whose 档号 starts with `code_prefix` (one fonds, one year, one class); all without one.
    `%` and `_` in the prefix are taken literally."""
    if not code_prefix:
        return true()
    return ArchiveRecordRow.archival_code.startswith(code_prefix, autoescape=True)


def expected_hashes(files: Iterable[FileRow]) -> dict[str, tuple[str, str, int]]:
    """path -> (SHA-256, SM3, size), as the catalog holds them: what verify_package_dir checks against."""
    return {f.path: (f.sha256, f.sm3, f.size) for f in files}


@dataclass
class PackageEntry:
    package: PackageRow
    record: ArchiveRecordRow
    files: list[FileRow] = field(default_factory=list)

    @property
    def expected(self) -> dict[str, tuple[str, str, int]]:
        return expected_hashes(self.files)


def count_packages(session: Session, where: ColumnElement[bool], current_only: bool = False) -> int:
    join = CURRENT_VERSION if current_only else PackageRow.record_id == ArchiveRecordRow.id
    return session.execute(
        select(func.count(PackageRow.id)).join(ArchiveRecordRow, join).where(where)
    ).scalar_one()


def package_batches(
    session: Session, where: ColumnElement[bool], current_only: bool = False, size: int = 500
) -> Iterator[list[PackageEntry]]:
    """Packages (every version, or each record's current one) of the records `where` selects, in id order."""
    join = CURRENT_VERSION if current_only else PackageRow.record_id == ArchiveRecordRow.id
    last_id = 0
    while True:
        rows = session.execute(
            select(PackageRow, ArchiveRecordRow)
            .join(ArchiveRecordRow, join)
            .where(where, PackageRow.id > last_id)
            .order_by(PackageRow.id)
            .limit(size)
        ).all()
        if not rows:
            return
        entries = {package.id: PackageEntry(package, record) for package, record in rows}
        for f in session.execute(select(FileRow).where(FileRow.package_id.in_(list(entries)))).scalars():
            entries[f.package_id].files.append(f)
        last_id = rows[-1][0].id
        yield list(entries.values())


def content_files(
    session: Session,
    archive_root: Path,
    where: ColumnElement[bool],
    *,
    current_only: bool,
    unreadable: list[str],
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, int, str, bytes]]:
    """(档号, version, path, bytes) of every file but the tag files (manifests) of the packages in scope, for
    the reports that read what the archive holds (formats, scan). A file that cannot be read is named in
    `unreadable` and skipped."""
    total = count_packages(session, where, current_only=current_only)
    for batch in package_batches(session, where, current_only=current_only):
        for entry in batch:
            package, code = entry.package, entry.record.archival_code
            for f in entry.files:
                if f.role == "tag":
                    continue
                try:
                    data = read_bytes(archive_root / package.path / f.path)
                except OSError as exc:
                    unreadable.append(f"{code} v{package.version}: {f.path}: {exc.strerror}")
                    continue
                yield code, package.version, f.path, data
        if progress:
            progress(len(batch), total)
