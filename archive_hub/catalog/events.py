"""Append-only, hash-chained event log (archived, verified, quarantined, cursor, ...).

hash_n = SHA-256(hash_{n-1} || canonical JSON of event n). Altering, deleting or reordering any row
breaks every later hash, which `verify_chain` reports with the first bad sequence number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ChainHeadRow, EventRow, utcnow

GENESIS = "0" * 64


@dataclass
class Event:
    kind: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None


def _canonical(seq: int, at: dt.datetime, kind: str, subject: str, run_id: str | None, detail: str) -> bytes:
    body = {
        "seq": seq,
        "at": at.isoformat(),
        "kind": kind,
        "subject": subject,
        "run_id": run_id,
        "detail": detail,
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def event_hash(
    prev_hash: str, seq: int, at: dt.datetime, kind: str, subject: str, run_id: str | None, detail: str
) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(seq, at, kind, subject, run_id, detail)).hexdigest()


def append(session: Session, events: Iterable[Event]) -> int:
    """Append events inside the caller's transaction; the chain head row lock serialises writers."""
    events = list(events)
    if not events:
        return 0
    head = session.execute(
        select(ChainHeadRow).where(ChainHeadRow.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = ChainHeadRow(id=1, last_seq=0, last_hash=GENESIS)
        session.add(head)
        session.flush()
    seq, prev = head.last_seq, head.last_hash
    rows = []
    at = utcnow()
    for ev in events:
        seq += 1
        detail = json.dumps(ev.detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
        digest = event_hash(prev, seq, at, ev.kind, ev.subject, ev.run_id, detail)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "kind": ev.kind,
                "subject": ev.subject,
                "run_id": ev.run_id,
                "detail": detail,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(EventRow.__table__.insert(), rows)
    head.last_seq, head.last_hash = seq, prev
    return len(rows)


@dataclass
class ChainReport:
    events: int
    ok: bool
    first_bad_seq: int | None = None
    reason: str = ""


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    prev, expected_seq, count = GENESIS, 1, 0
    last_seq = 0
    while True:
        rows = (
            session.execute(
                select(EventRow).where(EventRow.seq > last_seq).order_by(EventRow.seq).limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return ChainReport(count, False, expected_seq, f"event {expected_seq} is missing")
            if row.prev_hash != prev:
                return ChainReport(
                    count, False, row.seq, f"event {row.seq} does not link to event {row.seq - 1}"
                )
            digest = event_hash(prev, row.seq, row.at, row.kind, row.subject, row.run_id, row.detail)
            if digest != row.hash:
                return ChainReport(
                    count, False, row.seq, f"event {row.seq} ({row.kind} {row.subject}) was altered"
                )
            prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
            last_seq = row.seq
    head = session.get(ChainHeadRow, 1)
    if head is not None and (head.last_seq != count or head.last_hash != prev):
        return ChainReport(
            count, False, count + 1, f"chain head says {head.last_seq} events but {count} are present"
        )
    return ChainReport(count, True)
