"""`archive-hub formats`: 可用性 of what the archive holds, by format, and the files to convert (迁移).

DA/T 70 asks that archived content stay usable without the software that made it; DESIGN.md names
PDF/A, OFD and XML as the long-term formats. Attachments arrive in whatever the source had (a plain
PDF invoice, a PNG receipt). This report reads the current version of every 件 (the bytes, not the
declared type), counts files and bytes per format, and lists each file outside the long-term formats,
which is the work list for a format migration. It changes nothing and logs nothing.

A PDF/A claim is the file's own word. With a validator (veraPDF, `--validate`) each file that claims
PDF/A is checked against the flavour it claims; one that fails, or cannot be validated, is not counted
as long-term and joins the work list with the clauses it fails.
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
from archive_sink.pdfa_validation import BATCH, PdfaVerdict, VeraPdf


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
    validated_with: str | None = None  # the PDF/A validator, when claims were checked
    pdfa_verdicts: list[tuple[str, int, str, str, PdfaVerdict]] = field(
        default_factory=list
    )  # ..., claim, verdict

    @property
    def not_conformant(self) -> list[tuple[str, int, str, str, PdfaVerdict]]:
        """The PDF/A claims the validator did not confirm (a finding: `formats --validate` exits 4)."""
        return [x for x in self.pdfa_verdicts if not x[4].compliant]

    def count(self, code: str, version: int, path: str, label: str, long_term: bool, size: int) -> None:
        entry = self.counts.setdefault(label, FormatCount(label, long_term))
        entry.files += 1
        entry.bytes += size
        if not long_term:
            self.to_convert.append((code, version, path, label))

    @property
    def files(self) -> int:
        return sum(c.files for c in self.counts.values())


def format_report(
    catalog: Catalog,
    archive_root: Path,
    code_prefix: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    validator: VeraPdf | None = None,
) -> FormatReport:
    """The content files (tag files excluded) of each record's current version."""
    report = FormatReport()
    claims: list[tuple[str, int, str, str, bytes]] = []  # PDF/A claims waiting for the validator

    def check_claims() -> None:
        assert validator is not None
        for (code, version, path, label, data), verdict in zip(
            claims, validator.validate([c[-1] for c in claims]), strict=True
        ):
            report.pdfa_verdicts.append((code, version, path, label, verdict))
            if verdict.compliant:
                report.count(code, version, path, f"{label} (veraPDF: conformant)", True, len(data))
            else:
                shown = "not validated" if verdict.error else "not conformant"
                report.count(code, version, path, f"{label} claimed, {shown}", False, len(data))
        report.validated_with = validator.version
        claims.clear()

    scope = and_(code_scope(code_prefix), ArchiveRecordRow.status == "archived")  # not what was destroyed
    with catalog.reading() as session:
        files = content_files(
            session, archive_root, scope, current_only=True, unreadable=report.unreadable, progress=progress
        )
        for code, version, path, data in files:
            label, long_term = preservation_format(data)
            if validator is not None and label.startswith("PDF/A"):
                claims.append((code, version, path, label, data))
                if len(claims) >= BATCH:
                    check_claims()
                continue
            report.count(code, version, path, label, long_term, len(data))
    if claims:
        check_claims()
    return report
