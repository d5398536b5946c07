"""The 银行存款余额调节表 for people: on the console in the form accountants sign, and as a workbook."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from rich.table import Table

from archive_hub.bank_reconciliation import KINDS, BankReconciliation
from archive_hub.cli_common import console
from archive_hub.workbooks import BOLD, save_workbook


def _money(d: Decimal | None) -> str:
    return "unknown" if d is None else f"{d:,.2f}"


def _rows(r: BankReconciliation) -> list[tuple[str, str]]:
    """The table as accountants sign it: the bank's side, then the books' side, each adjusted."""
    return [
        ("银行对账单余额", _money(r.bank_balance)),
        (f"加: {KINDS['book_in']}", _money(r.total("book_in"))),
        (f"减: {KINDS['book_out']}", _money(r.total("book_out"))),
        ("调节后的存款余额 (银行)", _money(r.adjusted_bank)),
        ("企业银行存款日记账余额", _money(r.book_balance)),
        (f"加: {KINDS['bank_in']}", _money(r.total("bank_in"))),
        (f"减: {KINDS['bank_out']}", _money(r.total("bank_out"))),
        ("调节后的存款余额 (企业)", _money(r.adjusted_books)),
    ]


def print_report(r: BankReconciliation) -> None:
    a = r.account
    table = Table(title=f"银行存款余额调节表 {r.on}\n{a.name} {a.account} ({a.ledger_account}, {a.currency})")
    table.add_column("项目")
    table.add_column("金额", justify="right")
    for n, row in enumerate(_rows(r)):
        table.add_row(*row, end_section=n == 3, style="bold" if n in (3, 7) else None)
    console.print(table)
    if r.outstanding:
        console.print("未达账项 (date, amount, where, what, and whether the other side has booked it since):")
    for o in r.outstanding:
        other = "the books" if o.kind.startswith("bank") else "the bank"
        settled = f"{other} booked it on {o.settled_on}" if o.settled_on else f"not in {other} yet"
        console.print(
            f"  {KINDS[o.kind]}  {o.date}  {o.amount:>14,.2f}  {o.reference}  {o.text}  ({settled})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"read {len(r.statements)} statement(s) and {r.vouchers} voucher(s) from the archive; "
        f"{r.matched} bank entries up to {r.on} matched by the books",
        highlight=False,
    )
    for problem in r.problems:
        console.print(f"[red]problem[/red]: {problem}", highlight=False, soft_wrap=True)
    for o in r.stale:
        console.print(
            f"[yellow]outstanding for {o.age_days} days[/yellow] (查明原因): {KINDS[o.kind]} {o.date} "
            f"{o.amount:,.2f} {o.reference}",
            highlight=False,
            soft_wrap=True,
        )
    if r.balanced:
        console.print("[green]balanced[/green]: the adjusted balances agree")
    elif r.difference is not None and r.difference != 0:
        console.print(f"[red]not balanced[/red]: the adjusted balances differ by {r.difference:,.2f}")


def write_xlsx(reports: list[BankReconciliation], path: Path) -> Path:
    """One sheet per account: the table on top, then every 未达账项; saved whole or not at all."""
    book = Workbook()
    book.remove(book.active)
    for r in reports:
        sheet = book.create_sheet(f"{r.account.ledger_account} {r.on}"[:31])
        sheet.append(["银行存款余额调节表", r.account.name, r.account.account, r.account.currency, str(r.on)])
        sheet.append([])
        sheet.append(["项目", "金额"])
        for row in _rows(r):
            sheet.append(list(row))
        sheet.append(["balanced" if r.balanced else "NOT balanced", str(r.difference)])
        sheet.append([])
        sheet.append(["未达账项", "date", "amount", "reference", "text", "settled", "age (days)"])
        header = sheet.max_row
        for o in r.outstanding:
            sheet.append([KINDS[o.kind], o.date, o.amount, o.reference, o.text, o.settled_on, o.age_days])
        for problem in r.problems:
            sheet.append(["problem", problem])
        for cell in (*sheet[1], *sheet[3], *sheet[header]):
            cell.font = BOLD
    return save_workbook(book, path)
