"""An e-invoice is booked once by its own number, whichever carrier it comes in (财会〔2020〕6号).

The sample ERP (``einvoices=True``) delivers some invoices as 数电票 OFD, half of them with their XML
beside it on the same voucher, and books one of them a second time as XML alone on a later voucher:
other bytes, same invoice. The expected answers come from the ERP's rows and file names, not from the
reader under test.
"""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy import select, text

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, CatalogUpgradeRow, InvoiceClaimRow, QuarantineRow
from archive_hub.pipeline import run_step, run_sync
from archive_hub.pipeline.finalize import QuarantineThresholdError
from archive_hub.verification import verify_archive
from archive_sink import ofd as ofd_reading
from archive_sink.einvoice import read_einvoice
from archive_sink.ofd import Unreadable
from connectors.erp.sample_erp.einvoices import SampleInvoice, einvoice_ofd, einvoice_xml
from connectors.erp.sample_erp.seed import Defect, touch_voucher
from tests.conftest import Hub, book_copy_of_voucher, claims_race, override_erp_sample, seed
from tests.test_cli import cli

INVOICE = SampleInvoice(
    "25322000004711081500", date(2025, 3, 4), "*金属制品*轴承", Decimal("1000.00"), Decimal("130.00")
)
OFD_NS = 'xmlns:ofd="http://www.ofdspec.org/2016"'


def ofd(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def ofd_xml(custom: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ofd:OFD {OFD_NS} Version="1.0"><ofd:DocBody><ofd:DocInfo>'
        f"<ofd:DocID>x</ofd:DocID><ofd:CustomDatas>{custom}</ofd:CustomDatas></ofd:DocInfo>"
        "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"
    ).encode()


OLD_STYLE = ofd_xml(  # an 增值税电子普通发票 of 2020: 12-digit code, 8-digit number
    '<ofd:CustomData Name="发票代码">050001700111</ofd:CustomData>'
    '<ofd:CustomData Name="发票号码">12235358</ofd:CustomData>'
    '<ofd:CustomData Name="价税合计">10600.00</ofd:CustomData>'
    '<ofd:CustomData Name="开票日期">2020年08月05日</ofd:CustomData>'
)


@pytest.mark.parametrize(
    ("carrier", "data", "key", "total"),
    [
        ("数电票 XML", einvoice_xml(INVOICE), "25322000004711081500", "1130.00"),
        ("OFD", einvoice_ofd(INVOICE), "25322000004711081500", "1130.00"),
        (
            "OFD",
            ofd({"OFD.xml": OLD_STYLE, "Doc_0/Document.xml": b"<d/>"}),
            "050001700111-12235358",
            "10600.00",
        ),
        (
            "OFD (embedded Doc_0/Attachs/original_invoice.xml)",
            ofd({"OFD.xml": ofd_xml(), "Doc_0/Attachs/original_invoice.xml": einvoice_xml(INVOICE)}),
            "25322000004711081500",
            "1130.00",
        ),
    ],
    ids=["xml", "ofd", "ofd-old-style-with-code", "ofd-embedding-its-xml"],
)
def test_the_invoice_identity_is_read_from_each_carrier(
    carrier: str, data: bytes, key: str, total: str
) -> None:
    found = read_einvoice(data)
    assert found is not None
    assert (found.carrier, found.key, found.total) == (carrier, key, total)


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"/>',
        ofd({"OFD.xml": ofd_xml('<ofd:CustomData Name="合同编号">HT-2025-001</ofd:CustomData>')}),
        b"%PDF-1.4\n% an invoice as PDF: its number is page text, not read here\n%%EOF\n",
    ],
    ids=["camt-xml", "ofd-contract", "pdf"],
)
def test_files_that_are_no_structured_invoice_have_no_identity(data: bytes) -> None:
    assert read_einvoice(data) is None


def zip_bomb() -> bytes:
    return ofd({"OFD.xml": ofd_xml() + b" " * (ofd_reading.MAX_ENTRY + 10)})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (einvoice_xml(INVOICE)[:-40], "数电票 XML is not well-formed XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE EInvoice [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<EInvoice><TaxSupervisionInfo><InvoiceNumber>&x;</InvoiceNumber></TaxSupervisionInfo></EInvoice>",
            "数电票 XML is refused: DTDForbidden",
        ),
        (
            b"<EInvoice><TaxSupervisionInfo><IssueTime>2025-03-04</IssueTime></TaxSupervisionInfo></EInvoice>",
            "数电票 XML has no invoice number at EInvoice/TaxSupervisionInfo/InvoiceNumber",
        ),
        (einvoice_ofd(INVOICE)[:900], "OFD cannot be opened"),
        (zip_bomb(), f"more than {ofd_reading.MAX_ENTRY} read"),
        (
            ofd({"OFD.xml": ofd_xml('<ofd:CustomData Name="发票号码">见附件</ofd:CustomData>')}),
            "is not an invoice number",
        ),
    ],
    ids=["truncated-xml", "external-entity", "no-number", "truncated-ofd", "zip-bomb", "number-not-a-number"],
)
def test_a_file_that_says_it_is_an_invoice_but_cannot_be_read_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(Unreadable) as refused:
        read_einvoice(data)
    assert reason in str(refused.value)


def einvoice_files(hub: Hub) -> list[tuple[int, str, str]]:
    """(voucher id, invoice number, extension) of every 数电票 file the sample ERP carries."""
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        rows = erp.execute(
            "select voucher_id, file_name from erp_attachment where file_name like '数电票_%' order by id"
        ).fetchall()
    return [(vid, name.split("_", 1)[1].split(".")[0], name.rsplit(".", 1)[1]) for vid, name in rows]


def open_reasons(catalog: Catalog) -> dict[str, str]:
    with catalog.reading() as s:
        rows = s.execute(select(QuarantineRow).where(QuarantineRow.status == "open")).scalars()
        return {q.business_id: q.reason for q in rows}


def test_an_invoice_booked_again_in_its_other_carrier_is_quarantined_naming_its_holder(
    hub: Hub, catalog_url: str
) -> None:
    summary = seed(hub, vouchers=240, einvoices=True)
    rebooked = next(b for b in summary.bad_vouchers if b.defect is Defect.INVOICE_OTHER_CARRIER)  # type: ignore[attr-defined]
    files = einvoice_files(hub)
    number = next(n for vid, n, _ in files if vid == rebooked.voucher_id)
    holder_id = next(vid for vid, n, ext in files if n == number and ext == "ofd")
    assert holder_id != rebooked.voucher_id
    both = {str(vid) for vid, _, ext in files if ext == "xml" and vid != rebooked.voucher_id}
    assert both, "the sample needs vouchers carrying an invoice's OFD and XML together"

    run_sync("erp_sample", "run-1")
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        archived = {
            r.business_id: r
            for r in s.execute(
                select(ArchiveRecordRow).where(ArchiveRecordRow.status == "archived")
            ).scalars()
        }
        claims = {c.invoice_key: c for c in s.execute(select(InvoiceClaimRow)).scalars()}
    holder = archived[str(holder_id)]
    reason = open_reasons(catalog)[str(rebooked.voucher_id)]
    assert f"e-invoice 发票 No.{number} in attachment '数电票_{number}.xml'" in reason
    assert (
        f"already archived with {holder.archival_code} ({holder.voucher_no}, source record erp_sample:{holder_id})"
        in reason
    )
    assert "booked only once (财会〔2020〕6号)" in reason
    assert str(rebooked.voucher_id) not in archived
    # The same invoice twice on one voucher (its OFD and its XML) is one booking.
    assert both <= set(archived)
    # Every 数电票 is claimed by the voucher that carried it first, with what the invoice says.
    first_holder: dict[str, int] = {}
    for vid, n, _ in files:
        first_holder.setdefault(n, vid)
    assert {k: (c.business_id, c.invoice_no) for k, c in claims.items()} == {
        n: (str(vid), n) for n, vid in first_holder.items()
    }
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        (rel,) = erp.execute(
            "select storage_path from erp_attachment where voucher_id = ?", (rebooked.voucher_id,)
        ).fetchone()
    said = ElementTree.fromstring((hub.home / "sample_erp" / "attachments" / rel).read_bytes())
    assert claims[number].carrier == "OFD"
    assert claims[number].seller_tax_id == said.findtext("EInvoiceData/SellerInformation/SellerIdNum")
    assert claims[number].total == said.findtext("EInvoiceData/BasicInformation/TotalTax-includedAmount")

    found = cli("search", "--invoice", number, "--json")
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["archival_code"] for line in found.stdout.splitlines()] == [holder.archival_code]
    shown = json.loads(cli("show", holder.archival_code, "--json").stdout)
    assert [(i["invoice_no"], i["carrier"], i["file_name"]) for i in shown["invoices"]] == [
        (number, "OFD", f"数电票_{number}.ofd")
    ]

    run_sync("erp_sample", "run-2")  # a re-run: nothing new, the refusal stands once
    with catalog.reading() as s:
        assert s.query(InvoiceClaimRow).count() == len(claims)
        assert (
            s.query(QuarantineRow).filter(QuarantineRow.business_id == str(rebooked.voucher_id)).count() == 1
        )
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_workers_on_separate_batches_book_an_invoice_once(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims are taken in each batch's 档号 turn in source order: the earlier voucher keeps its invoice."""
    override_erp_sample(hub, monkeypatch, "batch_size: 500", "batch_size: 10")
    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "2")
    summary = seed(hub, vouchers=240, einvoices=True)
    rebooked = next(b for b in summary.bad_vouchers if b.defect is Defect.INVOICE_OTHER_CARRIER)  # type: ignore[attr-defined]
    for step in ("extract", "map", "validate"):
        run_step(step, "erp_sample", "run-1")
    assert run_step("archive", "erp_sample", "run-1")["workers"] == 2
    run_step("finalize", "erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    reason = open_reasons(catalog)[str(rebooked.voucher_id)]
    assert "e-invoice 发票 No." in reason and "already archived with J001-KJ·2025-D30-PZ-" in reason
    catalog.dispose()


def test_an_invoice_file_that_cannot_be_read_is_quarantined_and_the_rest_archived(hub: Hub) -> None:
    seed(hub, vouchers=120, bad_records=False, einvoices=True)
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        vid, name, rel, size = erp.execute(
            "select voucher_id, file_name, storage_path, size from erp_attachment "
            "where mime_type = 'application/ofd' order by id limit 1"
        ).fetchone()
    path = hub.home / "sample_erp" / "attachments" / rel
    damaged = path.read_bytes()[:-200] + b"\0" * 200  # same size: the zip's central directory is gone
    path.write_bytes(damaged)
    assert len(damaged) == size

    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    reason = open_reasons(catalog)[str(vid)]
    assert f"{name!r} at {path}: OFD cannot be opened" in reason
    with catalog.reading() as s:
        assert s.query(ArchiveRecordRow).filter(ArchiveRecordRow.status == "archived").count() == 119
    assert path.read_bytes() == damaged  # the source's bytes are left as they were
    catalog.dispose()


def test_a_catalog_from_before_invoice_claims_claims_what_it_archived_before_the_next_run(hub: Hub) -> None:
    seed(hub, vouchers=120, bad_records=False, einvoices=True)
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.transaction() as s:
        claims = sorted(s.execute(select(InvoiceClaimRow.invoice_key, InvoiceClaimRow.business_id)).all())
        s.execute(text("DROP TABLE invoice_claim"))  # as an older release left the catalog
        s.execute(text("DROP TABLE catalog_upgrade"))
    catalog.dispose()
    assert claims

    # A new voucher carries an archived invoice's XML again, re-downloaded (other bytes, same invoice).
    vid, number, _ = next(f for f in einvoice_files(hub) if f[2] == "xml")
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        rel, uploaded = erp.execute(
            "select storage_path, uploaded_at from erp_attachment where voucher_id = ? and mime_type = 'application/xml'",
            (vid,),
        ).fetchone()
        root = hub.home / "sample_erp" / "attachments"
        again = (root / rel).read_bytes().replace(b"<EInvoice>", b"<EInvoice>\n  ")
        (root / "2025/12/again.xml").parent.mkdir(parents=True, exist_ok=True)
        (root / "2025/12/again.xml").write_bytes(again)
    book_copy_of_voucher(hub.erp_url, vid, 9001, 9001)
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        erp.execute(
            "insert into erp_attachment (id, voucher_id, file_name, mime_type, storage_path, size, uploaded_at) "
            "values (990001, 9001, ?, 'application/xml', '2025/12/again.xml', ?, ?)",
            (f"数电票_{number}.xml", len(again), uploaded),
        )
    touch_voucher(hub.erp_url, 9001, new_summary="重复报销")

    with pytest.raises(QuarantineThresholdError):  # 1 of the 1 record read is refused
        run_sync("erp_sample", "run-2")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        assert (
            sorted(s.execute(select(InvoiceClaimRow.invoice_key, InvoiceClaimRow.business_id)).all())
            == claims
        )
        upgrade = s.execute(select(CatalogUpgradeRow)).scalar_one()
        holder = s.execute(
            select(ArchiveRecordRow).where(ArchiveRecordRow.business_id == str(vid))
        ).scalar_one()
    assert upgrade.done_at is not None and upgrade.outcome == f"{len(claims)} e-invoice(s) claimed"
    reason = open_reasons(catalog)["9001"]
    assert (
        f"e-invoice 发票 No.{number}" in reason and f"already archived with {holder.archival_code}" in reason
    )
    catalog.dispose()


def test_an_invoice_claim_lost_to_a_concurrent_transaction_withdraws_the_records_file_claims(
    pg_database_url: str,
) -> None:
    """On PostgreSQL two sources may book the same invoice at the same moment in different carriers: the
    invoice's key decides, and the loser keeps none of its file claims either."""
    from archive_hub.catalog.claims import BookedInvoice, Presented
    from archive_hub.catalog.models import AttachmentClaimRow

    invoice = read_einvoice(einvoice_ofd(INVOICE))
    assert invoice is not None
    ofd_sha, xml_sha, receipt_sha = "a" * 64, "b" * 64, "c" * 64
    refused = claims_race(
        pg_database_url,
        ("src_a", [Presented("A1", [(ofd_sha, "发票.ofd")], [BookedInvoice(invoice, "发票.ofd", ofd_sha)])]),
        (
            "src_b",
            [
                Presented(
                    "B1",
                    [(receipt_sha, "回单.png"), (xml_sha, "发票.xml")],
                    [BookedInvoice(invoice, "发票.xml", xml_sha)],
                )
            ],
        ),
    )
    catalog = Catalog(pg_database_url)
    assert isinstance(refused, dict) and set(refused) == {"B1"}
    assert refused["B1"].owner == ("src_a", "A1") and refused["B1"].invoice == f"发票 No.{INVOICE.number}"
    with catalog.reading() as s:
        files = {c.sha256: c.business_id for c in s.execute(select(AttachmentClaimRow)).scalars()}
        invoices = {c.invoice_key: c.business_id for c in s.execute(select(InvoiceClaimRow)).scalars()}
    assert files == {ofd_sha: "A1"} and invoices == {INVOICE.number: "A1"}  # B1 keeps none of its files
    catalog.dispose()


def test_verify_names_a_claim_that_no_longer_matches_the_packages(hub: Hub) -> None:
    seed(hub, vouchers=120, bad_records=False, einvoices=True)
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    assert verify_archive(catalog, hub.settings.archive_root).ok
    with catalog.transaction() as s:
        invoice = s.execute(
            select(InvoiceClaimRow).order_by(InvoiceClaimRow.invoice_key).limit(1)
        ).scalar_one()
        key, holder = invoice.invoice_key, invoice.business_id
        other = s.execute(
            select(ArchiveRecordRow).where(ArchiveRecordRow.business_id != holder).limit(1)
        ).scalar_one()
        invoice.business_id = other.business_id  # the invoice moved to another record by hand
        code = other.archival_code
    report = verify_archive(catalog, hub.settings.archive_root)
    assert not report.ok
    assert [p for p in report.problems if "claim" in p] == [
        f"{code}: it holds the claim on e-invoice {key} (read from {invoice.file_name!r}), "
        f"SHA-256 {invoice.sha256[:16]}…, but no version of it carries that file "
        "(booked once: the claim no longer matches the packages)"
    ]
    catalog.dispose()


def test_the_invoice_register_lists_each_booked_invoice_with_its_voucher_and_flags_one_larger_than_it(
    hub: Hub, tmp_path: Path
) -> None:
    from openpyxl import load_workbook

    seed(hub, vouchers=120, bad_records=False, einvoices=True)
    huge = SampleInvoice(
        "25322000009999999999", date(2025, 6, 1), "*货物*设备", Decimal("900000000.00"), Decimal("0")
    )
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        att_id, vid, rel = erp.execute(
            "select id, voucher_id, storage_path from erp_attachment where mime_type = 'application/ofd' "
            "and voucher_id not in (select voucher_id from erp_attachment where mime_type = 'application/xml') "
            "order by id limit 1"
        ).fetchone()
        data = einvoice_ofd(huge)
        (hub.home / "sample_erp" / "attachments" / rel).write_bytes(data)
        erp.execute(
            "update erp_attachment set size = ?, file_name = ? where id = ?",
            (len(data), f"数电票_{huge.number}.ofd", att_id),
        )
    run_sync("erp_sample", "run-1")
    numbers = {n for _, n, _ in einvoice_files(hub)}
    out = cli("invoices", "--json", "--xlsx", str(tmp_path / "发票台账.xlsx"))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(line["invoice_no"] for line in lines) == sorted(numbers)
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        codes = dict(s.execute(select(ArchiveRecordRow.business_id, ArchiveRecordRow.archival_code)).all())
    catalog.dispose()
    first = {}
    for v, n, _ in einvoice_files(hub):
        first.setdefault(n, v)
    assert {line["invoice_no"]: line["archival_code"] for line in lines} == {
        n: codes[str(v)] for n, v in first.items()
    }
    assert [line["invoice_no"] for line in lines if line["exceeds_voucher"]] == [huge.number]
    assert first[huge.number] == vid
    sheet = load_workbook(tmp_path / "发票台账.xlsx").active
    rows = list(sheet.iter_rows(values_only=True))
    assert (
        rows[0][:5] == ("档号", "凭证号", "凭证日期", "凭证金额", "发票号码") and len(rows) == len(lines) + 1
    )
    assert [r[4] for r in rows[1:] if r[-1] == "是"] == [huge.number]
    shown = cli("invoices")
    assert f"发票台账: {len(lines)} e-invoice(s) booked" in shown.stdout
    assert "1 invoice(s) larger than the voucher they are booked to" in shown.stdout
