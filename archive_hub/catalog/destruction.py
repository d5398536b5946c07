"""销毁: appraisal to 销毁清册 to signatures to supervised destruction, as 《会计档案管理办法》 Art. 18 asks.

The catalog side: holds (未结清的债权债务 and the like), drawing up a list from the records whose 保管期限
has ended, signatures bound to the list's content, and the checks that must all pass before anything is
deleted. Every step is written to the hash-chained event log. Destroyed records keep their catalog rows
(档号, 件号, the hashes of what was destroyed), so the 件号 stay gap-free and the list can always prove
what it destroyed; only the packages' bytes go (archive_hub/destruction.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from archive_hub.catalog.appraisal import kept_years
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import (
    ArchiveRecordRow,
    DestructionHoldRow,
    DestructionItemRow,
    DestructionListRow,
    DestructionSignatureRow,
    LoanRow,
    PackageRow,
    utcnow,
)
from archive_hub.catalog.packages import code_scope
from archive_hub.destruction_roles import SIGNATORIES, WITNESSES, DestructionRefused
from canonical_model.retention import RetentionPeriod

OPEN = ("draft", "destroying")  # lists whose records no other list may take


@dataclass(frozen=True)
class ListedRecord:
    record: ArchiveRecordRow
    packages: list[PackageRow]


def listed_records(session: Session, list_id: int) -> list[ListedRecord]:
    """The records on a list in 档号 order, each with every package version it holds."""
    records = (
        session.execute(
            select(ArchiveRecordRow)
            .join(DestructionItemRow, DestructionItemRow.record_id == ArchiveRecordRow.id)
            .where(DestructionItemRow.list_id == list_id)
            .order_by(ArchiveRecordRow.archival_code)
        )
        .scalars()
        .all()
    )
    packages: dict[int, list[PackageRow]] = {r.id: [] for r in records}
    ids = list(packages)
    for start in range(0, len(ids), 500):
        for p in session.execute(
            select(PackageRow)
            .where(PackageRow.record_id.in_(ids[start : start + 500]))
            .order_by(PackageRow.record_id, PackageRow.version)
        ).scalars():
            packages[p.record_id].append(p)
    return [ListedRecord(r, packages[r.id]) for r in records]


def content_hash(listed: Sequence[ListedRecord]) -> str:
    """SHA-256 over every listed 档号 with the manifest hash of each of its versions: a new version, a
    record added or dropped, changes it, and with it what the signatures approved."""
    digest = hashlib.sha256()
    for item in sorted(listed, key=lambda i: i.record.archival_code):
        versions = ",".join(f"v{p.version}:{p.manifest_sha256}" for p in item.packages)
        digest.update(f"{item.record.archival_code}\t{item.record.id}\t{versions}\n".encode())
    return digest.hexdigest()


def record_by_code(session: Session, code: str) -> ArchiveRecordRow:
    record = session.execute(
        select(ArchiveRecordRow).where(ArchiveRecordRow.archival_code == code)
    ).scalar_one_or_none()
    if record is None:
        raise DestructionRefused(f"no record with 档号 {code!r} in the catalog")
    return record


def active_holds(session: Session, record_ids: Sequence[int]) -> dict[int, DestructionHoldRow]:
    found: dict[int, DestructionHoldRow] = {}
    ids = list(record_ids)
    for start in range(0, len(ids), 500):
        for hold in session.execute(
            select(DestructionHoldRow).where(
                DestructionHoldRow.record_id.in_(ids[start : start + 500]),
                DestructionHoldRow.released_at.is_(None),
            )
        ).scalars():
            found.setdefault(hold.record_id, hold)
    return found


def place_hold(session: Session, code: str, reason: str, by: str) -> DestructionHoldRow:
    """Keep a record whatever its 保管期限 says (未结清的债权债务: kept until settled)."""
    if not reason.strip():
        raise DestructionRefused("a hold needs a reason (e.g. 未结清的债权债务: 合同号 ...)")
    record = record_by_code(session, code)
    if record.status == "destroyed":
        raise DestructionRefused(f"{code} was already destroyed")
    if active_holds(session, [record.id]):
        raise DestructionRefused(f"{code} is already held (`archive-hub destruction holds` lists holds)")
    hold = DestructionHoldRow(record_id=record.id, reason=reason.strip(), placed_by=by)
    session.add(hold)
    append(session, [Event("held", code, {"reason": hold.reason, "by": by})])
    return hold


def release_hold(session: Session, code: str, by: str) -> DestructionHoldRow:
    record = record_by_code(session, code)
    hold = active_holds(session, [record.id]).get(record.id)
    if hold is None:
        raise DestructionRefused(f"{code} is not held")
    hold.released_by, hold.released_at = by, utcnow()
    append(session, [Event("hold-released", code, {"reason": hold.reason, "by": by})])
    return hold


def due_records(
    session: Session, on: dt.date, code_prefix: str | None = None
) -> tuple[list[ArchiveRecordRow], list[ArchiveRecordRow]]:
    """(to list, held): archived records whose 保管期限 has ended by `on` and that no open list holds."""
    r = ArchiveRecordRow
    on_open_list = (
        select(DestructionItemRow.record_id)
        .join(DestructionListRow, DestructionListRow.id == DestructionItemRow.list_id)
        .where(DestructionListRow.status.in_(OPEN))
    )
    records = (
        session.execute(
            select(r)
            .where(
                r.status == "archived",
                code_scope(code_prefix),
                r.retention_due.is_not(None),
                r.retention_due <= on,
                r.id.not_in(on_open_list),
            )
            .order_by(r.archival_code)
        )
        .scalars()
        .all()
    )
    held = active_holds(session, [rec.id for rec in records])
    return [rec for rec in records if rec.id not in held], [rec for rec in records if rec.id in held]


def draw_up(
    session: Session, on: dt.date, opinion: str, by: str, code_prefix: str | None = None
) -> tuple[DestructionListRow, int]:
    """A draft 销毁清册 of every due record not held; returns it and how many due records a hold kept off."""
    if not opinion.strip():
        raise DestructionRefused(
            "a list needs the appraisal's opinion (鉴定意见), e.g. 已到期, 无未了事项, 可销毁"
        )
    if on > dt.date.today():
        raise DestructionRefused(
            f"{on} is in the future: records are appraised when their 保管期限 has ended"
        )
    records, held = due_records(session, on, code_prefix)
    if not records:
        raise DestructionRefused(
            f"no record is due by {on}{' under ' + code_prefix if code_prefix else ''} "
            f"that is not held or on an open list ({len(held)} held)"
        )
    lst = DestructionListRow(
        status="draft", judged_on=on, opinion=opinion.strip(), drawn_by=by, content_hash="", witnesses={}
    )
    session.add(lst)
    session.flush()
    session.add_all(
        DestructionItemRow(list_id=lst.id, record_id=r.id, archival_code=r.archival_code) for r in records
    )
    session.flush()
    lst.content_hash = content_hash(listed_records(session, lst.id))
    append(
        session,
        [
            Event(
                "destruction-drawn-up",
                f"销毁清册 {lst.id}",
                {
                    "records": len(records),
                    "first": records[0].archival_code,
                    "last": records[-1].archival_code,
                    "judged_on": on.isoformat(),
                    "opinion": lst.opinion,
                    "content_hash": lst.content_hash,
                    "by": by,
                },
            )
        ],
    )
    return lst, len(held)


def get_list(session: Session, list_id: int, *, lock: bool = False) -> DestructionListRow:
    query = select(DestructionListRow).where(DestructionListRow.id == list_id)
    lst = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
    if lst is None:
        raise DestructionRefused(f"no 销毁清册 {list_id} (`archive-hub destruction lists` shows them)")
    return lst


def signatures(session: Session, list_id: int) -> dict[str, DestructionSignatureRow]:
    return {
        s.role: s
        for s in session.execute(
            select(DestructionSignatureRow).where(DestructionSignatureRow.list_id == list_id)
        ).scalars()
    }


def sign(
    session: Session, list_id: int, role: str, name: str, sso: dict[str, str] | None = None
) -> DestructionSignatureRow:
    """One signatory signs the list as it stands now; the two 经办人 must be two people. `sso` names the
    signed-in user (username, subject) when the signature was given through SSO; it goes into the event."""
    if role not in SIGNATORIES:
        raise DestructionRefused(f"unknown role {role!r}: one of {', '.join(SIGNATORIES)}")
    if not name.strip():
        raise DestructionRefused("a signature needs the signatory's name")
    lst = get_list(session, list_id, lock=True)
    if lst.status != "draft":
        raise DestructionRefused(f"销毁清册 {list_id} is {lst.status}: only a draft is signed")
    signed = signatures(session, list_id)
    if role in signed:
        raise DestructionRefused(
            f"销毁清册 {list_id}: {SIGNATORIES[role]} already signed ({signed[role].name})"
        )
    other = {"archives-handler": "accounting-handler", "accounting-handler": "archives-handler"}.get(role)
    if other and other in signed and signed[other].name == name.strip():
        raise DestructionRefused(f"销毁清册 {list_id}: the two 经办人 must be two people, not {name} twice")
    now = content_hash(listed_records(session, list_id))
    if now != lst.content_hash:
        raise DestructionRefused(
            f"销毁清册 {list_id} no longer matches what was drawn up (a record got a new version or "
            "changed): withdraw it and draw up a new one"
        )
    row = DestructionSignatureRow(list_id=list_id, role=role, name=name.strip(), content_hash=now)
    session.add(row)
    append(
        session,
        [
            Event(
                "destruction-signed",
                f"销毁清册 {list_id}",
                {
                    "role": role,
                    "title": SIGNATORIES[role],
                    "name": row.name,
                    "content_hash": now,
                    **({"sso": sso} if sso else {}),
                },
            )
        ],
    )
    return row


def withdraw(session: Session, list_id: int, reason: str, by: str) -> DestructionListRow:
    if not reason.strip():
        raise DestructionRefused("say why the list is withdrawn")
    lst = get_list(session, list_id, lock=True)
    if lst.status != "draft":
        raise DestructionRefused(f"销毁清册 {list_id} is {lst.status}: only a draft can be withdrawn")
    lst.status, lst.withdrawn_reason = "withdrawn", reason.strip()
    append(
        session,
        [Event("destruction-withdrawn", f"销毁清册 {list_id}", {"reason": lst.withdrawn_reason, "by": by})],
    )
    return lst


def execution_problems(
    session: Session, lst: DestructionListRow, listed: Sequence[ListedRecord], today: dt.date
) -> list[str]:
    """Everything that stops a list from being executed, all named at once."""
    name = f"销毁清册 {lst.id}"
    problems = []
    signed = signatures(session, lst.id)
    missing = [title for role, title in SIGNATORIES.items() if role not in signed]
    if missing:
        problems.append(f"{name}: not signed by {', '.join(missing)}")
    current = content_hash(listed)
    if current != lst.content_hash:
        problems.append(f"{name}: the listed records changed since it was drawn up (new version or record)")
    for role, s in signed.items():
        if s.content_hash != lst.content_hash:
            problems.append(f"{name}: {SIGNATORIES[role]} {s.name} signed a different content")
    holds = active_holds(session, [i.record.id for i in listed])
    loans = _open_loans(session, [i.record.id for i in listed])
    for item in listed:
        rec = item.record
        if rec.status != "archived":
            problems.append(f"{rec.archival_code}: status {rec.status}, not an archived record")
        if rec.id in holds:
            problems.append(
                f"{rec.archival_code}: held ({holds[rec.id].reason}); withdraw the list and redraw it"
            )
        for loan in loans.get(rec.id, []):
            problems.append(
                f"{rec.archival_code}: on loan to {loan.borrower} until {loan.due} (loan {loan.id}); "
                "it comes back first (`archive-hub loan return`)"
            )
        if rec.retention_due is None or rec.retention_due > today:
            problems.append(f"{rec.archival_code}: 保管期限 runs until {rec.retention_due or '永久'}")
    return problems


def _open_loans(session: Session, record_ids: Sequence[int]) -> dict[int, list[LoanRow]]:
    found: dict[int, list[LoanRow]] = {}
    ids = list(record_ids)
    for start in range(0, len(ids), 500):
        for loan in session.execute(
            select(LoanRow).where(
                LoanRow.record_id.in_(ids[start : start + 500]), LoanRow.returned_at.is_(None)
            )
        ).scalars():
            found.setdefault(loan.record_id, []).append(loan)
    return found


def mark_destroyed(
    session: Session, lst: DestructionListRow, listed: Sequence[ListedRecord], witnesses: dict[str, str]
) -> None:
    """The decision, in one transaction: records destroyed, each with the hashes of what goes, in the chain."""
    now = utcnow()
    lst.status, lst.witnesses, lst.destroyed_at = "destroying", dict(witnesses), now
    events = []
    for item in listed:
        item.record.status, item.record.updated_at = "destroyed", now
        events.append(
            Event(
                "destroyed",
                item.record.archival_code,
                {
                    "list": lst.id,
                    "versions": {str(p.version): p.manifest_sha256 for p in item.packages},
                    "bytes": sum(p.byte_size for p in item.packages),
                },
            )
        )
    events.append(
        Event(
            "destruction-executed",
            f"销毁清册 {lst.id}",
            {"records": len(listed), "witnesses": dict(witnesses), "content_hash": lst.content_hash},
        )
    )
    append(session, events)


def destroyed_without_list(session: Session, where: ColumnElement[bool]) -> list[str]:
    """Records marked destroyed that no executed 销毁清册 lists: a deletion outside the procedure."""
    r = ArchiveRecordRow
    executed = (
        select(DestructionItemRow.record_id)
        .join(DestructionListRow, DestructionListRow.id == DestructionItemRow.list_id)
        .where(DestructionListRow.status.in_(("destroying", "destroyed")))
    )
    codes = session.execute(
        select(r.archival_code).where(and_(r.status == "destroyed", where, r.id.not_in(executed)))
    ).scalars()
    return [
        f"{code}: marked destroyed but on no executed 销毁清册 (deleted outside the destruction procedure)"
        for code in codes
    ]


CATEGORY_NAMES = {"PZ": "会计凭证", "ZB": "会计账簿", "BG": "财务会计报告", "QT": "其他会计资料"}


@dataclass(frozen=True)
class RegisterLine:
    """One line of the 销毁清册 (Art. 18: 名称, 卷号, 册数, 起止年度, 档案编号, 应保管期限, 已保管期限, 销毁时间),
    one per class; e-archives have no 卷 and count 件."""

    name: str
    records: int
    years: str
    codes: str  # 档案编号: the 档号 ranges listed
    retention: str
    kept: str
    destroyed_on: str

    def as_dict(self) -> dict[str, object]:
        return {
            "名称": self.name,
            "件数": self.records,
            "起止年度": self.years,
            "档案编号": self.codes,
            "应保管期限": self.retention,
            "已保管期限": self.kept,
            "销毁时间": self.destroyed_on,
        }


def register_lines(
    lst: DestructionListRow, listed: Sequence[ListedRecord], today: dt.date
) -> list[RegisterLine]:
    classes: dict[tuple[str, int, str, str], list[ArchiveRecordRow]] = {}
    for item in listed:
        r = item.record
        classes.setdefault((r.fonds_no, r.year, r.retention, r.category), []).append(r)
    on = lst.destroyed_at.date() if lst.destroyed_at else today
    lines = []
    for (fonds, year, retention, category), records in sorted(classes.items()):
        records.sort(key=lambda r: r.item_no)
        runs: list[list[ArchiveRecordRow]] = []
        for r in records:
            if runs and r.item_no == runs[-1][-1].item_no + 1:
                runs[-1].append(r)
            else:
                runs.append([r])
        codes = ", ".join(
            run[0].archival_code if len(run) == 1 else f"{run[0].archival_code}–{run[-1].archival_code}"
            for run in runs
        )
        fiscal = sorted({r.fiscal_year for r in records})
        lines.append(
            RegisterLine(
                f"{fonds} {year}年度 {CATEGORY_NAMES.get(category, category)}",
                len(records),
                str(fiscal[0]) if len(fiscal) == 1 else f"{fiscal[0]}–{fiscal[-1]}",
                codes,
                RetentionPeriod(retention).label,
                f"{kept_years(year, on)}年",
                lst.destroyed_at.date().isoformat() if lst.destroyed_at else "",
            )
        )
    return lines


def list_document(session: Session, list_id: int, today: dt.date) -> dict[str, Any]:
    """The whole 销毁清册 as one document: what `destruction show` prints, the workbook holds and the
    archived copy (connectors/registers) keeps 永久, with the manifest hash of every version destroyed."""
    lst = get_list(session, list_id)
    listed = listed_records(session, list_id)
    signed = signatures(session, list_id)
    return {
        "list": lst.id,
        "status": lst.status,
        "judged_on": lst.judged_on.isoformat(),
        "opinion": lst.opinion,
        "drawn_by": lst.drawn_by,
        "drawn_at": lst.drawn_at.isoformat(timespec="seconds"),
        "content_hash": lst.content_hash,
        "lines": [line.as_dict() for line in register_lines(lst, listed, today)],
        "records": [
            {
                "档号": i.record.archival_code,
                "题名": i.record.title,
                "凭证号": i.record.voucher_no,
                "日期": i.record.record_date.isoformat(),
                "到期": i.record.retention_due.isoformat() if i.record.retention_due else None,
                "versions": {str(p.version): p.manifest_sha256 for p in i.packages},
                "status": i.record.status,
            }
            for i in listed
        ],
        "signatures": {
            title: {"name": signed[role].name, "at": signed[role].signed_at.isoformat(timespec="seconds")}
            for role, title in SIGNATORIES.items()  # in the order Art. 18 names them
            if role in signed
        },
        "witnesses": {WITNESSES[k]: v for k, v in (lst.witnesses or {}).items()},
        "destroyed_at": lst.destroyed_at.isoformat(timespec="seconds") if lst.destroyed_at else None,
    }
