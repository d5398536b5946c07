"""Sample 数电票 (全面数字化的电子发票) in the two structured carriers the tax platform hands out.

Why: an invoice reaches accounting as XML, OFD and PDF at once, and the double booking the hub must
catch (财会〔2020〕6号) is the same invoice in another carrier on a second voucher. The sample ERP and
the tests need both carriers of one invoice, built the way the platform builds them:

- XML: root ``EInvoice`` with ``Header``, ``EInvoiceData`` (seller, buyer, basic information, items)
  and ``TaxSupervisionInfo`` (``InvoiceNumber``, ``IssueTime``, the tax bureau).
- OFD (GB/T 33190): a zip whose first entry is ``OFD.xml``; its ``DocInfo/CustomDatas`` index the
  invoice (发票号码, 开票日期, 合计金额, 合计税额, 价税合计, the two parties' tax ids), and one page draws
  the invoice's text.

Fictitious parties and numbers only.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

SELLER = ("苏州恒信机电设备有限公司", "91320505MA1TEST01X")
BUYER = ("华东精密制造有限公司", "91320500MA1TEST00J")


@dataclass(frozen=True)
class SampleInvoice:
    number: str  # 20 digits
    issued: date
    item: str  # e.g. *金属制品*轴承
    amount: Decimal  # 不含税金额
    tax: Decimal
    seller: tuple[str, str] = SELLER  # name, tax id
    buyer: tuple[str, str] = BUYER

    @property
    def total(self) -> Decimal:
        return self.amount + self.tax


def einvoice_xml(inv: SampleInvoice) -> bytes:
    """The 数电票 XML as the platform's download has it."""
    seller, seller_id = inv.seller
    buyer, buyer_id = inv.buyer
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<EInvoice>
  <Header>
    <EIid>{inv.number}</EIid>
    <EInvoiceTag>SWEI3200</EInvoiceTag>
    <Version>0.1</Version>
    <InherentLabel><EInvoiceType><LabelCode>01</LabelCode><LabelName>增值税专用发票</LabelName></EInvoiceType></InherentLabel>
  </Header>
  <EInvoiceData>
    <SellerInformation><SellerIdNum>{seller_id}</SellerIdNum><SellerName>{escape(seller)}</SellerName></SellerInformation>
    <BuyerInformation><BuyerIdNum>{buyer_id}</BuyerIdNum><BuyerName>{escape(buyer)}</BuyerName></BuyerInformation>
    <BasicInformation>
      <TotalAmWithoutTax>{inv.amount:.2f}</TotalAmWithoutTax>
      <TotalTaxAm>{inv.tax:.2f}</TotalTaxAm>
      <TotalTax-includedAmount>{inv.total:.2f}</TotalTax-includedAmount>
      <RequestTime>{inv.issued:%Y-%m-%d} 10:21:07</RequestTime>
    </BasicInformation>
    <IssuItemInformation>
      <ItemName>{escape(inv.item)}</ItemName><MeaUnits>批</MeaUnits><Quantity>1</Quantity>
      <UnPrice>{inv.amount:.2f}</UnPrice><Amount>{inv.amount:.2f}</Amount><TaxRate>0.13</TaxRate>
      <ComTaxAm>{inv.tax:.2f}</ComTaxAm><TotaltaxIncludedAmount>{inv.total:.2f}</TotaltaxIncludedAmount>
    </IssuItemInformation>
  </EInvoiceData>
  <TaxSupervisionInfo>
    <InvoiceNumber>{inv.number}</InvoiceNumber>
    <IssueTime>{inv.issued:%Y-%m-%d} 10:21:07</IssueTime>
    <TaxBureauCode>13200000000</TaxBureauCode>
    <TaxBureauName>国家税务总局江苏省税务局</TaxBureauName>
  </TaxSupervisionInfo>
</EInvoice>
""".encode()


def _custom(inv: SampleInvoice) -> str:
    data = {
        "发票号码": inv.number,
        "开票日期": f"{inv.issued:%Y年%m月%d日}",
        "合计金额": f"{inv.amount:.2f}",
        "合计税额": f"{inv.tax:.2f}",
        "价税合计": f"{inv.total:.2f}",
        "购买方纳税人识别号": inv.buyer[1],
        "销售方纳税人识别号": inv.seller[1],
    }
    return "".join(
        f"<ofd:CustomData Name={quoteattr(k)}>{escape(v)}</ofd:CustomData>" for k, v in data.items()
    )


def einvoice_ofd(inv: SampleInvoice) -> bytes:
    """The 数电票 OFD: OFD.xml first (its name in the first local header is how a reader knows an OFD)."""
    ns = 'xmlns:ofd="http://www.ofdspec.org/2016"'
    lines = [
        "电子发票（增值税专用发票）",
        f"发票号码：{inv.number}",
        f"开票日期：{inv.issued:%Y年%m月%d日}",
        f"购买方：{inv.buyer[0]}  {inv.buyer[1]}",
        f"销售方：{inv.seller[0]}  {inv.seller[1]}",
        f"{inv.item}  金额 {inv.amount:.2f}  税率 13%  税额 {inv.tax:.2f}",
        f"价税合计（小写）¥{inv.total:.2f}",
    ]
    texts = "".join(
        f'<ofd:TextObject ID="{10 + i}" Boundary="10 {15 + 9 * i} 190 8" Font="2" Size="4.2">'
        f'<ofd:TextCode X="0" Y="5">{escape(t)}</ofd:TextCode></ofd:TextObject>'
        for i, t in enumerate(lines)
    )
    entries = {
        "OFD.xml": f'<?xml version="1.0" encoding="UTF-8"?><ofd:OFD {ns} Version="1.1" DocType="OFD"><ofd:DocBody>'
        f"<ofd:DocInfo><ofd:DocID>{inv.number}</ofd:DocID><ofd:CreationDate>{inv.issued:%Y-%m-%d}</ofd:CreationDate>"
        f"<ofd:Creator>sample tax platform</ofd:Creator><ofd:CustomDatas>{_custom(inv)}</ofd:CustomDatas></ofd:DocInfo>"
        "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>",
        "Doc_0/Document.xml": f'<?xml version="1.0" encoding="UTF-8"?><ofd:Document {ns}><ofd:CommonData>'
        "<ofd:MaxUnitID>20</ofd:MaxUnitID><ofd:PageArea><ofd:PhysicalBox>0 0 210 140</ofd:PhysicalBox></ofd:PageArea>"
        "<ofd:PublicRes>PublicRes.xml</ofd:PublicRes></ofd:CommonData>"
        '<ofd:Pages><ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/></ofd:Pages></ofd:Document>',
        "Doc_0/PublicRes.xml": f'<?xml version="1.0" encoding="UTF-8"?><ofd:Res {ns} BaseLoc="Res">'
        '<ofd:Fonts><ofd:Font ID="2" FontName="宋体" FamilyName="宋体"/></ofd:Fonts></ofd:Res>',
        "Doc_0/Pages/Page_0/Content.xml": f'<?xml version="1.0" encoding="UTF-8"?><ofd:Page {ns}><ofd:Content>'
        f'<ofd:Layer ID="3">{texts}</ofd:Layer></ofd:Content></ofd:Page>',
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in entries.items():
            info = zipfile.ZipInfo(
                name, date_time=(inv.issued.year, inv.issued.month, inv.issued.day, 10, 21, 8)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode())
    return buffer.getvalue()
