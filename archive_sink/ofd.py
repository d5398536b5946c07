"""Reading an OFD (GB/T 33190) package safely: a zip of XML parts, read with limits and defused parsing.

OFD files arrive from outside (invoices from the tax platform, documents from OA systems), so a part
is read only up to MAX_ENTRY bytes (a zip bomb stops there) and every XML part is parsed without DTDs
or entities. Paths inside follow the standard's ST_Loc: absolute from the package root when they
start with "/", otherwise relative to the part that names them.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import zipfile
import zlib
from functools import cached_property
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

MAX_ENTRY = 4 * 1024 * 1024  # bytes read into memory from one part; an invoice's parts are a few KB each
MAX_HASHED = 1 << 30  # bytes hashed (streamed) from one signed part, a scanned page image say


class Unreadable(ValueError):
    """The bytes say what they are (an OFD, an e-invoice) but cannot be read as that."""


def local(tag: object) -> str:
    """The local name of an element (namespaces ignored: producers differ in them)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_xml(data: bytes, what: str) -> Element:
    try:
        return fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise Unreadable(
            f"{what} is refused: {type(exc).__name__} (a DTD or entity; XML is read defused)"
        ) from None
    except ParseError as exc:
        raise Unreadable(f"{what} is not well-formed XML: {exc}") from None


def child_text(root: Element, *path: str) -> str | None:
    """The stripped text at a path of local names, None when absent or empty."""
    node: Element | None = root
    for name in path:
        node = next((c for c in node if local(c.tag) == name), None) if node is not None else None
    text = (node.text or "").strip() if node is not None else ""
    return text or None


class OfdPackage:
    def __init__(self, data: bytes) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            self.names = set(self.zip.namelist())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
            raise Unreadable(f"OFD cannot be opened: {exc}") from None
        if "OFD.xml" not in self.names:
            raise Unreadable("OFD has no OFD.xml entry")

    @cached_property
    def root(self) -> Element:
        """OFD.xml, parsed once for every reader of the package (invoice identity, signatures)."""
        return self.xml("OFD.xml")

    def read(self, name: str) -> bytes:
        try:
            info = self.zip.getinfo(name)
            if info.file_size > MAX_ENTRY:
                raise Unreadable(
                    f"OFD entry {name} declares {info.file_size} bytes (more than {MAX_ENTRY} read)"
                )
            with self.zip.open(info) as fh:
                data = fh.read(MAX_ENTRY + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, KeyError) as exc:
            raise Unreadable(f"OFD cannot be opened: entry {name}: {exc}") from None
        if len(data) > MAX_ENTRY:
            raise Unreadable(f"OFD entry {name} inflates past {MAX_ENTRY} bytes")
        return data

    def digests(self, name: str, algorithms: tuple[str, ...]) -> dict[str, bytes]:
        """The part's digests, streamed: a signed page image may be far larger than MAX_ENTRY, so it is
        hashed a chunk at a time (memory stays flat) up to MAX_HASHED bytes inflated."""
        hashes = {a: hashlib.new(a) for a in algorithms}
        seen = 0
        try:
            with self.zip.open(name) as fh:
                while chunk := fh.read(1 << 20):
                    seen += len(chunk)
                    if seen > MAX_HASHED:
                        raise Unreadable(f"OFD entry {name} inflates past {MAX_HASHED} bytes")
                    for h in hashes.values():
                        h.update(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, KeyError) as exc:
            raise Unreadable(f"OFD cannot be opened: entry {name}: {exc}") from None
        return {a: h.digest() for a, h in hashes.items()}

    def xml(self, name: str) -> Element:
        return parse_xml(self.read(name), f"OFD entry {name}")

    def resolve(self, location: str, base: str = "") -> str | None:
        """The entry an ST_Loc names, seen from the part `base` (None if the package has no such entry).
        Producers also write root paths without the leading "/"; those are tried second."""
        location = location.strip().replace("\\", "/")
        if location.startswith("/"):
            candidates = [location.lstrip("/")]
        else:
            candidates = [posixpath.normpath(posixpath.join(posixpath.dirname(base), location)), location]
        return next((c for c in candidates if c in self.names), None)
