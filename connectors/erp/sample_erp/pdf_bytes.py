"""A PDF file from its objects: header, numbered objects, a correct xref table, trailer.

Shared by the sample ERP's invoices and the PDF/A fixtures of the tests, so each only says what its
objects are. Object 1 is the catalog.
"""

from __future__ import annotations

import hashlib

PDF_BINARY_MARK = b"%\xe2\xe3\xcf\xd3\n"  # the comment line that tells a transfer program the file is binary


def assemble_pdf(objects: list[bytes], trailer: bytes = b"", *, file_id: bool = False) -> bytes:
    """`trailer` holds extra trailer entries (e.g. b"/Info 6 0 R"); `file_id` adds the /ID PDF/A requires."""
    out = bytearray(b"%PDF-1.4\n" + PDF_BINARY_MARK)
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    entries = [b"/Size %d /Root 1 0 R" % (len(objects) + 1), trailer]
    if file_id:
        digest = hashlib.md5(bytes(out)).hexdigest().encode()
        entries.append(b"/ID [<%s> <%s>]" % (digest, digest))
    out += b"trailer\n<< %s >>\nstartxref\n%d\n%%%%EOF\n" % (b" ".join(e for e in entries if e), xref_at)
    return bytes(out)
