"""Which invoice an attachment is: the identity 财会〔2020〕6号 means by "booked once" (防止重复入账).

The same e-invoice reaches accounting in several carriers: the tax bureau's platform hands out a 数电票
(全面数字化的电子发票) as XML, OFD and PDF, and an employee may attach the OFD to one reimbursement and
the XML to the next. Their bytes differ, so the SHA-256 claim (catalog/claims.py) cannot see it; the
invoice's own number can. This module reads that number from the two structured carriers:

- 数电票 XML: root ``EInvoice``, the number at ``TaxSupervisionInfo/InvoiceNumber`` (20 digits), with
  ``IssueTime``, the seller's ``SellerIdNum`` and ``BasicInformation/TotalTax-includedAmount``.
- OFD (GB/T 33190): ``OFD.xml``'s ``DocInfo/CustomDatas`` carry 发票号码 (and, for the older 增值税电子
  发票, 发票代码), 开票日期, 价税合计 and 销售方纳税人识别号; a 数电票 OFD may instead embed its XML
  (``Doc_0/Attachs/…xml``).

A PDF carries the number only in its page text, which needs a text extractor per producer; it is not
read here, so a PDF invoice is booked once by its bytes alone. An OFD or XML that is no invoice (a
contract, a statement) has no identity. One that says it is an invoice but cannot be read is refused:
an unreadable archival file is no better than a missing one (可用性). XML is parsed defused (no DTD, no
entities) and an OFD's entries are read with a size limit (no zip bombs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archive_sink.formats import OFD, XML, Format, sniff
from archive_sink.ofd import OfdPackage, Unreadable, child_text, local, parse_xml

_NUMBER = re.compile(r"[0-9A-Za-z]{6,32}")
_CODE = re.compile(r"[0-9]{10,12}")


class InvoiceUnreadable(Unreadable):
    """The file presents itself as an e-invoice but its number cannot be read."""


@dataclass(frozen=True)
class EInvoice:
    """One e-invoice's identity and the few facts an auditor checks it by."""

    number: str  # 发票号码: 20 digits for a 数电票, 8 for the older kind (then with a code)
    code: str | None  # 发票代码 of the older 增值税电子发票; None for a 数电票
    carrier: str  # "数电票 XML" or "OFD"
    issued: str | None = None  # 开票日期 as the invoice prints it
    total: str | None = None  # 价税合计
    seller_tax_id: str | None = None  # 销售方纳税人识别号

    @property
    def key(self) -> str:
        """Unique nationwide: the 20-digit number of a 数电票, 代码-号码 of an older invoice."""
        return f"{self.code}-{self.number}" if self.code else self.number

    def label(self) -> str:
        return f"发票 {self.code + ' ' if self.code else ''}No.{self.number}"


def read_einvoice(data: bytes | OfdPackage, found: Format | None = None) -> EInvoice | None:
    """The invoice these bytes (or this opened OFD) are, None when they are no invoice (or a carrier not
    read here). `found`: what sniff() says of the bytes, when the caller has asked already."""
    if isinstance(data, OfdPackage):
        return _from_ofd(data)
    found = found or sniff(data)
    head = data[:4096]
    if found is XML or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<EInvoice"):  # a prolog is optional
        return _from_xml(data) if b"EInvoice" in head else None
    if found is OFD:
        return _from_ofd(OfdPackage(data))
    return None


def _checked(number: str | None, code: str | None, carrier: str, where: str) -> tuple[str, str | None]:
    if number is None:
        raise InvoiceUnreadable(f"{carrier} has no invoice number at {where}")
    if not _NUMBER.fullmatch(number):
        raise InvoiceUnreadable(
            f"{carrier} invoice number {number[:40]!r} at {where} is not an invoice number"
        )
    if code is not None and not _CODE.fullmatch(code):
        raise InvoiceUnreadable(f"{carrier} 发票代码 {code[:40]!r} is not 10 or 12 digits")
    return number, code


def _from_xml(data: bytes, carrier: str = "数电票 XML") -> EInvoice | None:
    root = parse_xml(data, carrier)
    if local(root.tag) != "EInvoice":
        return None
    number, _ = _checked(
        child_text(root, "TaxSupervisionInfo", "InvoiceNumber"),
        None,
        carrier,
        "EInvoice/TaxSupervisionInfo/InvoiceNumber",
    )
    issued = child_text(root, "TaxSupervisionInfo", "IssueTime") or child_text(
        root, "EInvoiceData", "BasicInformation", "RequestTime"
    )
    return EInvoice(
        number=number,
        code=None,
        carrier=carrier,
        issued=issued,
        total=child_text(root, "EInvoiceData", "BasicInformation", "TotalTax-includedAmount"),
        seller_tax_id=child_text(root, "EInvoiceData", "SellerInformation", "SellerIdNum"),
    )


def _from_ofd(package: OfdPackage) -> EInvoice | None:
    root = package.root
    custom: dict[str, str] = {}
    for node in root.iter():
        if local(node.tag) == "CustomData" and node.get("Name") and (node.text or "").strip():
            custom.setdefault(node.get("Name", "").strip(), (node.text or "").strip())
    if "发票号码" in custom:
        number, code = _checked(
            custom["发票号码"], custom.get("发票代码") or None, "OFD", "OFD.xml CustomData 发票号码"
        )
        return EInvoice(
            number=number,
            code=code,
            carrier="OFD",
            issued=custom.get("开票日期"),
            total=custom.get("价税合计") or custom.get("合计金额"),
            seller_tax_id=custom.get("销售方纳税人识别号"),
        )
    # A 数电票 OFD may carry its XML as an attachment instead of CustomData.
    for name in sorted(n for n in package.names if n.lower().endswith(".xml") and "/attach" in n.lower()):
        embedded = package.read(name)
        if b"EInvoice" in embedded[:4096]:
            return _from_xml(embedded, f"OFD (embedded {name})")
    return None
