"""ArchivePackage: the bytes of one version of one 件, as a BagIt 1.0 bag with SHA-256 and SM3 manifests.

Everything is built in memory and hashed once; the store only writes, syncs and renames. The
payload fingerprint (SHA-256 over the canonical record and the attachment hashes) is what decides
whether a re-read voucher is unchanged (nothing new) or changed (a new version).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from archive_sink.einvoice import EInvoice
from archive_sink.hashing import digests
from archive_sink.ofd_signatures import SignatureCheck
from archive_sink.sm3_batch import sm3_hexdigests
from archive_sink.xml_documents import metadata_xml, voucher_xml
from canonical_model.record import ArchiveRecord, FileEntity

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


@dataclass(frozen=True)
class AttachmentBytes:
    """An attachment's bytes with both digests, computed once (fingerprint and manifests share them)."""

    name: str
    media_type: str
    data: bytes
    invoice: EInvoice | None = None  # the e-invoice these bytes are (einvoice.py), read with them
    signatures: tuple[SignatureCheck, ...] = ()  # an OFD's 电子签章, checked with them (ofd_signatures.py)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def sm3(self) -> str:
        return hashlib.new("sm3", self.data).hexdigest()


def hash_sm3(attachments: Sequence[AttachmentBytes]) -> None:
    """Compute the SM3 of many attachments in one multi-buffer call (sm3_batch.py), ahead of building their
    packages: one at a time, SM3 was the archive step's largest single cost."""
    todo = [a for a in attachments if "sm3" not in a.__dict__]
    for a, digest in zip(todo, sm3_hexdigests([a.data for a in todo]), strict=True):
        a.__dict__["sm3"] = digest  # what the cached_property would have stored


@dataclass
class PackageFile:
    path: str
    data: bytes
    role: str
    media_type: str
    sha256: str = ""
    sm3: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256, self.sm3 = digests(self.data)

    def entity(self) -> FileEntity:
        return FileEntity(
            path=self.path,
            role=self.role,
            media_type=self.media_type,
            size=len(self.data),
            sha256=self.sha256,
            sm3=self.sm3,
        )


@dataclass
class ArchivePackage:
    archival_code: str
    version: int
    relative_path: str  # where it is published, relative to the archive root
    fingerprint: str
    payload: list[PackageFile]
    tags: list[PackageFile] = field(default_factory=list)

    @property
    def files(self) -> list[PackageFile]:
        return self.payload + self.tags

    @cached_property
    def byte_size(self) -> int:
        return sum(len(f.data) for f in self.files)  # a package is never changed once built

    def tag(self, name: str) -> PackageFile:
        return next(f for f in self.tags if f.path == name)


_UNSAFE = re.compile(r"[^\w.\-\u4e00-\u9fff]+")


def safe_name(name: str) -> str:
    """A file name that is safe in any store and in a BagIt manifest line."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "file"
    return cleaned[:120]


def fingerprint(record: ArchiveRecord, attachments: list[AttachmentBytes]) -> str:
    """What the archive promises to keep: record content plus attachment bytes (not paths, not times)."""
    body = record.model_dump(mode="json", exclude={"attachments": {"__all__": {"uri", "size"}}})
    body["source"].pop("changed_at", None)
    body["attachment_sha256"] = [a.sha256 for a in attachments]
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def package_path(record: ArchiveRecord, archival_code: str, version: int) -> str:
    return f"{record.fonds.fonds_no}/{record.fiscal_year}/{record.category.code}/{archival_code}/v{version}"


def build_package(
    record: ArchiveRecord,
    attachments: list[AttachmentBytes],
    *,
    archival_code: str,
    item_no: int,
    version: int,
    previous: dict[str, str] | None = None,
    archived_at: dt.datetime,
    retention_due: dt.date | None,
    record_fingerprint: str | None = None,
    scanned_with: str | None = None,
    checks: Sequence[str] = (),
) -> ArchivePackage:
    payload: list[PackageFile] = []
    if record.voucher is not None:
        payload.append(
            PackageFile("data/voucher.xml", voucher_xml(record.voucher, record), "content", "application/xml")
        )
    for index, att in enumerate(attachments, start=1):
        path = f"data/attachments/{index:02d}-{safe_name(att.name)}"
        payload.append(PackageFile(path, att.data, "attachment", att.media_type, att.sha256, att.sm3))
    meta = metadata_xml(
        record,
        archival_code=archival_code,
        item_no=item_no,
        version=version,
        previous=previous,
        files=[f.entity() for f in payload],
        archived_at=archived_at,
        retention_due=retention_due,
        scanned_with=scanned_with,
        checks=checks,
    )
    payload.append(PackageFile("data/metadata.xml", meta, "metadata", "application/xml"))

    fp = record_fingerprint or fingerprint(record, attachments)
    octets = sum(len(f.data) for f in payload)
    info_lines = [
        f"Source-Organization: {record.fonds.unit_name}",
        f"External-Identifier: {archival_code}",
        f"Bagging-Date: {archived_at.date().isoformat()}",
        f"Payload-Oxum: {octets}.{len(payload)}",
        f"Archive-Hub-Version: {version}",
        f"Archive-Hub-Fingerprint: {fp}",
        f"Archive-Hub-Source: {record.source.source_id}:{record.source.business_id}",
    ]
    if previous:
        info_lines.append(f"Archive-Hub-Previous-Version: {previous['path']}")
    tags = [
        PackageFile("bagit.txt", BAGIT_TXT, "tag", "text/plain"),
        PackageFile("bag-info.txt", ("\n".join(info_lines) + "\n").encode(), "tag", "text/plain"),
        PackageFile("manifest-sha256.txt", _manifest(payload, "sha256"), "tag", "text/plain"),
        PackageFile("manifest-sm3.txt", _manifest(payload, "sm3"), "tag", "text/plain"),
    ]
    tags.append(PackageFile("tagmanifest-sha256.txt", _manifest(tags, "sha256"), "tag", "text/plain"))
    return ArchivePackage(
        archival_code=archival_code,
        version=version,
        relative_path=package_path(record, archival_code, version),
        fingerprint=fp,
        payload=payload,
        tags=tags,
    )


def _manifest(files: list[PackageFile], algorithm: str) -> bytes:
    return "".join(f"{getattr(f, algorithm)}  {f.path}\n" for f in files).encode()
