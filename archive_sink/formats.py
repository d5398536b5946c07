"""格式信息 from the bytes themselves: what an attachment really is, and whether it can be kept.

DA/T 70 asks at archiving that the content's properties match its metadata (真实性) and that files
stay usable without a key or a vendor tool (可用性). The media type a source declares is often
guessed from the file name; the first bytes are not. So an attachment is refused when it is empty,
when it is an encrypted PDF, or when its declared type names one format and its bytes are plainly
another (a PNG sent as application/pdf). Types that cannot be told from the bytes (text, CSV,
octet-stream, anything not listed here) are accepted as declared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str
    media_types: frozenset[str]  # declared types that agree with these bytes


def _fmt(name: str, *media_types: str) -> Format:
    return Format(name, frozenset(media_types))


PDF = _fmt("PDF document", "application/pdf", "application/x-pdf")
OFD = _fmt("OFD document", "application/ofd", "application/x-ofd", "application/zip")
OOXML = _fmt(
    "Office Open XML document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/zip",
)
ZIP = _fmt("ZIP archive", "application/zip", "application/x-zip-compressed")
XML = _fmt("XML document", "application/xml", "text/xml")

_SIGNATURES: tuple[tuple[bytes, Format], ...] = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", _fmt("PNG image", "image/png")),
    (b"\xff\xd8\xff", _fmt("JPEG image", "image/jpeg", "image/jpg", "image/pjpeg")),
    (b"II*\x00", _fmt("TIFF image", "image/tiff")),
    (b"MM\x00*", _fmt("TIFF image", "image/tiff")),
    (b"GIF87a", _fmt("GIF image", "image/gif")),
    (b"GIF89a", _fmt("GIF image", "image/gif")),
    (b"BM", _fmt("BMP image", "image/bmp")),
    (b"Rar!\x1a\x07", _fmt("RAR archive", "application/vnd.rar", "application/x-rar-compressed")),
    (b"7z\xbc\xaf\x27\x1c", _fmt("7-Zip archive", "application/x-7z-compressed")),
    (b"\x1f\x8b", _fmt("gzip archive", "application/gzip", "application/x-gzip")),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        _fmt(
            "legacy Office (OLE2) document",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
        ),
    ),
)
# Declared types this module can confirm or contradict from the bytes.
CHECKABLE = frozenset().union(
    *(f.media_types for _, f in _SIGNATURES),
    PDF.media_types,
    OFD.media_types,
    OOXML.media_types,
    XML.media_types,
)
_STARTXREF = re.compile(rb"startxref\s+(\d{1,12})\s+%%EOF\s*$")
_PDF_ENCRYPT = re.compile(rb"/Encrypt\s*\d+\s+\d+\s+R|/Encrypt\s*<<")


def sniff(data: bytes) -> Format | None:
    """The format the bytes show, or None if they show none that is listed here."""
    if data.startswith(b"PK\x03\x04"):
        head = data[:4096]  # local file headers of the first entries; OFD.xml / [Content_Types].xml lead
        if b"OFD.xml" in head:
            return OFD
        if b"[Content_Types].xml" in head or b"[Content_Types].xml" in data[-65536:]:
            return OOXML
        return ZIP
    for signature, fmt in _SIGNATURES:
        if data.startswith(signature):
            if signature == b"BM" and len(data) < 26:  # two letters alone say little
                continue
            return fmt
    text = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<?xml"):
        return XML
    return None


def _encrypted_pdf(data: bytes) -> bool:
    """Whether the last trailer (or xref stream) names an /Encrypt dictionary.

    Every trailer of an encrypted PDF carries /Encrypt, so searching from the last `startxref` offset
    suffices; only when that offset is unreadable is the last 64 KB searched instead.
    """
    match = _STARTXREF.search(data, max(0, len(data) - 2048))
    start = int(match.group(1)) if match else -1
    if not 0 <= start < len(data):
        start = max(0, len(data) - 65536)
    return _PDF_ENCRYPT.search(data, start) is not None


def attachment_problem(declared_media_type: str, data: bytes, found: Format | None = None) -> str | None:
    """Why these bytes cannot be archived under this declared type, or None. `found`: what sniff() says of
    them, when the caller has asked already."""
    if not data:
        return "is empty (0 bytes)"
    found = found or sniff(data)
    declared = declared_media_type.split(";", 1)[0].strip().lower()
    if found is not None and declared in CHECKABLE and declared not in found.media_types:
        return f"is declared {declared} but its bytes are a {found.name} (真实性: content must match its metadata)"
    if found is PDF and _encrypted_pdf(data):
        return "is an encrypted PDF: it could not be opened without its key (可用性: no encryption)"
    return None


# 可用性 for long-term keeping: the formats DESIGN.md (DA/T 70) names as archival.
LONG_TERM = ("PDF/A", "OFD", "XML")
_PDFA_PART = re.compile(rb"pdfaid:part(?:>\s*|\s*=\s*[\"'])([1-4])")
_PDFA_CONFORMANCE = re.compile(rb"pdfaid:conformance(?:>\s*|\s*=\s*[\"'])([ABUabu])")


def preservation_format(data: bytes) -> tuple[str, bool]:
    """(what the bytes are, whether that is a long-term format). A PDF counts as PDF/A when its XMP
    metadata declares a pdfaid part; the declaration is read, not validated (veraPDF validates)."""
    found = sniff(data)
    if found is PDF:
        part = _PDFA_PART.search(data)
        if part:
            level = _PDFA_CONFORMANCE.search(data)
            return f"PDF/A-{part.group(1).decode()}{level.group(1).decode().lower() if level else ''}", True
        return "PDF (not PDF/A)", False
    if found is OFD:
        return "OFD", True
    if found is XML:
        return "XML", True
    if found is None:
        return _text_kind(data), False
    return found.name, False


def _text_kind(data: bytes) -> str:
    """JSON, plain text (a CSV export, an MT940 statement: UTF-8 or GB18030) or unrecognised bytes."""
    head = data[:65536]
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = head.decode(encoding)
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not merely a character cut at the 64 KB boundary
                continue
            text = head[: exc.start].decode(encoding)
        if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
            return "unrecognised bytes"
        return (
            "JSON"
            if text.lstrip()[:1] in ("{", "[")
            else f"plain text ({'UTF-8' if encoding == 'utf-8-sig' else 'GB18030'})"
        )
    return "unrecognised bytes"
