"""A 银行存款余额调节表 kept as a record: 附表一 keeps it 10年 (其他会计资料), so a balanced table is kept in
the catalog as the XML it is archived as, and the registers source (connectors/registers) archives it."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.bank_reconciliation import CENT, KINDS, BankReconciliation
from archive_hub.catalog.models import BankReconciliationRow, utcnow


def register_key(account: str, on: dt.date) -> str:
    """The business id the registers source archives a kept table under."""
    return f"银行存款余额调节表-{account}-{on.isoformat()}"


def kept_days(session: Session, account: str) -> set[dt.date]:
    return set(
        session.scalars(select(BankReconciliationRow.on).where(BankReconciliationRow.account == account))
    )


def render_xml(r: BankReconciliation) -> bytes:
    """The table as XML (an archival format), elements named as the form names them; the same report gives
    the same bytes, so drawing up an unchanged table again archives nothing new."""

    def money(d: Decimal | None) -> str:
        return "" if d is None else str(d.quantize(CENT))

    a = r.account
    root = etree.Element("银行存款余额调节表", 账号=a.account, 币种=a.currency, 日期=r.on.isoformat())
    for tag, value in (("开户行及账户", a.name), ("科目", a.ledger_account), ("账簿来源", a.books)):
        etree.SubElement(root, tag).text = value
    bank = etree.SubElement(root, "银行")
    etree.SubElement(bank, "银行对账单余额").text = money(r.bank_balance)
    etree.SubElement(bank, "加", 项目=KINDS["book_in"]).text = money(r.total("book_in"))
    etree.SubElement(bank, "减", 项目=KINDS["book_out"]).text = money(r.total("book_out"))
    etree.SubElement(bank, "调节后的存款余额").text = money(r.adjusted_bank)
    books = etree.SubElement(root, "企业")
    etree.SubElement(books, "银行存款日记账余额").text = money(r.book_balance)
    etree.SubElement(books, "加", 项目=KINDS["bank_in"]).text = money(r.total("bank_in"))
    etree.SubElement(books, "减", 项目=KINDS["bank_out"]).text = money(r.total("bank_out"))
    etree.SubElement(books, "调节后的存款余额").text = money(r.adjusted_books)
    etree.SubElement(root, "结论").text = "相符" if r.balanced else f"不符, 差额 {money(r.difference)}"
    items = etree.SubElement(root, "未达账项")
    for o in r.outstanding:
        item = etree.SubElement(items, "项", 类别=KINDS[o.kind], 日期=o.date.isoformat(), 金额=str(o.amount))
        etree.SubElement(item, "出处").text = o.reference
        etree.SubElement(item, "摘要").text = o.text
        etree.SubElement(item, "对方入账日").text = o.settled_on.isoformat() if o.settled_on else ""
    basis = etree.SubElement(root, "依据", 凭证数=str(r.vouchers), 已勾对=str(r.matched))
    for code in r.statements:
        etree.SubElement(basis, "对账单", 档号=code)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def keep(session: Session, r: BankReconciliation, drawn_by: str) -> str:
    """Keep a balanced table for archiving (10年); returns its register key. A table that does not balance is
    a work item, not a record: it is refused."""
    if not r.balanced:
        raise ValueError(f"{r.account.account} on {r.on}: the table does not balance, so it is not kept")
    data = render_xml(r)
    digest = hashlib.sha256(data).hexdigest()
    row = session.scalars(
        select(BankReconciliationRow).where(
            BankReconciliationRow.account == r.account.account, BankReconciliationRow.on == r.on
        )
    ).one_or_none()
    if row is None:
        session.add(
            BankReconciliationRow(
                account=r.account.account, on=r.on, drawn_by=drawn_by, xml=data.decode(), sha256=digest
            )
        )
    elif row.sha256 != digest:  # drawn up again on changed books or statements: the new table replaces it
        row.drawn_by, row.drawn_at, row.xml, row.sha256 = drawn_by, utcnow(), data.decode(), digest
    return register_key(r.account.account, r.on)
