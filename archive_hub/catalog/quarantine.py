"""Quarantine (dead-letter) of records that failed mapping, validation or archiving.

One open item per source record: quarantining it again (a re-run, a retry) updates that item and
counts the attempt instead of adding a duplicate; archiving it later resolves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import QuarantineRow, utcnow


@dataclass
class QuarantineEntry:
    source_id: str
    stream: str
    business_id: str
    stage: str
    reason: str
    raw_payload: str
    mapping_version: str


def put(session: Session, run_id: str, entries: Sequence[QuarantineEntry]) -> int:
    """Quarantine (or re-quarantine) records; returns how many are *new* problems.

    A record already open in quarantine with the same payload is the same problem seen again (a
    look-back re-read, an unmoved cursor): it counts an attempt but not toward a run's threshold, so
    one bad voucher cannot fail every later small run.
    """
    if not entries:
        return 0
    fresh = 0
    keys = {(e.source_id, e.business_id) for e in entries}
    existing = {
        (row.source_id, row.business_id): row
        for row in session.execute(
            select(QuarantineRow).where(
                QuarantineRow.status == "open",
                QuarantineRow.source_id.in_({k[0] for k in keys}),
                QuarantineRow.business_id.in_({k[1] for k in keys}),
            )
        ).scalars()
    }
    now = utcnow()
    events = []
    for e in entries:
        row = existing.get((e.source_id, e.business_id))
        if row is None:
            row = QuarantineRow(
                run_id=run_id,
                source_id=e.source_id,
                stream=e.stream,
                business_id=e.business_id,
                stage=e.stage,
                reason=e.reason,
                raw_payload=e.raw_payload,
                mapping_version=e.mapping_version,
                status="open",
                attempts=1,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            existing[(e.source_id, e.business_id)] = row
            fresh += 1
        else:
            if row.raw_payload != e.raw_payload:  # the source changed it: a new problem
                fresh += 1
            row.run_id, row.stage, row.reason = run_id, e.stage, e.reason
            row.raw_payload, row.mapping_version = e.raw_payload, e.mapping_version
            row.attempts += 1
            row.updated_at = now
        events.append(
            Event(
                "quarantined",
                f"{e.source_id}:{e.business_id}",
                {"stage": e.stage, "reason": e.reason[:500]},
                run_id,
            )
        )
    append(session, events)
    return fresh


def resolve(session: Session, run_id: str, source_id: str, business_ids: Iterable[str]) -> int:
    ids = list(business_ids)
    if not ids:
        return 0
    resolved = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        result = session.execute(
            update(QuarantineRow)
            .where(
                QuarantineRow.status == "open",
                QuarantineRow.source_id == source_id,
                QuarantineRow.business_id.in_(chunk),
            )
            .values(status="resolved", resolved_at=utcnow(), updated_at=utcnow())
        )
        resolved += result.rowcount or 0
    if resolved:
        append(session, [Event("quarantine-resolved", source_id, {"count": resolved}, run_id)])
    return resolved


def open_items(
    session: Session, source_id: str | None = None, ids: Sequence[int] | None = None
) -> list[QuarantineRow]:
    query = select(QuarantineRow).where(QuarantineRow.status == "open").order_by(QuarantineRow.id)
    if source_id:
        query = query.where(QuarantineRow.source_id == source_id)
    if ids:
        query = query.where(QuarantineRow.id.in_(ids))
    return list(session.execute(query).scalars())
