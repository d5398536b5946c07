"""`archive-hub backup DEST`: a second copy of the archive, verified file by file, and of the catalog (备份).

《会计档案管理办法》 Art. 8 allows electronic-only archiving only with a backup regime. DEST is a folder on
another disk or an S3-compatible object store (`s3://bucket/prefix`, 异地备份; `archive_hub/backup_stores.py`).
A run copies the packages DEST does not hold yet (a published package never changes, so what is there
stays), checks every copy against the catalog exactly as `verify` checks an original (SHA-256 and SM3,
manifests, metadata) before it counts as held, and snapshots a SQLite catalog with SQLite's online backup.
A package whose original no longer matches the catalog is not copied but reported: a backup of damaged
bytes would hide the damage. Each run is logged in the event chain. `check=True` also re-reads the copies
DEST already holds. A package destroyed under a 销毁清册 is removed from the backup too: a destruction that
left copies behind would not be one. `restore` brings a backup back into a folder that passes `verify`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from archive_hub.backup_stores import (
    FOLDER_BATCH,
    BackupStore,
    FolderStore,
    S3Store,
    UnsafeName,
    open_store,
    safe_relative,
)
from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import ArchiveRecordRow, PackageRow
from archive_hub.catalog.packages import PackageEntry, count_packages, package_batches
from archive_sink.durability import fsync_dir, move_into_view
from archive_sink.filesystem import PackageProblem, verify_package_dir
from archive_sink.object_store import ObjectStoreError


class BackupRefused(ValueError):
    """The destination cannot hold a backup of this archive, or a source holds none to restore."""


@dataclass
class BackupReport:
    destination: str
    copied: int = 0
    present: int = 0
    removed: int = 0  # packages destroyed (销毁) since the last run
    checked: int = 0
    files: int = 0
    bytes: int = 0
    catalog_copy: str | None = None
    catalog_note: str = ""
    lock_note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def backup(
    catalog: Catalog,
    archive_root: Path,
    destination: str | Path,
    *,
    check: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """The catalog copy is taken first and the packages it lists are what gets copied, so the two always
    agree; the catalog copy is stored last, once every package it lists is held."""
    store = open_store(destination)
    if isinstance(store, FolderStore):
        root, target = archive_root.resolve(), store.destination.resolve()
        if target == root or root in target.parents or target in root.parents:
            raise BackupRefused(
                f"{destination} overlaps the archive {archive_root}: a backup belongs on another disk"
            )
    report = BackupReport(store.label)
    store.open()
    report.lock_note = store.lock_note
    try:
        snapshot = _snapshot_catalog(catalog, store, report)
        with _listing(catalog, snapshot) as session:
            held = ArchiveRecordRow.status != "destroyed"
            total = count_packages(session, held)
            report.removed, not_removed = store.remove(_destroyed(session))
            report.problems.extend(not_removed)
            queued: dict[str, PackageEntry] = {}
            for batch in package_batches(session, held):
                for entry in batch:
                    _back_up_package(archive_root, store, entry, check, report, queued)
                    if store.pending >= FOLDER_BATCH:
                        _publish(store, report, queued)
                if progress:
                    progress(len(batch), total)
            _publish(store, report, queued)
        if snapshot is not None:
            report.catalog_copy = store.commit_catalog(snapshot, _final_name(snapshot))
    finally:
        store.close()
    with catalog.transaction() as session:
        append(
            session,
            [
                Event(
                    "backed-up",
                    store.label,
                    {
                        "copied": report.copied,
                        "present": report.present,
                        "removed": report.removed,
                        "checked": report.checked,
                        "bytes": report.bytes,
                        "catalog_copy": report.catalog_copy,
                        "object_lock": report.lock_note or None,
                        "problems": len(report.problems),
                    },
                )
            ],
        )
    return report


def _back_up_package(
    archive_root: Path,
    store: BackupStore,
    entry: PackageEntry,
    check: bool,
    report: BackupReport,
    queued: dict[str, PackageEntry],
) -> None:
    """One package: already held (re-read with `check`), or queued to be copied and verified."""
    package, code, expected = entry.package, entry.record.archival_code, entry.expected
    if store.holds(package.path):
        report.present += 1
        if check:
            report.checked += 1
            report.problems.extend(
                f"backup copy of {code} v{package.version}: {p.path}: {p.reason}"
                for p in store.check(package.path, expected, code)
            )
        return
    store.add(archive_root / package.path, package.path, expected, code, entry.record.retention_due)
    queued[package.path] = entry


def _publish(store: BackupStore, report: BackupReport, queued: dict[str, PackageEntry]) -> None:
    done, refused = store.publish()
    for rel in done:
        entry = queued.pop(rel)
        report.copied += 1
        report.files += len(entry.files)
        report.bytes += entry.package.byte_size
    for refusal in refused:
        entry = queued.pop(refusal.rel)
        name = f"{refusal.code} v{entry.package.version}"
        why = (
            "the original does not match the catalog"
            if refusal.in_original
            else f"the copy in {store.label} differs from what was sent"
        )
        report.problems.extend(
            f"{name}: not backed up, {why}: {p.path}: {p.reason}" for p in refusal.problems
        )


def _destroyed(session: Session) -> list[tuple[str, str]]:
    """The packages destroyed under a 销毁清册: their backup copies go the way the archive's own went."""
    rows = session.execute(
        select(PackageRow.id, PackageRow.path)
        .join(ArchiveRecordRow, ArchiveRecordRow.id == PackageRow.record_id)
        .where(ArchiveRecordRow.status == "destroyed")
    ).all()
    return [(str(pid), rel) for pid, rel in rows]


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


def _final_name(partial: Path) -> str:
    return partial.name.removeprefix(".").removesuffix(".partial")


def _snapshot_catalog(catalog: Catalog, store: BackupStore, report: BackupReport) -> Path | None:
    """A SQLite catalog copied with SQLite's online backup (one consistent state while syncs keep
    writing) to where the store keeps it until it is stored; None for PostgreSQL, which has its own tools."""
    if catalog.engine.dialect.name != "sqlite" or not catalog.engine.url.database:
        report.catalog_note = (
            "the catalog is on PostgreSQL: back it up with the database's own tools (pg_dump, base backups)"
        )
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    partial = store.catalog_partial(f"catalog-{stamp}.sqlite")
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


@dataclass
class RestoreReport:
    source: str
    destination: Path
    catalog_copy: Path | None = None
    restored: int = 0
    present: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def restore(
    source: str | Path,
    destination: Path,
    *,
    catalog_url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreReport:
    """A backup brought back into `destination` (恢复): the newest catalog copy under `catalog/` and every
    package it lists under `archive/`, each fetched into a hidden folder, checked against the catalog copy
    as `verify` checks an original, and renamed into view only when whole. A package already restored is
    left as it is, so an interrupted restore is run again. `catalog_url` names a catalog restored by other
    means (a PostgreSQL catalog, which a backup does not copy) to list the packages from instead."""
    store = open_store(source)
    report = RestoreReport(store.label, destination)
    packages_root = destination / "archive"
    partial_root = packages_root / ".partial"
    shutil.rmtree(partial_root, ignore_errors=True)
    partial_root.mkdir(parents=True, exist_ok=True)
    store.open(writing=False)
    try:
        catalog = _restored_catalog(store, destination, catalog_url, report)
        try:
            with catalog.reading() as session:
                held = ArchiveRecordRow.status != "destroyed"
                total = count_packages(session, held)
                workers = 8 if isinstance(store, S3Store) else 2
                with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
                    for batch in package_batches(session, held):
                        wanted = []
                        for entry in batch:
                            try:  # the catalog copy came from the store too: its paths are checked
                                safe_relative(entry.package.path)
                            except UnsafeName as exc:
                                report.problems.append(f"{entry.record.archival_code}: not restored: {exc}")
                                continue
                            if (packages_root / entry.package.path).is_dir():
                                report.present += 1
                            elif not store.holds(entry.package.path):
                                report.problems.append(
                                    f"{entry.record.archival_code} v{entry.package.version}: "
                                    f"not in the backup {store.label}"
                                )
                            else:
                                wanted.append(entry)
                        fetched = pool.map(lambda e: _fetch_checked(store, e, partial_root), wanted)
                        ready = []
                        for entry, problems in zip(wanted, fetched, strict=True):
                            name = f"{entry.record.archival_code} v{entry.package.version}"
                            if problems:
                                report.problems.extend(
                                    f"{name}: not restored, the backup copy does not match the catalog: "
                                    f"{p.path}: {p.reason}"
                                    for p in problems
                                )
                            else:
                                ready.append(entry)
                        _publish_restored(ready, partial_root, packages_root, report)
                        if progress:
                            progress(len(batch), total)
        finally:
            catalog.dispose()
    finally:
        store.close()
        shutil.rmtree(partial_root, ignore_errors=True)
    return report


def _restored_catalog(
    store: BackupStore, destination: Path, catalog_url: str | None, report: RestoreReport
) -> Catalog:
    if catalog_url is not None:
        return Catalog(catalog_url)
    folder = destination / "catalog"
    incoming = folder / ".incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    copy = store.latest_catalog(incoming)
    if copy is None:
        shutil.rmtree(incoming)
        raise BackupRefused(
            f"{store.label} holds no catalog copy (a backup of a PostgreSQL catalog holds packages only): "
            "restore the database with its own tools and name it with --catalog"
        )
    final = folder / copy.name
    if final.exists():  # restored before: that copy may already carry this restore's verify events
        shutil.rmtree(incoming)
    else:
        with copy.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.rename(copy, final)
        incoming.rmdir()
        fsync_dir(folder)
    report.catalog_copy = final
    return Catalog(f"sqlite:///{final}")


def _fetch_checked(store: BackupStore, entry: PackageEntry, partial_root: Path) -> list[PackageProblem]:
    """One package fetched and checked; whatever is wrong with it (a missing or unreadable object, a marker
    that does not fit, a name that would leave the folder) is this package's problem, not the restore's."""
    partial = partial_root / str(entry.package.id)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for name in entry.expected:
            safe_relative(name)
        store.fetch(entry.package.path, partial, entry.expected)
        problems = verify_package_dir(partial, entry.expected, entry.record.archival_code)
    except (ObjectStoreError, ValueError, OSError) as exc:
        problems = [PackageProblem(entry.package.path, str(exc))]
    if problems:
        shutil.rmtree(partial, ignore_errors=True)
    return problems


def _publish_restored(
    ready: list[PackageEntry], partial_root: Path, packages_root: Path, report: RestoreReport
) -> None:
    moves = [(partial_root / str(e.package.id), packages_root / e.package.path) for e in ready]
    move_into_view(moves, partial_root)
    for entry in ready:
        report.restored += 1
        report.files += len(entry.files)
        report.bytes += entry.package.byte_size
