"""利用登记簿: every 查阅, 复制, 借阅 and 归还, read from the hash-chained event log (so it cannot be edited
apart from the chain), for `archive-hub usage` and `GET /api/usage` alike."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.catalog.models import EventRow

USAGE_KINDS = {"consulted": "查阅", "copied": "复制", "lent": "借阅", "returned": "归还"}
_NAMED = ("by", "purpose", "borrower", "loan")


def usage_entries(
    session: Session, code: str | None = None, since: dt.date | None = None
) -> list[dict[str, Any]]:
    """In chain order; `code` keeps the 档号 starting with it, `since` the entries from that day on."""
    query = select(EventRow).where(EventRow.kind.in_(list(USAGE_KINDS))).order_by(EventRow.seq)
    if code:
        query = query.where(EventRow.subject.startswith(code, autoescape=True))
    if since:
        query = query.where(EventRow.at >= dt.datetime.combine(since, dt.time()))
    entries = []
    for e in session.execute(query).scalars():
        detail = json.loads(e.detail)
        entries.append(
            {
                "at": e.at.isoformat(timespec="seconds"),
                "kind": USAGE_KINDS[e.kind],
                "archival_code": e.subject,
                "by": detail.get("by"),
                "purpose": detail.get("purpose"),
                "borrower": detail.get("borrower"),
                "loan": detail.get("loan"),
                "detail": {k: v for k, v in detail.items() if k not in _NAMED},
                "event": e.seq,
            }
        )
    return entries
