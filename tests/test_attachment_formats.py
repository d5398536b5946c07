"""四性检测 of attachments at archiving: declared type against the bytes, encryption, emptiness."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import QuarantineRow
from archive_hub.pipeline import run_sync
from archive_sink.formats import OFD, OOXML, PDF, XML, ZIP, attachment_problem, sniff
from connectors.erp.sample_erp.seed import _build_pdf  # the seeder's real one-page PDF
from tests.conftest import Hub, seed


def zipped(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in names:
            z.writestr(name, b"<x/>")
    return out.getvalue()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
ENCRYPTED_PDF = b"%PDF-1.6\n1 0 obj\n<<>>\nendobj\ntrailer\n<< /Size 2 /Root 1 0 R /Encrypt 9 0 R >>\n%%EOF\n"


def test_sniff_tells_formats_from_their_first_bytes() -> None:
    assert sniff(b"%PDF-1.7\n...") is PDF
    assert sniff(zipped("OFD.xml", "Doc_0/Document.xml")) is OFD
    assert sniff(zipped("[Content_Types].xml", "xl/workbook.xml")) is OOXML
    assert sniff(zipped("a.txt")) is ZIP
    assert sniff(b'\xef\xbb\xbf<?xml version="1.0"?><a/>') is XML
    assert sniff(PNG).name == "PNG image" and sniff(b"\xff\xd8\xff\xe0rest").name == "JPEG image"
    assert sniff(b"Rar!\x1a\x07\x00").name == "RAR archive"
    assert sniff(b"date,amount\n2025-01-01,1.00\n") is None


@pytest.mark.parametrize(
    ("declared", "data", "problem"),
    [
        ("application/pdf", PNG, "is declared application/pdf but its bytes are a PNG image"),
        ("image/jpeg", b"%PDF-1.4\n", "is declared image/jpeg but its bytes are a PDF document"),
        ("application/pdf", ENCRYPTED_PDF, "is an encrypted PDF"),
        ("application/pdf", b"", "is empty (0 bytes)"),
        ("application/pdf; charset=binary", b"%PDF-1.4\n", None),
        ("application/zip", zipped("OFD.xml"), None),  # an OFD is a zip container
        ("application/ofd", zipped("OFD.xml"), None),
        ("text/csv", b"BM,1.00\n", None),  # types the bytes cannot confirm are taken as declared
        ("application/octet-stream", PNG, None),
    ],
)
def test_attachment_problem(declared: str, data: bytes, problem: str | None) -> None:
    found = attachment_problem(declared, data)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_real_sample_pdf_passes() -> None:
    import datetime as dt

    pdf = _build_pdf(["Invoice 0001"], "发票", dt.datetime(2025, 1, 1), b"/Encrypt 9 0 R" * 4000)
    assert attachment_problem("application/pdf", pdf) is None  # /Encrypt inside a stream is no trailer key
    locked = pdf.replace(b"/Root 1 0 R", b"/Root 1 0 R /Encrypt 9 0 R")  # the trailer after startxref
    assert "is an encrypted PDF" in (attachment_problem("application/pdf", locked) or "")


def test_mislabelled_and_encrypted_attachments_are_quarantined_and_the_rest_archived(hub: Hub) -> None:
    seed(hub, vouchers=60, bad_records=False, attachment_every=1)  # 2 of 60: under the 5% threshold
    erp = hub.erp_url.removeprefix("sqlite:///")
    with sqlite3.connect(erp) as db:
        rows = db.execute(
            "select id, voucher_id, storage_path from erp_attachment where mime_type='application/pdf' order by id"
        ).fetchall()
        swaps = {rows[0][1]: PNG, rows[1][1]: ENCRYPTED_PDF}
        for att_id, voucher_id, rel in rows[:2]:
            data = swaps[voucher_id]
            (hub.home / "sample_erp" / "attachments" / rel).write_bytes(data)
            db.execute("update erp_attachment set size=? where id=?", (len(data), att_id))
    summary = run_sync("erp_sample", "run-1")
    assert summary["quarantined"] == 2 and summary["archived"] == 58
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        items = {q.business_id: q for q in s.execute(select(QuarantineRow)).scalars()}
    catalog.dispose()
    mislabelled, encrypted = (items[str(v)] for v in swaps)
    assert mislabelled.stage == "archive" and "but its bytes are a PNG image" in mislabelled.reason
    assert ".pdf" in mislabelled.reason and str(Path("attachments")) in mislabelled.reason  # names the place
    assert encrypted.stage == "archive" and "is an encrypted PDF" in encrypted.reason


XMP_PDFA = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"'
    b' pdfaid:part="2" pdfaid:conformance="B"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"%PDF-1.7\n" + XMP_PDFA + b"\n%%EOF\n", ("PDF/A-2b", True)),
        (
            b"%PDF-1.4\n<pdfaid:part>1</pdfaid:part><pdfaid:conformance>A</pdfaid:conformance>\n",
            ("PDF/A-1a", True),
        ),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n", ("PDF (not PDF/A)", False)),
        (zipped("OFD.xml", "Doc_0/Document.xml"), ("OFD", True)),
        (b"<?xml version='1.0'?><a/>", ("XML", True)),
        (PNG, ("PNG image", False)),
        (b'{"statements": []}', ("JSON", False)),
        ("日期,摘要,借方金额\n2025-01-03,货款,100.00\n".encode("gb18030"), ("plain text (GB18030)", False)),
        (b":20:STMT\r\n:25:DE725007\r\n", ("plain text (UTF-8)", False)),
        (b"\x00\x01\x02\x03binary", ("unrecognised bytes", False)),
    ],
)
def test_preservation_format(data: bytes, verdict: tuple[str, bool]) -> None:
    from archive_sink.formats import preservation_format

    assert preservation_format(data) == verdict


def test_formats_report_counts_the_archive_by_format_and_lists_what_to_convert(hub: Hub) -> None:
    """`archive-hub formats` reads the archived bytes: one attachment declared PDF/A in the ERP counts as
    long-term, the plain PDFs and PNGs are the conversion work list; a lost file is named, exit 2."""
    import json

    from archive_sink.filesystem import published_packages
    from tests.test_cli import cli

    seed(hub, vouchers=40, bad_records=False, attachment_every=1)
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        (path,) = erp.execute(
            "select storage_path from erp_attachment where mime_type = 'application/pdf' order by id limit 1"
        ).fetchone()
    pdf = hub.home / "sample_erp" / "attachments" / path
    data = pdf.read_bytes()
    pdf.write_bytes(data[:9] + b"%" + XMP_PDFA + b"\n" + data[9:])  # XMP in a comment: same size checks
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        erp.execute("update erp_attachment set size = ? where storage_path = ?", (pdf.stat().st_size, path))
    run_sync("erp_sample", "run-1")
    report = json.loads(cli("formats", "--json").stdout)
    counts = {f["label"]: (f["files"], f["long_term"]) for f in report["formats"]}
    assert counts == {
        "XML": (80, True),  # voucher.xml + metadata.xml of 40 packages
        "PDF/A-2b": (1, True),
        "PDF (not PDF/A)": (19, False),
        "PNG image": (20, False),
    }
    assert len(report["to_convert"]) == 39
    assert all(item["path"].startswith("data/attachments/") for item in report["to_convert"])
    listed = cli("formats", "--list")
    assert listed.returncode == 0 and "39 file(s) outside the long-term formats" in listed.stdout
    assert report["to_convert"][0]["path"] in listed.stdout
    assert cli("formats", "--code", "J999").returncode == 1
    victim = next(
        p for p in published_packages(hub.settings.archive_root) if (p / "data" / "attachments").exists()
    )
    (attachment,) = (victim / "data" / "attachments").iterdir()
    attachment.unlink()
    lost = cli("formats")
    assert (
        lost.returncode == 2 and f"{victim.parent.name} v1: data/attachments/{attachment.name}" in lost.stderr
    )
