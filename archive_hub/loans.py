"""借阅: an electronic loan is a verified copy handed out until a due date, and checked when it comes back.

《会计档案管理办法》 asks that every loan be registered, and that borrowed archives be neither altered nor
kept. The loan is a copy made exactly like `archive-hub copy` (verified against the catalog before it is
handed out), registered with the borrower, the purpose and the due date. On return the copy is re-hashed
against the catalog: an intact copy is removed and the loan closed; a copy that changed is kept where it
is as evidence, the loan is closed as altered, and the changed files are named. The original is never
touched either way. Loans past their due date are listed as overdue.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.history import RecordHistory
from archive_hub.catalog.models import FileRow, LoanRow, PackageRow, utcnow
from archive_hub.catalog.packages import expected_hashes
from archive_hub.copies import CopyMade, CopyRefused, copy_record, requester
from archive_sink.filesystem import verify_package_dir


class LoanRefused(ValueError):
    """The loan or the return cannot be registered as asked; nothing changed."""


@dataclass
class Returned:
    loan: LoanRow
    intact: bool
    problems: list[str]


def lend(
    catalog: Catalog,
    archive_root: Path,
    history: RecordHistory,
    destination: Path,
    *,
    borrower: str,
    purpose: str,
    due: dt.date,
) -> LoanRow:
    """The current version, copied and verified, registered as a loan in the same transaction as its event."""
    if not borrower.strip():
        raise LoanRefused("name the borrower (--to)")
    if due < dt.date.today():
        raise LoanRefused(f"the due date {due} has passed already")
    loans: list[LoanRow] = []

    def register(session: Session, made: list[CopyMade]) -> dict[str, object]:
        (m,) = made
        loan = LoanRow(
            record_id=history.record.id,
            archival_code=history.record.archival_code,
            version=m.version,
            borrower=borrower.strip(),
            purpose=purpose.strip(),
            lent_by=requester(),
            due=due,
            path=str(m.path.resolve()),
        )
        session.add(loan)
        session.flush()
        loans.append(loan)
        return {"loan": loan.id, "borrower": loan.borrower, "due": due.isoformat()}

    try:
        copy_record(catalog, archive_root, history, destination, purpose, kind="lent", register=register)
    except CopyRefused as exc:
        raise LoanRefused(str(exc)) from None
    return loans[0]


def return_loan(catalog: Catalog, loan_id: int) -> Returned:
    """Re-hash the copy against the catalog; remove it when intact, keep it as evidence when not."""
    with catalog.reading() as session:
        loan = session.get(LoanRow, loan_id)
        if loan is None:
            raise LoanRefused(f"no loan {loan_id} (`archive-hub loan list --all` shows every loan)")
        if loan.returned_at is not None:
            raise LoanRefused(
                f"loan {loan_id} was returned on {loan.returned_at:%Y-%m-%d} ({loan.return_state})"
            )
        expected = expected_hashes(
            session.execute(
                select(FileRow)
                .join(PackageRow, PackageRow.id == FileRow.package_id)
                .where(PackageRow.record_id == loan.record_id, PackageRow.version == loan.version)
            ).scalars()
        )
    copy = Path(loan.path)
    if not copy.is_dir():
        problems = [f"the copy is not at {copy} any more: it was not handed back"]
        state = "missing"
    else:
        problems = [f"{p.path}: {p.reason}" for p in verify_package_dir(copy, expected, loan.archival_code)]
        state = "altered" if problems else "intact"
    with catalog.transaction() as session:
        row = session.execute(select(LoanRow).where(LoanRow.id == loan_id).with_for_update()).scalar_one()
        if row.returned_at is not None:
            raise LoanRefused(f"loan {loan_id} was returned meanwhile ({row.return_state})")
        row.returned_at, row.return_state, row.return_problems = utcnow(), state, "\n".join(problems)
        append(
            session,
            [
                Event(
                    "returned",
                    row.archival_code,
                    {
                        "loan": row.id,
                        "state": state,
                        "problems": problems[:20],
                        "by": requester(),
                        "overdue_days": max((dt.date.today() - row.due).days, 0),
                    },
                )
            ],
        )
        loan = row
    if state == "intact":
        shutil.rmtree(copy)  # the borrower's copy ends with the loan
    return Returned(loan, state == "intact", problems)


def open_loans(
    session: Session, *, overdue_on: dt.date | None = None, all_loans: bool = False
) -> list[LoanRow]:
    query = select(LoanRow).order_by(LoanRow.id)
    if not all_loans:
        query = query.where(LoanRow.returned_at.is_(None))
    if overdue_on is not None:
        query = query.where(LoanRow.returned_at.is_(None), LoanRow.due < overdue_on)
    return list(session.execute(query).scalars())
