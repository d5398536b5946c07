"""`archive-hub scan`: 病毒检测 of what the archive already holds, with today's signatures.

Why again, after the scan at archiving: signatures grow. A file that no signature matched on the day it
was archived may match one published later, and DA/T 70 asks for the 安全性 check during long-term
preservation too, not only at the door. Every version's content files are scanned (a destroyed record's
are gone), nothing is changed, and the result is one `virus-scan` event in the hash-chained log: which
engine and signatures, how many files, and each file found, so the check itself is on record.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from sqlalchemy import and_

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import ArchiveRecordRow
from archive_hub.catalog.packages import code_scope, content_files
from archive_sink.virus_scan import IN_FLIGHT, ClamdScanner, ScanRefused


@dataclass
class RescanReport:
    scanner: str
    files: int = 0
    bytes: int = 0
    found: list[tuple[str, int, str, str]] = field(default_factory=list)  # 档号, version, path, signature
    unreadable: list[str] = field(default_factory=list)


CHUNK = 2 * IN_FLIGHT  # files read ahead of the scanner (whole files in memory: keep it small)


def _verdict(scanner: ClamdScanner, data: bytes) -> tuple[str | None, str | None]:
    """(signature found, why clamd would not scan it)."""
    try:
        return scanner.scan(data), None
    except ScanRefused as exc:
        return None, str(exc)


def rescan_archive(
    catalog: Catalog,
    archive_root: Path,
    scanner: ClamdScanner,
    code_prefix: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RescanReport:
    report = RescanReport(scanner.version())
    scope = and_(code_scope(code_prefix), ArchiveRecordRow.status == "archived")
    with catalog.reading() as session:
        files = content_files(
            session, archive_root, scope, current_only=False, unreadable=report.unreadable, progress=progress
        )
        # IN_FLIGHT files at a time, as the archiver scans (clamd answers each in a thread of its own); a
        # chunk at a time keeps memory bounded and the results in catalog order.
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            while chunk := list(islice(files, CHUNK)):
                for (code, version, path, data), (signature, refused) in zip(
                    chunk, pool.map(lambda f: _verdict(scanner, f[3]), chunk), strict=True
                ):
                    if refused:
                        report.unreadable.append(f"{code} v{version}: {path}: not scanned: {refused}")
                        continue
                    report.files += 1
                    report.bytes += len(data)
                    if signature:
                        report.found.append((code, version, path, signature))
    with catalog.transaction() as session:
        append(
            session,
            [
                Event(
                    "virus-scan",
                    f"archive {code_prefix or '(all)'}",
                    {
                        "scanner": report.scanner,
                        "files": report.files,
                        "bytes": report.bytes,
                        "found": [
                            {"archival_code": c, "version": v, "path": p, "signature": s}
                            for c, v, p, s in report.found
                        ],
                        "unreadable": len(report.unreadable),
                    },
                )
            ],
        )
    return report
