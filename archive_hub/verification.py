"""`archive-hub verify`: re-hash every package against its manifests and the catalog, check the event
chain, and find packages on disk the catalog does not know (四性检测: authenticity and integrity)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from archive_hub.catalog import Catalog
from archive_hub.catalog.destruction import destroyed_without_list
from archive_hub.catalog.events import Event, append, verify_chain
from archive_hub.catalog.history import RecordHistory
from archive_hub.catalog.integrity import (
    claim_problems,
    code_rule_problems,
    numbering_problems,
    registration_problems,
    registrations,
    registrations_from,
    version_problems,
    versions_problem,
)
from archive_hub.catalog.locks import source_lock
from archive_hub.catalog.models import ArchiveRecordRow, EventRow, PackageRow
from archive_hub.catalog.packages import code_scope, count_packages, expected_hashes, package_batches
from archive_sink.filesystem import published_packages, verify_package_dir
from canonical_model.archival_code import ArchivalCodeRule

MANIFEST = "manifest-sha256.txt"


@dataclass
class VerifyReport:
    packages: int = 0
    files: int = 0
    bytes: int = 0
    events: int = 0
    chain_ok: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain_ok and not self.problems


def unpublished(code: str) -> str:
    return f"{code}: 档号 reserved but no package was published (re-run the sync to finish it)"


def check_package(
    archive_root: Path, package: PackageRow, files: dict[str, tuple[str, str, int]], code: str
) -> tuple[bool, list[str]]:
    """One published version re-hashed against both manifests and the catalog's rows of its files.

    Returns whether its directory exists at all, and the problems found.
    """
    path = archive_root / package.path
    if not path.is_dir():
        return False, [f"{code} v{package.version}: package directory {package.path} is missing"]
    return True, [
        f"{code} v{package.version}: {problem.path}: {problem.reason}"
        for problem in verify_package_dir(path, files, code)
    ]


def verify_record(
    catalog: Catalog,
    archive_root: Path,
    history: RecordHistory,
    staging_root: Path | None = None,
    rule: ArchivalCodeRule | None = None,
) -> VerifyReport:
    """Re-hash every version of one 件 and check the event chain that records them; the check is logged."""
    report = VerifyReport()
    code = history.record.archival_code
    report.problems.extend(code_rule_problems([history.record], rule or ArchivalCodeRule()))
    registered = registrations_from(history.events)
    if history.record.status == "destroyed":
        with catalog.reading() as session:
            problems, _ = destroyed_problems(session, archive_root, ArchiveRecordRow.id == history.record.id)
        report.problems.extend(problems)
    elif history.record.status == "archived":
        problem = versions_problem(
            code, history.record.current_version, [v.package.version for v in history.versions]
        )
        report.problems.extend([problem] if problem else [])
    else:  # perhaps a run in flight: judged once it has finished
        stale, _ = _after_runs_in_flight(
            catalog, archive_root, staging_root or archive_root / ".staging", [code], []
        )
        report.problems.extend(unpublished(c) for c in stale)
    for version in history.versions if history.record.status != "destroyed" else []:
        expected = expected_hashes(version.files)
        present, problems = check_package(archive_root, version.package, expected, code)
        report.problems.extend(problems)
        manifest = expected.get(MANIFEST)
        report.problems.extend(
            registration_problems(version.package, code, manifest[0] if manifest else None, registered)
        )
        if present:
            report.packages += 1
            report.files += len(version.files)
            report.bytes += version.package.byte_size
    with catalog.reading() as session:
        chain = verify_chain(session)
    report.events, report.chain_ok = chain.events, chain.ok
    if not chain.ok:
        report.problems.append(f"event chain broken at event {chain.first_bad_seq}: {chain.reason}")
    with catalog.transaction() as session:
        append(
            session,
            [
                Event(
                    "verified",
                    code,
                    {
                        "versions": report.packages,
                        "files": report.files,
                        "ok": report.ok,
                        "problems": len(report.problems),
                    },
                )
            ],
        )
    return report


def destroyed_problems(
    session: Session, archive_root: Path, where: ColumnElement[bool]
) -> tuple[list[str], set[str]]:
    """Destroyed records (销毁) must be gone from disk, listed on an executed 销毁清册 and recorded in the
    chain; returns the problems and the paths their packages had (not "unknown" if still on disk)."""
    r = ArchiveRecordRow
    rows = session.execute(
        select(r.archival_code, PackageRow.path)
        .join(PackageRow, PackageRow.record_id == r.id)
        .where(and_(r.status == "destroyed", where))
        .order_by(r.archival_code, PackageRow.version)
    ).all()
    codes = sorted({code for code, _ in rows})
    recorded: set[str] = set()
    for start in range(0, len(codes), 500):
        recorded.update(
            session.execute(
                select(EventRow.subject).where(
                    EventRow.kind == "destroyed", EventRow.subject.in_(codes[start : start + 500])
                )
            ).scalars()
        )
    problems = [
        f"{code}: destroyed, but its package {path} is still on disk (run `archive-hub destruction execute` "
        "again to finish)"
        for code, path in rows
        if (archive_root / path).is_dir()
    ]
    problems.extend(
        f"{code}: marked destroyed but no destruction is recorded in the event chain"
        for code in codes
        if code not in recorded
    )
    problems.extend(destroyed_without_list(session, where))
    return problems, {path for _, path in rows}


def _registers_not_archived(catalog: Catalog, staging_root: Path) -> list[str]:
    """Final registers (销毁清册, 移交清册) not archived yet, judged again once no registers run is in flight."""
    from archive_hub.registers import registers_source_ids, unarchived_registers

    sources = registers_source_ids()
    if not sources:  # none configured: the README says the registers are then kept in the catalog only
        return []
    with catalog.reading() as session:
        missing = unarchived_registers(session, sources)
    if not missing:
        return []
    with ExitStack() as locks:
        for source_id in sorted(sources):
            locks.enter_context(source_lock(catalog, staging_root / source_id, source_id))
        with catalog.reading() as session:
            return unarchived_registers(session, sources)


def _after_runs_in_flight(
    catalog: Catalog, archive_root: Path, staging_root: Path, reserved: list[str], unknown: list[str]
) -> tuple[list[str], list[str]]:
    """Check again, once no archive step is running, what a run in flight also shows for a moment.

    Between reserving 档号 and registering its packages an archive step has records in status reserved
    and package directories renamed into place but not yet in the catalog. A scheduled verify must not
    cry wolf over those: with every source's archive lock held (waiting for running steps to finish),
    the findings are looked up afresh, and only what is still wrong is reported.
    """
    with catalog.reading() as session:
        sources = set(session.execute(select(ArchiveRecordRow.source_id).distinct()).scalars())
    if staging_root.is_dir():
        sources |= {p.name for p in staging_root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    with ExitStack() as locks:
        for source_id in sorted(sources):  # one order for every verifier: no deadlock between them
            locks.enter_context(source_lock(catalog, staging_root / source_id, source_id))
        with catalog.reading() as session:
            still_reserved = set(
                session.execute(
                    select(ArchiveRecordRow.archival_code).where(
                        ArchiveRecordRow.archival_code.in_(reserved), ArchiveRecordRow.status != "archived"
                    )
                ).scalars()
            )
            registered = set(
                session.execute(select(PackageRow.path).where(PackageRow.path.in_(unknown))).scalars()
            )
    return (
        [code for code in reserved if code in still_reserved],
        [rel for rel in unknown if rel not in registered and (archive_root / rel).is_dir()],
    )


def verify_archive(
    catalog: Catalog,
    archive_root: Path,
    progress: Callable[[int, int], None] | None = None,
    record_event: bool = True,
    code_prefix: str | None = None,
    staging_root: Path | None = None,
    rule: ArchivalCodeRule | None = None,
) -> VerifyReport:
    """Everything, or only the records whose 档号 starts with `code_prefix` (one fonds, one year, ...).

    The event chain is always checked whole: it is one chain, and a broken link anywhere breaks trust in
    every event after it. Besides each package, the catalog is checked as a whole (catalog/integrity.py):
    件号 gap-free per class, each 档号 built by the rule, versions 1..N kept, every package registered in
    the chain with the manifest it still has.
    """
    report = VerifyReport()
    rule = rule or ArchivalCodeRule()
    in_scope = code_scope(code_prefix)
    held = and_(in_scope, ArchiveRecordRow.status != "destroyed")
    with catalog.reading() as session:
        total = count_packages(session, held)
        chain = verify_chain(session)
        report.events, report.chain_ok = chain.events, chain.ok
        if not chain.ok:
            report.problems.append(f"event chain broken at event {chain.first_bad_seq}: {chain.reason}")
        report.problems.extend(numbering_problems(session, rule, code_prefix))
        report.problems.extend(version_problems(session, code_prefix))
        report.problems.extend(claim_problems(session, code_prefix))
        destroyed, known_paths = destroyed_problems(session, archive_root, in_scope)
        report.problems.extend(destroyed)
        for batch in package_batches(session, held):
            registered = registrations(session, sorted({e.record.archival_code for e in batch}))
            report.problems.extend(
                code_rule_problems((e.record for e in batch if e.package.version == 1), rule)
            )
            for entry in batch:
                package, code, expected = entry.package, entry.record.archival_code, entry.expected
                known_paths.add(package.path)
                present, problems = check_package(archive_root, package, expected, code)
                report.problems.extend(problems)
                manifest = expected.get(MANIFEST)
                report.problems.extend(
                    registration_problems(package, code, manifest[0] if manifest else None, registered)
                )
                if not present:
                    continue
                report.packages += 1
                report.files += len(expected)
                report.bytes += package.byte_size
            if progress:
                progress(len(batch), total)
        reserved = (
            session.execute(
                select(ArchiveRecordRow.archival_code).where(ArchiveRecordRow.status == "reserved", in_scope)
            )
            .scalars()
            .all()
        )
    unknown = [
        rel
        for bag in published_packages(archive_root)
        if (rel := str(bag.relative_to(archive_root))) not in known_paths
        and not (code_prefix and not bag.parent.name.startswith(code_prefix))
    ]
    if reserved or unknown:
        reserved, unknown = _after_runs_in_flight(
            catalog, archive_root, staging_root or archive_root / ".staging", list(reserved), unknown
        )
    report.problems.extend(unpublished(code) for code in reserved)
    report.problems.extend(f"{rel}: package on disk is not in the catalog" for rel in unknown)
    if not code_prefix:  # the registers belong to no one class
        report.problems.extend(_registers_not_archived(catalog, staging_root or archive_root / ".staging"))
    if record_event:
        with catalog.transaction() as session:
            append(
                session,
                [
                    Event(
                        "verified",
                        str(archive_root),
                        {
                            "packages": report.packages,
                            "files": report.files,
                            "ok": report.ok,
                            "problems": len(report.problems),
                            **({"scope": code_prefix} if code_prefix else {}),
                        },
                    )
                ],
            )
    return report
