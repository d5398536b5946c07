"""`archive-hub backup DEST`: a second copy of the archive, verified file by file, and of the catalog (备份).

《会计档案管理办法》 Art. 8 allows electronic-only archiving only with a backup regime. A run copies the
packages DEST does not hold yet (a published package never changes, so what is there stays), checks every
copied file against the catalog exactly as `verify` checks an original (SHA-256 and SM3, manifests,
metadata) before renaming it into view, makes the copies durable with syncfs, and snapshots a SQLite
catalog with SQLite's online backup. A package whose original no longer matches the catalog is not
copied but reported: a backup of damaged bytes would hide the damage. Each run is logged in the event
chain. `check=True` also re-hashes the copies DEST already holds. A package destroyed under a 销毁清册 is
removed from the backup too: a destruction that left copies behind would not be one.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import ArchiveRecordRow, PackageRow
from archive_hub.catalog.packages import PackageEntry, count_packages, package_batches
from archive_sink.durability import fsync_dir, syncfs
from archive_sink.filesystem import copy_checked, remove_packages, verify_package_dir

BATCH = 200  # packages copied between two syncfs calls


class BackupRefused(ValueError):
    """The destination cannot hold a backup of this archive."""


@dataclass
class BackupReport:
    destination: Path
    copied: int = 0
    present: int = 0
    removed: int = 0  # packages destroyed (销毁) since the last run
    checked: int = 0
    files: int = 0
    bytes: int = 0
    catalog_copy: Path | None = None
    catalog_note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def backup(
    catalog: Catalog,
    archive_root: Path,
    destination: Path,
    *,
    check: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """The catalog copy is taken first and the packages it lists are what gets copied, so the two always
    agree; the catalog copy is renamed into view last, once every package it lists is in place."""
    root, target = archive_root.resolve(), destination.resolve()
    if target == root or root in target.parents or target in root.parents:
        raise BackupRefused(
            f"{destination} overlaps the archive {archive_root}: a backup belongs on another disk"
        )
    report = BackupReport(destination)
    packages_root = destination / "archive"
    partial_root = packages_root / ".partial"
    shutil.rmtree(partial_root, ignore_errors=True)  # what an interrupted run left behind
    partial_root.mkdir(parents=True, exist_ok=True)
    snapshot = _snapshot_catalog(catalog, destination, report)
    with _listing(catalog, snapshot) as session:
        held = ArchiveRecordRow.status != "destroyed"
        total = count_packages(session, held)
        report.removed = _remove_destroyed(session, packages_root)
        pending: list[tuple[Path, Path]] = []
        for batch in package_batches(session, held):
            for entry in batch:
                _back_up_package(archive_root, packages_root, entry, check, report, pending)
                if len(pending) >= BATCH:
                    report.copied += _publish(pending, destination)
            if progress:
                progress(len(batch), total)
        report.copied += _publish(pending, destination)
    shutil.rmtree(partial_root, ignore_errors=True)
    if snapshot is not None:
        report.catalog_copy = snapshot.with_name(snapshot.name.removeprefix(".").removesuffix(".partial"))
        os.rename(snapshot, report.catalog_copy)
        fsync_dir(snapshot.parent)
    with catalog.transaction() as session:
        append(
            session,
            [
                Event(
                    "backed-up",
                    str(destination),
                    {
                        "copied": report.copied,
                        "present": report.present,
                        "removed": report.removed,
                        "checked": report.checked,
                        "bytes": report.bytes,
                        "catalog_copy": str(report.catalog_copy) if report.catalog_copy else None,
                        "problems": len(report.problems),
                    },
                )
            ],
        )
    return report


def _back_up_package(
    archive_root: Path,
    packages_root: Path,
    entry: PackageEntry,
    check: bool,
    report: BackupReport,
    pending: list[tuple[Path, Path]],
) -> None:
    """One package: already there (re-hashed with `check`), or copied, verified and queued for publishing."""
    package, code, expected = entry.package, entry.record.archival_code, entry.expected
    target = packages_root / package.path
    name = f"{code} v{package.version}"
    if target.is_dir():
        report.present += 1
        if check:
            report.checked += 1
            report.problems.extend(
                f"backup copy of {name}: {p.path}: {p.reason}"
                for p in verify_package_dir(target, expected, code)
            )
        return
    partial = packages_root / ".partial" / str(package.id)
    problems = copy_checked(archive_root / package.path, partial, expected, code)
    if problems:
        report.problems.extend(
            f"{name}: not backed up, the original does not match the catalog: {p.path}: {p.reason}"
            for p in problems
        )
        return
    pending.append((partial, target))
    report.files += len(expected)
    report.bytes += package.byte_size


def _remove_destroyed(session: Session, packages_root: Path) -> int:
    """The backup copies of destroyed packages, removed the way the archive's own were."""
    paths = session.execute(
        select(PackageRow.id, PackageRow.path)
        .join(ArchiveRecordRow, ArchiveRecordRow.id == PackageRow.record_id)
        .where(ArchiveRecordRow.status == "destroyed")
    ).all()
    return remove_packages(
        packages_root, [(str(pid), rel) for pid, rel in paths], packages_root / ".partial" / "destroyed"
    )


def _publish(pending: list[tuple[Path, Path]], destination: Path) -> int:
    """The staged copies made durable by one syncfs, renamed into view, the renames made durable."""
    if not pending:
        return 0
    syncfs(destination)
    parents = set()
    for partial, target in pending:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(partial, target)
        parents.add(target.parent)
    for parent in parents:
        fsync_dir(parent)
    count = len(pending)
    pending.clear()
    return count


@contextmanager
def _listing(catalog: Catalog, snapshot: Path | None) -> Iterator[Session]:
    """Where the packages to copy are listed: the catalog copy itself when there is one."""
    if snapshot is None:
        with catalog.reading() as session:
            yield session
        return
    engine = create_engine(f"sqlite:///file:{snapshot}?mode=ro&uri=true")
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _snapshot_catalog(catalog: Catalog, destination: Path, report: BackupReport) -> Path | None:
    """A SQLite catalog copied with SQLite's online backup (one consistent state while syncs keep
    writing), under a hidden partial name; None for PostgreSQL, which has its own tools."""
    if catalog.engine.dialect.name != "sqlite" or not catalog.engine.url.database:
        report.catalog_note = (
            "the catalog is on PostgreSQL: back it up with the database's own tools (pg_dump, base backups)"
        )
        return None
    folder = destination / "catalog"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    for leftover in folder.glob(".catalog-*.sqlite.partial"):  # an interrupted run's copy lists too much
        leftover.unlink()
    partial = folder / f".catalog-{stamp}.sqlite.partial"
    source = sqlite3.connect(catalog.engine.url.database)
    copy = sqlite3.connect(partial)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    with open(partial, "rb+") as fh:
        os.fsync(fh.fileno())
    return partial
