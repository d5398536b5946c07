"""银行存款余额调节表: the bank statements in the archive against the books in the archive.

Why: the auditor's second reconciliation (DESIGN §1, bank vs books). Both sides are read from what the
hub archived, not from the live systems: the bank side from the archived statements' entries
(`bank_statement_entry`) and balances, the book side from the archived vouchers' lines on the bank's
ledger account (科目), each voucher.xml checked against its catalog hash before it is believed. Every
item on the table therefore names a 档号 the auditor can open.

A book line and a bank entry of the same signed amount pair up when their dates are at most
`match_days` apart, nearest date first. What stays unpaired on the day of the table are the 未达账项:

* 银行已收、企业未收 and 银行已付、企业未付: entries the bank booked that the books had not by then;
* 企业已收、银行未收 and 企业已付、银行未付: lines the books carried that the bank had not by then.

Adjusted bank balance = bank balance + 企业已收银行未收 − 企业已付银行未付; adjusted book balance =
book balance + 银行已收企业未收 − 银行已付企业未付. The two agree when nothing is missing; a difference,
a break in the statements or an item outstanding longer than `stale_days` is reported, never hidden.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from archive_hub.archived_vouchers import NS, archived_vouchers
from archive_hub.bank_accounts import BankAccount
from archive_hub.catalog.models import ArchiveRecordRow, BankStatementEntryRow, BankStatementRow
from archive_hub.settings import Settings

CENT = Decimal("0.01")
# statements only: intraday reports (MT942, camt.052) and notifications (camt.054) carry no day-end balance
_NOT_STATEMENTS = ("mt942", "camt.052", "camt.054")

KINDS = {
    "bank_in": "银行已收、企业未收",
    "bank_out": "银行已付、企业未付",
    "book_in": "企业已收、银行未收",
    "book_out": "企业已付、银行未付",
}


@dataclass
class BookLine:
    """A line of an archived voucher on the bank's ledger account; amount signed, money in positive."""

    date: dt.date
    amount: Decimal
    archival_code: str
    voucher_no: str
    summary: str
    matched: BankLine | None = None


@dataclass
class BankLine:
    date: dt.date
    amount: Decimal  # signed, credit (money in) positive
    reference: str
    counterparty: str
    text: str
    archival_code: str  # 档号 of the statement package
    matched: BookLine | None = None


@dataclass
class Outstanding:
    """One 未达账项 on the day of the table."""

    kind: str  # key of KINDS
    date: dt.date
    amount: Decimal  # as booked by its side, signed
    reference: str  # 档号 and 凭证号 (books) or bank reference and statement 档号 (bank)
    text: str
    settled_on: dt.date | None  # when the other side booked it, if it has by now
    age_days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "kind_name": KINDS[self.kind],
            "date": self.date.isoformat(),
            "amount": str(self.amount),
            "reference": self.reference,
            "text": self.text,
            "settled_on": self.settled_on.isoformat() if self.settled_on else None,
            "age_days": self.age_days,
        }


@dataclass
class BankReconciliation:
    account: BankAccount
    on: dt.date
    bank_balance: Decimal | None  # None: the archived statements do not tell the balance on that day
    book_balance: Decimal
    outstanding: list[Outstanding] = field(default_factory=list)
    matched: int = 0
    statements: list[str] = field(default_factory=list)  # 档号 of the statements read
    vouchers: int = 0  # archived vouchers read
    problems: list[str] = field(default_factory=list)

    def total(self, kind: str) -> Decimal:
        return sum((abs(o.amount) for o in self.outstanding if o.kind == kind), Decimal(0))

    @property
    def adjusted_bank(self) -> Decimal | None:
        if self.bank_balance is None:
            return None
        return self.bank_balance + self.total("book_in") - self.total("book_out")

    @property
    def adjusted_books(self) -> Decimal:
        return self.book_balance + self.total("bank_in") - self.total("bank_out")

    @property
    def difference(self) -> Decimal | None:
        adjusted = self.adjusted_bank
        return None if adjusted is None else adjusted - self.adjusted_books

    @property
    def stale(self) -> list[Outstanding]:
        return [o for o in self.outstanding if o.settled_on is None and o.age_days > self.account.stale_days]

    @property
    def balanced(self) -> bool:
        return self.difference == 0 and not self.problems

    def as_dict(self) -> dict[str, Any]:
        def money(d: Decimal | None) -> str | None:
            return None if d is None else str(d.quantize(CENT))

        return {
            "account": self.account.account,
            "name": self.account.name,
            "currency": self.account.currency,
            "ledger_account": self.account.ledger_account,
            "on": self.on.isoformat(),
            "bank_balance": money(self.bank_balance),
            "book_balance": money(self.book_balance),
            **{f"total_{k}": money(self.total(k)) for k in KINDS},
            "adjusted_bank": money(self.adjusted_bank),
            "adjusted_books": money(self.adjusted_books),
            "difference": money(self.difference),
            "balanced": self.balanced,
            "matched": self.matched,
            "statements": self.statements,
            "vouchers": self.vouchers,
            "outstanding": [o.as_dict() for o in self.outstanding],
            "stale": len(self.stale),
            "problems": self.problems,
        }


def _statements(session: Session, acct: BankAccount) -> list[BankStatementRow]:
    rows = session.scalars(
        select(BankStatementRow)
        .where(BankStatementRow.account == acct.account, BankStatementRow.currency == acct.currency)
        .order_by(BankStatementRow.opening_date, BankStatementRow.closing_date, BankStatementRow.id)
    ).all()
    return [
        r
        for r in rows
        if not any(f in r.format.lower() for f in _NOT_STATEMENTS)
        and r.closing_date is not None
        and r.closing_date >= acct.opening_date
    ]


def _bank_balance(
    session: Session, chain: list[BankStatementRow], on: dt.date, problems: list[str]
) -> Decimal | None:
    """The balance at the end of `on`, from the statement that covers it; None (with the reason) if none does."""
    for prev, nxt in zip(chain, chain[1:], strict=False):
        if prev.closing_balance != nxt.opening_balance:
            problems.append(
                f"statements {prev.archival_code} (closing {prev.closing_balance} on {prev.closing_date}) and "
                f"{nxt.archival_code} (opening {nxt.opening_balance} on {nxt.opening_date}) do not continue "
                "each other: a statement is missing or overlaps"
            )
    if not chain or chain[0].opening_date is None:
        problems.append(f"no archived statement covers {on}")
        return None
    if on < chain[0].opening_date:  # the first statement opens with the balance of the days before it
        return Decimal(chain[0].opening_balance or 0)
    current = [s for s in chain if s.opening_date is not None and s.opening_date <= on][-1]
    if current.closing_date is not None and on < current.closing_date:
        booked = session.scalars(
            select(BankStatementEntryRow.amount).where(
                BankStatementEntryRow.statement_fingerprint == current.fingerprint,
                BankStatementEntryRow.booking_date <= on,
            )
        ).all()
        return Decimal(current.opening_balance or 0) + sum(booked, Decimal(0))
    later = [s for s in chain if s.opening_date is not None and s.opening_date > on]
    if on == current.closing_date or (later and later[0].opening_balance == current.closing_balance):
        return Decimal(current.closing_balance or 0)
    problems.append(
        f"the bank balance on {on} is unknown: the archived statements end on {current.closing_date} "
        f"({current.archival_code}); the next one is missing or quarantined"
    )
    return None


def _bank_lines(session: Session, acct: BankAccount, until: dt.date) -> list[BankLine]:
    rows = session.scalars(
        select(BankStatementEntryRow)
        .where(
            BankStatementEntryRow.account == acct.account,
            BankStatementEntryRow.currency == acct.currency,
            BankStatementEntryRow.booking_date >= acct.opening_date,
            BankStatementEntryRow.booking_date <= until,
        )
        .order_by(BankStatementEntryRow.booking_date, BankStatementEntryRow.id)
    ).all()
    return [
        BankLine(
            r.booking_date,
            Decimal(r.amount).quantize(CENT),
            r.bank_reference or r.end_to_end_id or "",
            r.counterparty_name or "",
            r.remittance or "",
            r.archival_code,
        )
        for r in rows
        if r.booking_date is not None
    ]


def _book_lines(
    session: Session, settings: Settings, acct: BankAccount, until: dt.date, problems: list[str]
) -> tuple[list[BookLine], int]:
    """Lines on the ledger account from every archived voucher of the books dated in the window."""
    where = and_(
        ArchiveRecordRow.source_id == acct.books,
        ArchiveRecordRow.status == "archived",
        ArchiveRecordRow.record_date >= acct.opening_date,
        ArchiveRecordRow.record_date <= until,
        ArchiveRecordRow.search_text.contains(acct.ledger_account, autoescape=True),
    )
    out: list[BookLine] = []
    vouchers = 0
    for v in archived_vouchers(session, settings, where, problems):
        vouchers += 1
        for line in v.lines():
            if line.findtext("v:科目编码", "", NS) != acct.ledger_account:
                continue
            amount = Decimal(line.findtext("v:借方金额", "0", NS)) - Decimal(
                line.findtext("v:贷方金额", "0", NS)
            )
            out.append(BookLine(v.date, amount, v.code, v.number, line.findtext("v:摘要", "", NS)))
    out.sort(key=lambda b: (b.date, b.archival_code))
    return out, vouchers


def _match(books: list[BookLine], bank: list[BankLine], days: int) -> None:
    """Pair equal amounts nearest in date, at most `days` apart; book lines in date order."""
    by_amount: dict[Decimal, list[BankLine]] = {}
    for b in bank:
        by_amount.setdefault(b.amount, []).append(b)
    for line in books:
        candidates = [
            b
            for b in by_amount.get(line.amount, [])
            if b.matched is None and abs((b.date - line.date).days) <= days
        ]
        if candidates:
            best = min(candidates, key=lambda b: (abs((b.date - line.date).days), b.date, b.reference))
            best.matched, line.matched = line, best


def reconcile_bank(
    session: Session, acct: BankAccount, on: dt.date, settings: Settings | None = None
) -> BankReconciliation:
    settings = settings or Settings.from_env()
    if on < acct.opening_date:
        raise ValueError(f"{on} is before the opening balance of {acct.account} ({acct.opening_date})")
    problems: list[str] = []
    chain = _statements(session, acct)
    bank_balance = _bank_balance(session, chain, on, problems)
    until = on + dt.timedelta(days=acct.match_days)
    books, vouchers = _book_lines(session, settings, acct, until, problems)
    bank = _bank_lines(session, acct, until)
    _match(books, bank, acct.match_days)
    report = BankReconciliation(
        account=acct,
        on=on,
        bank_balance=bank_balance,
        book_balance=acct.opening_balance + sum((b.amount for b in books if b.date <= on), Decimal(0)),
        statements=[s.archival_code for s in chain if s.opening_date is None or s.opening_date <= until],
        vouchers=vouchers,
        problems=problems,
    )
    for b in bank:
        if b.date <= on and (b.matched is None or b.matched.date > on):
            settled = b.matched.date if b.matched else None
            ref = f"{b.reference} ({b.archival_code})"
            text = " ".join(t for t in (b.counterparty, b.text) if t)
            kind = "bank_in" if b.amount > 0 else "bank_out"
            report.outstanding.append(
                Outstanding(kind, b.date, b.amount, ref, text, settled, (on - b.date).days)
            )
        elif b.date <= on:
            report.matched += 1
    for line in books:
        if line.date <= on and (line.matched is None or line.matched.date > on):
            settled = line.matched.date if line.matched else None
            ref = f"{line.archival_code} {line.voucher_no}"
            kind = "book_in" if line.amount > 0 else "book_out"
            report.outstanding.append(
                Outstanding(kind, line.date, line.amount, ref, line.summary, settled, (on - line.date).days)
            )
    report.outstanding.sort(key=lambda o: (list(KINDS).index(o.kind), o.date, o.reference))
    return report


def default_day(session: Session, acct: BankAccount) -> dt.date | None:
    """The last day the archived statements of the account close on: the natural day for the table."""
    chain = _statements(session, acct)
    return max((s.closing_date for s in chain if s.closing_date), default=None)


def month_ends(acct: BankAccount, last: dt.date) -> list[dt.date]:
    """Every month end from the opening balance's month up to `last`: the days a 调节表 is drawn up for (月末)."""
    out = []
    year, month = acct.opening_date.year, acct.opening_date.month
    while True:
        end = dt.date(year, month, calendar.monthrange(year, month)[1])
        if end > last:
            return out
        if end >= acct.opening_date:
            out.append(end)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
