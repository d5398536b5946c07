"""`archive-hub loan ...` and `archive-hub usage`: 借阅 and the 利用登记簿 (every consultation, copy and loan).

A loan is a verified copy with a borrower and a due date; its return re-hashes the copy. The register is
read from the hash-chained event log, where `show` (查阅), `copy` (复制) and `loan` (借阅, 归还) write,
so it cannot be edited apart from the chain that `verify` checks.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from archive_hub.cli_common import console, err
from archive_hub.cli_common import open_catalog as _catalog
from archive_hub.settings import Settings

loan_app = typer.Typer(
    help="借阅: lend a verified copy until a due date; check it when it comes back.", no_args_is_help=True
)


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


@loan_app.command("out")
def loan_out(
    code: Annotated[str, typer.Argument(help="档号, exactly")],
    destination: Annotated[
        Path, typer.Argument(help="folder the borrower gets the copy in (created if missing)")
    ],
    to: Annotated[str, typer.Option("--to", help="the borrower: name and unit")],
    until: Annotated[str, typer.Option("--until", help="due date, YYYY-MM-DD")],
    purpose: Annotated[str, typer.Option(help="why it is borrowed (利用目的)")],
) -> None:
    """Lend the current version: a copy verified against the catalog, registered with borrower and due date."""
    from archive_hub.copies import requester

    requester()  # who lends or takes back is known (with SSO: signed in) before the catalog is locked
    from archive_hub.catalog.history import record_history
    from archive_hub.loans import LoanRefused, lend

    if not purpose.strip():
        raise typer.BadParameter("say why it is borrowed", param_hint="--purpose")
    due = _date(until, "--until")
    catalog = _catalog()
    with catalog.reading() as session:
        history = record_history(session, code)
    if history is None:
        err.print(f"[red]error:[/red] no record with 档号 {code!r} in the catalog", highlight=False)
        raise typer.Exit(2)
    try:
        loan = lend(
            catalog,
            Settings.from_env().archive_root,
            history,
            destination,
            borrower=to,
            purpose=purpose,
            due=due,
        )
    except LoanRefused as exc:
        err.print(f"[red]refused:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"loan {loan.id}: {code} v{loan.version} lent to {loan.borrower} until {loan.due} (verified copy: {loan.path}); "
        f"`archive-hub loan return {loan.id}` checks it back",
        highlight=False,
        soft_wrap=True,
    )


@loan_app.command("return")
def loan_return(loan_id: Annotated[int, typer.Argument(help="the loan's number")]) -> None:
    """Close a loan: the copy is re-hashed; intact, it is removed; changed or gone, that is registered (exit 3)."""
    from archive_hub.copies import requester

    requester()  # who lends or takes back is known (with SSO: signed in) before the catalog is locked
    from archive_hub.loans import LoanRefused, return_loan

    try:
        done = return_loan(_catalog(), loan_id)
    except LoanRefused as exc:
        err.print(f"[red]refused:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    loan = done.loan
    if done.intact:
        console.print(
            f"loan {loan_id}: {loan.archival_code} returned intact; the copy was removed", highlight=False
        )
        return
    for problem in done.problems:
        err.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
    err.print(
        f"loan {loan_id}: {loan.archival_code} returned {loan.return_state}; registered, the copy is kept as it is "
        "for inspection, the archived original is untouched",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(3)


@loan_app.command("list")
def loan_list(
    overdue: Annotated[bool, typer.Option("--overdue", help="only loans past their due date")] = False,
    all_loans: Annotated[bool, typer.Option("--all", help="returned loans too")] = False,
) -> None:
    """Loans out now (or --all, or --overdue), with borrower, purpose and due date."""
    from archive_hub.loans import open_loans

    today = dt.date.today()
    with _catalog().reading() as session:
        loans = open_loans(session, overdue_on=today if overdue else None, all_loans=all_loans)
    table = Table(title=f"{len(loans)} loan(s)" + (" overdue" if overdue else ""))
    for col in ("no.", "档号", "borrower", "purpose", "lent", "due", "returned"):
        table.add_column(col)
    for loan in loans:
        late = loan.returned_at is None and loan.due < today
        table.add_row(
            str(loan.id),
            f"{loan.archival_code} v{loan.version}",
            loan.borrower,
            loan.purpose,
            f"{loan.lent_at:%Y-%m-%d} {loan.lent_by}",
            f"[red]{loan.due} overdue[/red]" if late else str(loan.due),
            f"{loan.returned_at:%Y-%m-%d} {loan.return_state}" if loan.returned_at else "",
        )
    console.print(table)


def usage(
    code: Annotated[
        str | None, typer.Option("--code", help="only 档号 starting with this (a fonds, a year, a class)")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="from this date, YYYY-MM-DD")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines, one per entry")] = False,
) -> None:
    """利用登记簿: every consultation (show), copy and loan, with who, why and when, from the event chain."""
    from archive_hub.catalog.usage import usage_entries

    with _catalog().reading() as session:
        entries = usage_entries(session, code, _date(since, "--since") if since else None)
    if as_json:
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False))
        return
    table = Table(title=f"利用登记簿: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    for col in ("at UTC", "利用", "档号", "by", "purpose / borrower", "detail"):
        table.add_column(col, overflow="fold")
    for entry in entries:
        extra = entry["detail"]
        table.add_row(
            entry["at"].replace("T", " ")[:16],
            entry["kind"] + (f" #{entry['loan']}" if entry["loan"] else ""),
            entry["archival_code"],
            entry["by"] or "",
            " / ".join(x for x in (entry["purpose"], entry["borrower"]) if x),
            ", ".join(
                f"{k}={v}" for k, v in extra.items() if k in ("version", "destination", "due", "state")
            ),
        )
    console.print(table)
