"""PDF/A validation with veraPDF: whether a file that claims PDF/A is PDF/A (四性检测, 可用性).

A PDF counts as a long-term format when its XMP says pdfaid (formats.py), but a claim is not
conformance: producers stamp the claim on files with unembedded fonts or device colours, and such a
file may not render the same in thirty years. veraPDF, the PDF Association's reference validator,
checks the file against the flavour it claims (ISO 19005-1/2/3, a/b/u) and names each failed clause.

It runs as one JVM per batch of files (start-up is about a second; each small file then takes a few
ms), given copies in a private temporary folder, so nothing in the archive is opened for writing.
`ARCHIVE_HUB_VERAPDF` names veraPDF: the lib folder of scripts/verapdf.sh, or an installed `verapdf`
launcher. Its report is parsed with a defused parser.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

BATCH = 200  # files per JVM
TIMEOUT_S = 600
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
_CLI = "org.verapdf.apps.GreenfieldCliWrapper"


class ValidatorUnavailable(RuntimeError):
    """veraPDF is not there or did not produce a report: nothing can be said about the files."""


@dataclass(frozen=True)
class FailedRule:
    clause: str  # e.g. 6.3.4 of ISO 19005-1:2005
    specification: str
    description: str
    checks: int  # how many objects failed it

    def __str__(self) -> str:
        return f"{self.specification} {self.clause}: {self.description} ({self.checks}×)"


@dataclass(frozen=True)
class PdfaVerdict:
    profile: str  # the flavour validated against, e.g. "PDF/A-1B validation profile"
    compliant: bool
    failed: tuple[FailedRule, ...] = field(default_factory=tuple)
    error: str | None = None  # veraPDF could not validate it (it does not parse, say)

    def summary(self) -> str:
        if self.error:
            return f"not validated: {self.error}"
        if self.compliant:
            return f"conformant ({self.profile})"
        return f"not conformant ({self.profile}): " + "; ".join(str(r) for r in self.failed)


class VeraPdf:
    def __init__(self, location: str | Path, java: str = "java") -> None:
        self.location = Path(location)
        self.java = java
        self.version: str | None = None  # "veraPDF 1.28.2", from the first report

    def command(self) -> list[str]:
        if self.location.is_dir():  # the jars of scripts/verapdf.sh; its config lives beside them
            home = self.location.parent
            return [self.java, f"-Dapp.home={home}", "-cp", f"{self.location}/*", _CLI]
        if self.location.is_file():
            return [str(self.location)]
        raise ValidatorUnavailable(
            f"veraPDF not found at {self.location} (ARCHIVE_HUB_VERAPDF; scripts/verapdf.sh install fetches it)"
        )

    def validate(self, files: Sequence[bytes]) -> list[PdfaVerdict]:
        """One verdict per file, in order; each against the PDF/A flavour the file itself claims."""
        verdicts: list[PdfaVerdict] = []
        for start in range(0, len(files), BATCH):
            verdicts += self._batch(files[start : start + BATCH])
        return verdicts

    def _batch(self, files: Sequence[bytes]) -> list[PdfaVerdict]:
        with tempfile.TemporaryDirectory(prefix="archive-hub-pdfa-") as tmp:
            paths = []
            for i, data in enumerate(files):
                path = Path(tmp) / f"{i:05d}.pdf"
                path.write_bytes(data)
                paths.append(path)
            jobs, version = self._run([str(p) for p in paths])
        self.version = f"veraPDF {version}" if version else "veraPDF"
        by_name = {Path(name).name: verdict for name, verdict in jobs}
        missing = [p.name for p in paths if p.name not in by_name]
        if missing:
            raise ValidatorUnavailable(
                f"veraPDF's report has no result for {len(missing)} of {len(paths)} files"
            )
        return [by_name[p.name] for p in paths]

    def _run(self, paths: list[str]) -> tuple[list[tuple[str, PdfaVerdict]], str | None]:
        command = [
            *self.command(),
            "--format",
            "mrr",
            "--flavour",
            "0",
            "--maxfailuresdisplayed",
            "1",
            *paths,
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ValidatorUnavailable(f"veraPDF could not be run: {exc}") from None
        # The exit code says what the files were (0 all conformant, 1 some not, 7 some did not parse, ...);
        # only a missing or incomplete report is a failure of the tool (checked by the caller).
        if not done.stdout.lstrip().startswith(b"<?xml"):
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ValidatorUnavailable(f"veraPDF exited {done.returncode}: {' | '.join(tail) or 'no report'}")
        return _parse_report(done.stdout)


def _parse_report(xml: bytes) -> tuple[list[tuple[str, PdfaVerdict]], str | None]:
    root = etree.fromstring(xml, _PARSER)
    version = root.xpath("string(buildInformation/releaseDetails[@id='core']/@version)") or None
    jobs = []
    for job in root.iterfind("jobs/job"):
        name = job.findtext("item/name") or ""
        report = job.find("validationReport")
        if report is None:
            message = job.findtext("taskException/exceptionMessage") or "no validation report"
            jobs.append((name, PdfaVerdict("", False, error=" ".join(message.split())[:300])))
            continue
        failed = tuple(
            FailedRule(
                rule.get("clause", "?"),
                rule.get("specification", ""),
                " ".join((rule.findtext("description") or "").split()),
                int(rule.get("failedChecks", "0") or 0),
            )
            for rule in report.iterfind("details/rule")
            if rule.get("status") == "failed"
        )
        jobs.append(
            (name, PdfaVerdict(report.get("profileName", ""), report.get("isCompliant") == "true", failed))
        )
    return jobs, version
