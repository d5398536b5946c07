"""`archive-hub formats`: 可用性 of what the archive holds, by format, and the files to convert (迁移).

DA/T 70 asks that archived content stay usable without the software that made it; DESIGN.md names
PDF/A, OFD and XML as the long-term formats. Attachments arrive in whatever the source had (a plain
PDF invoice, a PNG receipt). This report reads the current version of every 件 (the bytes, not the
declared type), counts files and bytes per format, and lists each file outside the long-term formats,
which is the work list for a format migration. It changes nothing and logs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow
from archive_hub.catalog.packages import code_scope, content_files
from archive_sink.formats import preservation_format


@dataclass
class FormatCount:
    label: str
    long_term: bool
    files: int = 0
    bytes: int = 0


@dataclass
class FormatReport:
    counts: dict[str, FormatCount] = field(default_factory=dict)
    to_convert: list[tuple[str, int, str, str]] = field(default_factory=list)  # 档号, version, path, format
    unreadable: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(c.files for c in self.counts.values())


def format_report(
    catalog: Catalog,
    archive_root: Path,
    code_prefix: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FormatReport:
    """The content files (tag files excluded) of each record's current version."""
    report = FormatReport()
    scope = and_(code_scope(code_prefix), ArchiveRecordRow.status == "archived")  # not what was destroyed
    with catalog.reading() as session:
        files = content_files(
            session, archive_root, scope, current_only=True, unreadable=report.unreadable, progress=progress
        )
        for code, version, path, data in files:
            label, long_term = preservation_format(data)
            count = report.counts.setdefault(label, FormatCount(label, long_term))
            count.files += 1
            count.bytes += len(data)
            if not long_term:
                report.to_convert.append((code, version, path, label))
    return report
