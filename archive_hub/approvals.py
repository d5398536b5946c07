"""Approvals vs vouchers (审批单 ↔ 记账凭证): which voucher booked each archived OA approval.

An OA approval (报销, 付款 ...) is the 原始凭证 behind a voucher. Most ERPs do not carry the approval
number, so the pairing is the one an auditor makes by hand: the applicant (申请人) is the 职员 in the
voucher's 辅助核算 on an expense account, the approved amount equals that voucher's debits to those
accounts for that person, and the voucher is dated within `match_days` of the approval. Equal pairs
nearest in date win, one voucher per approval. Both sides are read from the archive: the approvals
from `oa_approval` (filled when they were archived), the vouchers from their archived XML, re-hashed
against the catalog before use.

Pairs found are kept (`oa_approval_link`) with one hash-chained event each, so `show` names the
related 件 and later runs do not pair them again. What is left is the auditor's list:
已审批未入账 (approved, no voucher yet, with its age) and 无审批的报销凭证 (an expense booked for a
person without an approval) from the day approvals moved to the OA system.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, or_, select, text
from sqlalchemy.orm import Session

from archive_hub.archived_vouchers import NS, archived_vouchers
from archive_hub.catalog import events
from archive_hub.catalog.models import ApprovalLinkRow, ApprovalRow, ArchiveRecordRow, EventRow, PackageRow
from archive_hub.settings import Settings
from canonical_model.record import AgentRole, ArchiveRecord
from connectors.errors import ConfigError

EMPLOYEE = "职员"
REVOKED_EVENT = "approval-revoked"  # the OA system says an archived approval was withdrawn after approval
BOOKS_TZ = ZoneInfo("Asia/Shanghai")  # the day of a report is the books' day, not the server's
_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"archive-hub:reconcile_approvals").digest()[:8], "big", signed=True
)


class ApprovalScope(BaseModel):
    """One OA source reconciled against one set of books (config/approval_reconciliation.yaml)."""

    model_config = ConfigDict(extra="forbid")

    source: str  # the OA source id
    books: str  # the ERP source whose archived vouchers are the books
    expense_accounts: list[str] = Field(min_length=1)  # 科目编码 prefixes an approval is booked to
    match_days: int = Field(default=15, ge=0, le=366)
    since: dt.date  # approvals moved to the OA system on this day: earlier vouchers need none


def load_scopes(settings: Settings) -> list[ApprovalScope]:
    path = settings.approvals_file
    if not path.is_file():
        return []
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return [ApprovalScope.model_validate(s) for s in doc.get("approvals") or []]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("approvals", str(path), f"cannot read: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError("approvals", f"approvals.{where}", f"{err['msg']} (in {path})") from None


# -- at archiving -----------------------------------------------------------------------------------
def record_archived(session: Session, source_id: str, items: list[tuple[ArchiveRecord, str, int]]) -> None:
    """The facts of each archived approval, inside the archive transaction."""
    for record, code, package_id in items:
        applicant = record.agent(AgentRole.HANDLER)
        session.add(
            ApprovalRow(
                source_id=source_id,
                approval_no=record.source.business_id,
                approval_name=(record.title.split(" ", 1)[0] or "审批")[:200],
                applicant=applicant.name if applicant else "",
                amount=record.amount_total,
                currency=record.currency,
                finished_on=record.date,
                archival_code=code,
                package_id=package_id,
            )
        )


# -- reconciliation ---------------------------------------------------------------------------------
@dataclass
class Approval:
    code: str
    number: str
    name: str
    applicant: str
    amount: Decimal | None
    finished_on: dt.date
    voucher: str | None = None  # 档号 of the voucher that booked it
    voucher_no: str = ""
    basis: str = ""
    new: bool = False  # paired by this run
    broken: bool = False  # a kept pair the current versions no longer bear out (a problem, not re-paired)
    revoked: bool = False  # 通过后撤销 after it was archived: it should not be booked (or be reversed)


@dataclass
class Expense:
    """One person's expense debits in one voucher: what an approval pairs with."""

    code: str  # 档号 of the voucher
    voucher_no: str
    date: dt.date
    employee: str
    amount: Decimal
    summary: str
    approvals: list[str] = field(default_factory=list)


@dataclass
class ApprovalReconciliation:
    scope: ApprovalScope
    on: dt.date
    approvals: list[Approval]
    expenses: list[Expense]
    vouchers_read: int
    problems: list[str]

    @property
    def unbooked(self) -> list[Approval]:
        return [a for a in self.approvals if a.voucher is None and not a.revoked]

    @property
    def revoked(self) -> list[Approval]:
        return [a for a in self.approvals if a.revoked]

    @property
    def matched(self) -> list[Approval]:
        return [a for a in self.approvals if a.voucher is not None and not a.broken and not a.revoked]

    @property
    def unapproved(self) -> list[Expense]:
        return [e for e in self.expenses if not e.approvals and e.date >= self.scope.since]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.scope.source,
            "books": self.scope.books,
            "on": self.on.isoformat(),
            "approvals": len(self.approvals),
            "matched": len(self.matched),
            "linked_now": sum(a.new for a in self.approvals),
            "vouchers_read": self.vouchers_read,
            "revoked": [
                {"档号": a.code, "审批单号": a.number, "applicant": a.applicant, "voucher": a.voucher}
                for a in self.revoked
            ],
            "unbooked": [
                {
                    "档号": a.code,
                    "审批单号": a.number,
                    "applicant": a.applicant,
                    "amount": str(a.amount) if a.amount is not None else None,
                    "finished_on": a.finished_on.isoformat(),
                    "age_days": (self.on - a.finished_on).days,
                }
                for a in self.unbooked
            ],
            "unapproved": [
                {
                    "档号": e.code,
                    "voucher_no": e.voucher_no,
                    "date": e.date.isoformat(),
                    "employee": e.employee,
                    "amount": str(e.amount),
                    "summary": e.summary,
                }
                for e in self.unapproved
            ],
            "problems": self.problems,
        }


def reconcile_approvals(
    session: Session,
    scope: ApprovalScope,
    settings: Settings,
    on: dt.date | None = None,
    *,
    link: bool = True,
) -> ApprovalReconciliation:
    """Pair the scope's archived approvals with its archived vouchers; keep new pairs when `link`."""
    on = on or dt.datetime.now(BOOKS_TZ).date()
    problems: list[str] = []
    if link and session.get_bind().dialect.name == "postgresql":
        # Two reconciliations at once (the DAG and a person) would both pair the same approval.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    approvals = _approvals(session, scope)
    if not approvals:
        return ApprovalReconciliation(scope, on, [], [], 0, problems)
    start = min(scope.since, min(a.finished_on for a in approvals)) - dt.timedelta(days=scope.match_days)
    expenses, read = _expenses(session, settings, scope, start, on, problems)
    by_person = {(e.code, e.employee): e for e in expenses}
    kept: dict[tuple[str, str], list[Approval]] = {}
    for a in approvals:  # pairs kept by earlier runs: each must still hold on the current versions
        if a.voucher is not None:
            kept.setdefault((a.voucher, a.applicant), []).append(a)
    for (voucher, person), group in kept.items():
        e = by_person.get((voucher, person))
        total = sum((a.amount or Decimal("0.00") for a in group), Decimal("0.00"))
        if e is None or e.amount != total:
            for a in group:
                problems.append(
                    f"{a.code} (审批单号 {a.number}): the kept pair with {voucher} no longer holds: "
                    + (f"that voucher is no longer archived with an expense of {person}" if e is None
                       else f"its expense for {person} is now {e.amount}, the approvals paired with it {total}")
                )  # fmt: skip
                a.broken = True
            continue
        e.approvals += [a.code for a in group]
    _pair(approvals, expenses, scope.match_days)
    _pair_sums(approvals, expenses, scope.match_days)
    if link:
        new = [a for a in approvals if a.new]
        for a in new:
            session.add(ApprovalLinkRow(approval_code=a.code, voucher_code=a.voucher, basis=a.basis))
        events.append(
            session,
            [
                events.Event(
                    "approval-linked",
                    a.code,
                    {"voucher": a.voucher, "审批单号": a.number, "basis": a.basis},
                )
                for a in new
            ],
        )
    return ApprovalReconciliation(scope, on, approvals, expenses, read, problems)


def _approvals(session: Session, scope: ApprovalScope) -> list[Approval]:
    """Each archived approval of the source as its current package version has it, with its kept pair."""
    rows = session.execute(
        select(ApprovalRow, ApprovalLinkRow)
        .join(ArchiveRecordRow, ArchiveRecordRow.archival_code == ApprovalRow.archival_code)
        .join(
            PackageRow,
            and_(
                PackageRow.id == ApprovalRow.package_id,
                PackageRow.record_id == ArchiveRecordRow.id,
                PackageRow.version == ArchiveRecordRow.current_version,
            ),
        )
        .outerjoin(ApprovalLinkRow, ApprovalLinkRow.approval_code == ApprovalRow.archival_code)
        .where(ApprovalRow.source_id == scope.source, ArchiveRecordRow.status == "archived")
    ).all()
    out = [
        Approval(
            row.archival_code,
            row.approval_no,
            row.approval_name,
            row.applicant,
            row.amount,
            row.finished_on,
            voucher=link.voucher_code if link else None,
            basis=link.basis if link else "",
        )
        for row, link in rows
    ]
    revoked = set(
        session.scalars(
            select(EventRow.subject).where(
                EventRow.kind == REVOKED_EVENT, EventRow.subject.in_([a.code for a in out] or [""])
            )
        )
    )
    for a in out:
        a.revoked = a.code in revoked
    return sorted(out, key=lambda a: (a.finished_on, a.number))


def note_revoked(catalog_url: str | None, source_id: str, revoked: dict[str, str]) -> list[str]:
    """One `approval-revoked` event for each archived approval the OA system now says was withdrawn
    (审批单号 → what it said), once: the 原始凭证 stays archived (history is never rewritten), and
    `oa reconcile` lists it, with the voucher that booked it, for reversal. Returns the 档号 noted now."""
    if not catalog_url or not revoked:
        return []
    from archive_hub.catalog import Catalog

    catalog = Catalog(catalog_url)
    try:
        with catalog.transaction() as session:
            codes = dict(
                session.execute(
                    select(ArchiveRecordRow.archival_code, ArchiveRecordRow.business_id).where(
                        ArchiveRecordRow.source_id == source_id,
                        ArchiveRecordRow.business_id.in_(list(revoked)),
                        ArchiveRecordRow.status == "archived",
                    )
                ).all()
            )
            noted = set(
                session.scalars(
                    select(EventRow.subject).where(
                        EventRow.kind == REVOKED_EVENT, EventRow.subject.in_(list(codes) or [""])
                    )
                )
            )
            new = sorted(c for c in codes if c not in noted)
            events.append(
                session,
                [
                    events.Event(REVOKED_EVENT, c, {"审批单号": codes[c], "status": revoked[codes[c]]})
                    for c in new
                ],
            )
    finally:
        catalog.dispose()
    return new


def _expenses(
    session: Session,
    settings: Settings,
    scope: ApprovalScope,
    start: dt.date,
    until: dt.date,
    problems: list[str],
) -> tuple[list[Expense], int]:
    prefixes = tuple(scope.expense_accounts)
    where = and_(
        ArchiveRecordRow.source_id == scope.books,
        ArchiveRecordRow.status == "archived",
        ArchiveRecordRow.record_date >= start,
        ArchiveRecordRow.record_date <= until,
        or_(*(ArchiveRecordRow.search_text.contains(p, autoescape=True) for p in prefixes)),
    )
    out: list[Expense] = []
    read = 0
    for v in archived_vouchers(session, settings, where, problems):
        read += 1
        people: dict[str, Expense] = {}
        for line in v.lines():
            if not line.findtext("v:科目编码", "", NS).startswith(prefixes):
                continue
            employee = next(
                (i.text or "" for i in line.iterfind("v:辅助核算/v:项", NS) if i.get("名称") == EMPLOYEE), ""
            )
            debit = Decimal(line.findtext("v:借方金额", "0", NS))
            if not employee or debit <= 0:
                continue
            e = people.setdefault(
                employee,
                Expense(v.code, v.number, v.date, employee, Decimal("0.00"), line.findtext("v:摘要", "", NS)),
            )
            e.amount += debit
        out.extend(people.values())
    out.sort(key=lambda e: (e.date, e.code, e.employee))
    return out, read


def _pair(approvals: Sequence[Approval], expenses: Sequence[Expense], days: int) -> None:
    """Equal (person, amount) pairs nearest in date, at most `days` apart; approvals in date order."""
    free: dict[tuple[str, Decimal], list[Expense]] = {}
    for e in expenses:
        if not e.approvals:
            free.setdefault((e.employee, e.amount), []).append(e)
    for a in approvals:
        if a.voucher is not None or a.amount is None or a.revoked:
            continue
        candidates = [
            e
            for e in free.get((a.applicant, a.amount), [])
            if not e.approvals and abs((e.date - a.finished_on).days) <= days
        ]
        if not candidates:
            continue
        best = min(candidates, key=lambda e: (abs((e.date - a.finished_on).days), e.date, e.code))
        best.approvals.append(a.code)
        gap = (best.date - a.finished_on).days
        a.voucher, a.voucher_no, a.new = best.code, best.voucher_no, True
        a.basis = (
            f"申请人 {a.applicant} = 职员 {best.employee}; 金额 {a.amount} = 借方 {best.amount}; "
            f"凭证日期 {best.date} ({gap:+d} 天)"
        )


def _pair_sums(
    approvals: Sequence[Approval], expenses: Sequence[Expense], days: int, most: int = 4, nearest: int = 10
) -> None:
    """What one-to-one pairing leaves: several approvals of one person booked in one voucher as one sum
    (两张报销单一次入账). For each unpaired expense, in date order, the set of 2 to `most` unpaired approvals of
    that person within `days` whose amounts add up to it exactly, among the `nearest` in date; of several
    such sets, the one whose farthest approval is nearest. No set, no pair: nothing is guessed."""
    free = [a for a in approvals if a.voucher is None and a.amount is not None and not a.revoked]
    for e in sorted((e for e in expenses if not e.approvals), key=lambda e: (e.date, e.code, e.employee)):
        near = sorted(
            (a for a in free if a.voucher is None and a.applicant == e.employee
             and abs((e.date - a.finished_on).days) <= days and a.amount < e.amount),  # type: ignore[operator]
            key=lambda a: (abs((e.date - a.finished_on).days), a.number),
        )[:nearest]  # fmt: skip
        best: tuple[int, list[Approval]] | None = None
        for size in range(2, min(most, len(near)) + 1):
            for combo in itertools.combinations(near, size):
                if sum((a.amount for a in combo), Decimal("0.00")) != e.amount:  # type: ignore[misc]
                    continue
                spread = max(abs((e.date - a.finished_on).days) for a in combo)
                if best is None or spread < best[0]:
                    best = (spread, list(combo))
        if best is None:
            continue
        group = best[1]
        amounts = " + ".join(str(a.amount) for a in group)
        for a in group:
            e.approvals.append(a.code)
            a.voucher, a.voucher_no, a.new = e.code, e.voucher_no, True
            a.basis = (
                f"申请人 {a.applicant} = 职员 {e.employee}; 金额 {amounts} = 借方 {e.amount} "
                f"({len(group)}张审批单合并入账); 凭证日期 {e.date} ({(e.date - a.finished_on).days:+d} 天)"
            )


def report_dir(settings: Settings) -> Path:
    return settings.home / "reports" / "approvals"


def write_report(r: ApprovalReconciliation, settings: Settings) -> Path:
    """The report as JSON under reports/approvals/, one file per source and day (replaced whole)."""
    import json

    from archive_sink.durability import replace_file

    path = report_dir(settings) / f"{r.scope.source}-{r.scope.books}-{r.on.isoformat()}.json"
    replace_file(path, json.dumps(r.as_dict(), ensure_ascii=False, indent=1).encode())
    return path
