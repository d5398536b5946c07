"""四性检测 on the catalog itself (DA/T 70): what no single package can show.

- 件号 gap-free (integrity: sequential numbers): in every class (全宗号/年度/保管期限/类别) the records
  hold exactly 件号 1..N, where N is how many numbers the class's counter has handed out (a unique key
  keeps two records off one number). A record row deleted, or renumbered by hand, shows here and nowhere
  else.
- 档号 rule (authenticity): every 档号 is its own parts joined by the rule.
- Booked once, backed by the packages: every claim (a file by SHA-256, an e-invoice by its number)
  held by a catalogued record names a file some version of that record carries. A claim moved to
  another record by hand, or a file swapped under it, shows here.
- Process history complete, fixity anchored in the chain: every package version has its registration
  event (archived / new-version) in the hash-chained log, naming the same 档号, version and
  manifest-sha256.txt hash. A package rewritten on disk together with its catalog rows passes the
  manifest checks, but cannot rewrite what the chain recorded when it was archived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import (
    ArchivalSequenceRow,
    ArchiveRecordRow,
    AttachmentClaimRow,
    EventRow,
    FileRow,
    InvoiceClaimRow,
    PackageRow,
)
from archive_hub.catalog.packages import code_scope
from canonical_model.archival_code import ArchivalCode, ArchivalCodeRule
from canonical_model.retention import RetentionPeriod

REGISTRATION_KINDS = ("archived", "new-version")

ClassKey = tuple[str, int, str, str]  # fonds_no, year, retention, category: one 件号 sequence


@dataclass(frozen=True)
class Registration:
    """What the chain recorded when a package version was catalogued."""

    seq: int
    archival_code: str
    version: int
    manifest_sha256: str


def render_code(key: ClassKey, item_no: int, rule: ArchivalCodeRule) -> str:
    """The 档号 of 件 `item_no` of a class, from the parts the catalog stores (ValueError if they are invalid)."""
    fonds_no, year, retention, category = key
    code = ArchivalCode(
        fonds_no=fonds_no, year=year, retention=RetentionPeriod(retention), category=category, item_no=item_no
    )
    return rule.render(code)


def class_label(key: ClassKey, rule: ArchivalCodeRule) -> str:
    """The 档号 of a class without its 件号 (what `verify --code` takes), or its parts if the rule
    does not end with the 件号."""
    fonds_no, year, retention, category = key
    if rule.levels[-1] == ("item_no",):
        try:
            return render_code(key, 1, rule).rsplit(rule.level_separator, 1)[0]
        except ValueError:
            pass
    return f"{fonds_no}/{year}/{retention}/{category}"


def _ranges(numbers: Iterable[int], width: int) -> str:
    """1, 2, 3, 7 -> '0001-0003, 0007' (at most 10 runs, then a count of the rest)."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    shown = [
        str(a).zfill(width) if a == b else f"{str(a).zfill(width)}-{str(b).zfill(width)}"
        for a, b in runs[:10]
    ]
    if len(runs) > 10:
        shown.append(f"and {len(runs) - 10} more runs")
    return ", ".join(shown)


def numbering_problems(session: Session, rule: ArchivalCodeRule, code_prefix: str | None = None) -> list[str]:
    """Every class's 件号 against 1..N of its counter: gaps, and numbers the counter never handed out.

    One aggregate query per catalog; the numbers of a class are read only when its aggregate is off.
    With `code_prefix` only the classes that prefix reaches are judged.
    """
    r = ArchiveRecordRow
    counters: dict[ClassKey, int] = {
        (s.fonds_no, s.year, s.retention, s.category): s.last_item_no
        for s in session.execute(select(ArchivalSequenceRow)).scalars()
    }
    aggregates = {
        (row.fonds_no, row.year, row.retention, row.category): row
        for row in session.execute(
            select(
                r.fonds_no,
                r.year,
                r.retention,
                r.category,
                func.count().label("n"),
                func.min(r.item_no).label("low"),
                func.max(r.item_no).label("high"),
            ).group_by(r.fonds_no, r.year, r.retention, r.category)
        )
    }
    problems = []
    for key in sorted(set(counters) | set(aggregates)):
        label = class_label(key, rule)
        if code_prefix and not (label.startswith(code_prefix) or code_prefix.startswith(label)):
            continue
        handed_out = counters.get(key, 0)
        agg = aggregates.get(key)
        if agg is not None and agg.n == agg.high == handed_out and agg.low == 1:
            continue
        held = set(
            session.execute(
                select(r.item_no).where(
                    r.fonds_no == key[0], r.year == key[1], r.retention == key[2], r.category == key[3]
                )
            ).scalars()
        )
        width = rule.item_no_width
        missing = set(range(1, handed_out + 1)) - held
        if missing:
            problems.append(
                f"{label}: 件号 {_ranges(missing, width)} handed out but held by no record "
                f"({handed_out} numbers handed out, {len(held)} held): a record is missing from the catalog"
            )
        beyond = {n for n in held if n > handed_out or n < 1}
        if beyond:
            problems.append(
                f"{label}: 件号 {_ranges(beyond, width)} never handed out by the class's counter "
                f"(it stands at {handed_out})"
            )
    return problems


def code_rule_problems(rows: Iterable[ArchiveRecordRow], rule: ArchivalCodeRule) -> list[str]:
    """Each 档号 rebuilt from its stored parts; a code that differs was written by something else."""
    problems = []
    for row in rows:
        try:
            expected = render_code((row.fonds_no, row.year, row.retention, row.category), row.item_no, rule)
        except ValueError as exc:
            problems.append(f"{row.archival_code}: its parts do not make a valid 档号: {exc}")
            continue
        if expected != row.archival_code:
            problems.append(
                f"{row.archival_code}: does not follow the 档号 rule for its parts "
                f"(全宗号 {row.fonds_no}, 年度 {row.year}, 保管期限 {row.retention}, 类别 {row.category}, "
                f"件号 {row.item_no} make {expected})"
            )
    return problems


def registrations_from(rows: Iterable[EventRow]) -> dict[int, list[Registration]]:
    """Registration events by the package id they name; other events are passed over."""
    found: dict[int, list[Registration]] = {}
    for row in rows:
        if row.kind not in REGISTRATION_KINDS:
            continue
        try:
            data = json.loads(row.detail)
            package_id = int(data["package_id"])
            registration = Registration(
                row.seq, row.subject, int(data["version"]), str(data["manifest_sha256"])
            )
        except (ValueError, KeyError, TypeError):
            continue  # not a registration this check can read: the package then shows as unregistered
        found.setdefault(package_id, []).append(registration)
    return found


def registrations(session: Session, codes: Sequence[str]) -> dict[int, list[Registration]]:
    """The registration events of these 档号 (the subject is indexed: one query per batch of packages)."""
    if not codes:
        return {}
    return registrations_from(
        session.execute(
            select(EventRow).where(EventRow.kind.in_(REGISTRATION_KINDS), EventRow.subject.in_(codes))
        ).scalars()
    )


def registration_problems(
    package: PackageRow, code: str, manifest_row_sha256: str | None, found: dict[int, list[Registration]]
) -> list[str]:
    """The package version against the event that registered it in the chain.

    `manifest_row_sha256` is the catalog's file row of manifest-sha256.txt, which the package check ties
    to the bytes on disk; the package row keeps the same hash. Both must be what the chain recorded.
    """
    events = found.get(package.id, [])
    name = f"{code} v{package.version}"
    if not events:
        return [f"{name}: no registration event in the event chain (process history incomplete)"]
    if len(events) > 1:
        seqs = ", ".join(str(e.seq) for e in events)
        return [f"{name}: registered {len(events)} times in the event chain (events {seqs})"]
    event = events[0]
    problems = []
    if event.archival_code != code or event.version != package.version:
        problems.append(
            f"{name}: the chain registered this package as {event.archival_code} v{event.version} "
            f"(event {event.seq})"
        )
    held = {package.manifest_sha256} | ({manifest_row_sha256} if manifest_row_sha256 else set())
    if held != {event.manifest_sha256}:
        problems.append(
            f"{name}: manifest-sha256.txt is not the one the event chain recorded when it was archived "
            f"(event {event.seq}): the package was rewritten together with its catalog rows"
        )
    return problems


def versions_problem(code: str, current: int, versions: Sequence[int]) -> str | None:
    """The versions a record holds must be exactly 1..current, one package each."""
    if sorted(versions) == list(range(1, current + 1)):
        return None
    low, high = (min(versions), max(versions)) if versions else (None, None)
    return (
        f"{code}: the catalog says version {current} is current but holds "
        f"{len(versions)} package(s), versions {low}..{high}: a version is missing or doubled"
    )


def version_problems(session: Session, code_prefix: str | None = None) -> list[str]:
    """Every archived record holds versions 1..current_version, one package each: history is kept.

    One grouped query judges every record; the versions of a record are read only when its counts are off.
    """
    r, p = ArchiveRecordRow, PackageRow
    off = (
        select(r.id, r.archival_code, r.current_version)
        .outerjoin(p, p.record_id == r.id)
        .where(r.status.in_(("archived", "destroyed")), code_scope(code_prefix))  # a 销毁 keeps the rows
        .group_by(r.id, r.archival_code, r.current_version)
        .having(
            or_(
                func.count(p.id) != r.current_version,
                func.count(func.distinct(p.version)) != r.current_version,
                func.coalesce(func.min(p.version), 0) != 1,
                func.coalesce(func.max(p.version), 0) != r.current_version,
            )
        )
    )
    problems = []
    for record_id, code, current in session.execute(off).all():
        versions = session.execute(select(p.version).where(p.record_id == record_id)).scalars().all()
        problem = versions_problem(code, current, versions)
        if problem:
            problems.append(problem)
    return problems


def claim_problems(session: Session, code_prefix: str | None = None) -> list[str]:
    """Claims whose holder (archived or destroyed: a 销毁 keeps the rows) carries no such file in any
    version. One query per claim table; a claim of a record that never got a catalog row is stale, not wrong."""
    r, p, f = ArchiveRecordRow, PackageRow, FileRow
    problems = []
    for claim, key, what in (
        (AttachmentClaimRow, AttachmentClaimRow.sha256, "attachment"),
        (InvoiceClaimRow, InvoiceClaimRow.invoice_key, "e-invoice"),
    ):
        carried = exists().where(
            p.record_id == r.id, f.package_id == p.id, f.role == "attachment", f.sha256 == claim.sha256
        )
        rows = session.execute(
            select(key, claim.file_name, claim.sha256, r.archival_code)
            .join(r, and_(r.source_id == claim.source_id, r.business_id == claim.business_id))
            .where(r.status.in_(("archived", "destroyed")), code_scope(code_prefix), ~carried)
            .order_by(r.archival_code, key)
        ).all()
        for claim_key, name, sha, code in rows:
            label = f"{claim_key} (read from {name!r})" if what == "e-invoice" else repr(name)
            problems.append(
                f"{code}: it holds the claim on {what} {label}, SHA-256 {sha[:16]}…, but no version of it "
                "carries that file (booked once: the claim no longer matches the packages)"
            )
    return problems
