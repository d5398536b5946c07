"""A signed OFD changed after signing is caught by the digests its 电子签章 covers (GB/T 33190 §18).

The signed files here are the sample 数电票 OFDs with a signature added the way GB/T 33190 lays it out
(OFD.xml → Signatures.xml → Signature.xml with References and CheckValues). The check values are
computed in this file with hashlib, independently of the code under test. The SignedValue is a
placeholder: the SM2 value is not checked by the hub, and these tests say nothing about it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sqlite3
import zipfile
from datetime import date
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, QuarantineRow
from archive_hub.pipeline import run_sync
from archive_hub.verification import verify_archive
from archive_sink import ofd as ofd_reading
from archive_sink.filesystem import published_packages
from archive_sink.ofd import Unreadable
from archive_sink.ofd_signatures import altered_after_signing, check_signatures
from connectors.erp.sample_erp.einvoices import SampleInvoice, einvoice_ofd
from tests.conftest import Hub, seed
from tests.test_einvoice import ofd as zipped

INVOICE = SampleInvoice(
    "25322000009900112233", date(2025, 5, 6), "*金属制品*轴承", Decimal("200.00"), Decimal("26.00")
)
PROTECTED = ("Doc_0/Document.xml", "Doc_0/PublicRes.xml", "Doc_0/Pages/Page_0/Content.xml")
SM3_OID = "1.2.156.10197.1.401"


def entries(ofd: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(ofd)) as z:
        return {n: z.read(n) for n in z.namelist()}


def sign(
    ofd: bytes,
    method: str | None = SM3_OID,
    digest: str = "sm3",
    *,
    file_ref: str = "/{}",
    list_at: str = "/Doc_0/Signs/Signatures.xml",
    protected: tuple[str, ...] = PROTECTED,
) -> bytes:
    """The OFD with one signature over its document, resources and page."""
    parts = entries(ofd)
    refs = "".join(
        f'<ofd:Reference FileRef="{file_ref.format(p)}"><ofd:CheckValue>'
        f"{base64.b64encode(hashlib.new(digest, parts[p]).digest()).decode()}</ofd:CheckValue></ofd:Reference>"
        for p in protected
    )
    check_method = f' CheckMethod="{method}"' if method else ""
    ns = 'xmlns:ofd="http://www.ofdspec.org/2016"'
    parts["OFD.xml"] = parts["OFD.xml"].replace(
        b"</ofd:DocBody>", f"<ofd:Signatures>{list_at}</ofd:Signatures></ofd:DocBody>".encode()
    )
    parts["Doc_0/Signs/Signatures.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><ofd:Signatures {ns}><ofd:MaxSignId>1</ofd:MaxSignId>'
        '<ofd:Signature ID="1" Type="Seal" BaseLoc="Sign_0/Signature.xml"/></ofd:Signatures>'
    ).encode()
    parts["Doc_0/Signs/Sign_0/Signature.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><ofd:Signature {ns}><ofd:SignedInfo>'
        '<ofd:Provider ProviderName="sample tax platform"/><ofd:SignatureMethod>1.2.156.10197.1.501</ofd:SignatureMethod>'
        f"<ofd:References{check_method}>{refs}</ofd:References>"
        '<ofd:StampAnnot ID="1" PageRef="1" Boundary="150 10 40 25"/></ofd:SignedInfo>'
        "<ofd:SignedValue>SignedValue.dat</ofd:SignedValue></ofd:Signature>"
    ).encode()
    parts["Doc_0/Signs/Sign_0/SignedValue.dat"] = b"\x30\x00"  # placeholder: the SM2 value is not checked
    return zipped(parts)


def tampered(ofd: bytes, part: str = "Doc_0/Pages/Page_0/Content.xml") -> bytes:
    parts = entries(ofd)
    parts[part] = parts[part].replace("¥".encode(), "¥1".encode())  # a digit before the printed 价税合计
    assert parts[part] != entries(ofd)[part]
    return zipped(parts)


def test_an_unsigned_ofd_has_no_signature_to_check() -> None:
    assert check_signatures(einvoice_ofd(INVOICE)) == []
    assert altered_after_signing(einvoice_ofd(INVOICE)) is None


@pytest.mark.parametrize(
    ("method", "digest", "file_ref"),
    [
        (SM3_OID, "sm3", "/{}"),
        ("SM3", "sm3", "{}"),  # root path written without its "/"
        ("2.16.840.1.101.3.4.2.1", "sha256", "/{}"),
        (None, "sha256", "/{}"),  # no CheckMethod: the 32-byte value is tried as SM3 and SHA-256
        (None, "md5", "/{}"),
        ("SHA1", "sha1", "../../../{}"),  # relative to Doc_0/Signs/Sign_0/Signature.xml
    ],
)
def test_every_protected_part_unchanged_is_intact(method: str | None, digest: str, file_ref: str) -> None:
    signed = sign(einvoice_ofd(INVOICE), method, digest, file_ref=file_ref)
    (check,) = check_signatures(signed)
    assert (check.signature, check.parts, check.changed, check.unchecked) == (
        "Doc_0/Signs/Sign_0/Signature.xml",
        3,
        (),
        None,
    )
    assert altered_after_signing(signed) is None


def test_a_part_changed_after_signing_is_named_with_its_digest() -> None:
    altered = tampered(sign(einvoice_ofd(INVOICE)))
    (check,) = check_signatures(altered)
    assert check.changed == ("Doc_0/Pages/Page_0/Content.xml (SM3 differs)",)
    assert altered_after_signing(altered) == (
        "signature Doc_0/Signs/Sign_0/Signature.xml covers Doc_0/Pages/Page_0/Content.xml (SM3 differs)"
    )


def test_a_signed_part_larger_than_what_is_read_into_memory_is_hashed_streamed() -> None:
    parts = entries(einvoice_ofd(INVOICE))
    scan = bytes(range(256)) * (6 * 4096)  # a 6 MiB page image, more than MAX_ENTRY
    assert len(scan) > ofd_reading.MAX_ENTRY
    parts["Doc_0/Res/scan.bin"] = scan
    signed = sign(zipped(parts), protected=(*PROTECTED, "Doc_0/Res/scan.bin"))
    (check,) = check_signatures(signed)
    assert (check.parts, check.changed) == (4, ())
    parts = entries(signed)
    parts["Doc_0/Res/scan.bin"] = scan[:-1] + b"!"
    assert check_signatures(zipped(parts))[0].changed == ("Doc_0/Res/scan.bin (SM3 differs)",)


def test_a_protected_part_removed_or_a_method_unknown() -> None:
    parts = entries(sign(einvoice_ofd(INVOICE)))
    del parts["Doc_0/PublicRes.xml"]
    assert check_signatures(zipped(parts))[0].changed == ("/Doc_0/PublicRes.xml (missing)",)
    (unknown,) = check_signatures(sign(einvoice_ofd(INVOICE), "1.2.3.4", "sha256"))
    assert unknown.parts == 0 and unknown.unchecked == "CheckMethod '1.2.3.4' is not one this check knows"
    assert altered_after_signing(sign(einvoice_ofd(INVOICE), "1.2.3.4", "sha256")) is None  # cannot say


def test_a_signature_part_that_is_not_xml_is_unreadable() -> None:
    parts = entries(sign(einvoice_ofd(INVOICE)))
    parts["Doc_0/Signs/Sign_0/Signature.xml"] = b"<ofd:Signature"
    with pytest.raises(Unreadable, match="Signature.xml is not well-formed XML"):
        check_signatures(zipped(parts))


def test_the_archive_step_refuses_an_ofd_changed_after_signing_and_archives_the_signed_one(hub: Hub) -> None:
    seed(hub, vouchers=120, bad_records=False, einvoices=True)
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        rows = erp.execute(
            "select id, voucher_id, storage_path, file_name from erp_attachment "
            "where mime_type = 'application/ofd' order by id limit 2"
        ).fetchall()
        (ok_id, ok_voucher, ok_rel, ok_name), (bad_id, bad_voucher, bad_rel, bad_name) = rows
        root = hub.home / "sample_erp" / "attachments"
        for att_id, rel, make in ((ok_id, ok_rel, sign), (bad_id, bad_rel, lambda o: tampered(sign(o)))):
            data = make((root / rel).read_bytes())
            (root / rel).write_bytes(data)
            erp.execute("update erp_attachment set size = ? where id = ?", (len(data), att_id))
    run_sync("erp_sample", "run-1")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        archived = set(
            s.execute(
                select(ArchiveRecordRow.business_id).where(ArchiveRecordRow.status == "archived")
            ).scalars()
        )
        reasons = {q.business_id: q.reason for q in s.execute(select(QuarantineRow)).scalars()}
        (code,) = s.execute(
            select(ArchiveRecordRow.archival_code).where(ArchiveRecordRow.business_id == str(ok_voucher))
        ).one()
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()
    # The package records both checks as 业务行为 检测 in its DA/T 94 metadata.
    (package,) = [p for p in published_packages(hub.settings.archive_root) if p.parent.name == code]
    metadata = ElementTree.fromstring((package / "data" / "metadata.xml").read_bytes())
    checks = [
        b.findtext("{*}行为描述")
        for b in metadata.findall(".//{*}业务行为")
        if b.findtext("{*}行为") == "检测"
    ]
    number = ok_name.removeprefix("数电票_").removesuffix(".ofd")
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:  # its OFD, and its XML if it has one
        names = [
            n
            for (n,) in erp.execute(
                "select file_name from erp_attachment where voucher_id = ? order by id", (ok_voucher,)
            )
        ]
    carriers = ", ".join(f"附件 {i} {n}" for i, n in enumerate(names, start=1))
    assert checks == [
        f"电子签章: 附件 1 {ok_name}: 签章 Doc_0/Signs/Sign_0/Signature.xml 保护的 3 个部件自签署后未改动 (签名值与印章证书未验证)",
        f"发票查重 (财会〔2020〕6号): 发票 No.{number} ({carriers}) 未被其他记录入账",
    ]
    assert str(ok_voucher) in archived and str(bad_voucher) not in archived
    assert reasons[str(bad_voucher)] == (
        f"attachment 1 {bad_name!r} at {root / bad_rel} was changed after it was signed "
        "(真实性: the OFD's 电子签章 no longer matches): signature Doc_0/Signs/Sign_0/Signature.xml covers "
        "Doc_0/Pages/Page_0/Content.xml (SM3 differs)"
    )
