"""Source ↔ archive reconciliation for auditors: every record the source holds now is either
archived in its current version, destroyed under an executed 销毁清册, waiting in quarantine with a
reason, or reported as missing or outdated. Read from the source in full (not from the cursor), so nothing the hub skipped can hide."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from archive_hub.catalog.models import ArchiveRecordRow, QuarantineRow
from archive_hub.catalog.records import records_with_current_package
from archive_hub.pipeline.context import RunContext

# destroyed: archived, then destroyed under an executed 销毁清册 (the source may keep its books longer)
STATUSES = ("archived", "destroyed", "duplicate", "quarantined", "outdated", "missing")


@dataclass
class Reconciliation:
    source: str
    source_records: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    by_period: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    archived_not_in_source: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.counts["missing"] and not self.counts["outdated"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_records": self.source_records,
            "counts": dict(self.counts),
            "by_period": {k: dict(v) for k, v in sorted(self.by_period.items())},
            "problems": self.problems[:200],
            "archived_not_in_source": self.archived_not_in_source[:200],
            "ok": self.ok,
        }


def _period(data: dict[str, Any], changed_at: dt.datetime | None) -> str:
    year, period = data.get("fiscal_year"), data.get("period")
    if year and period:
        return f"{year}-{int(period):02d}"
    return changed_at.strftime("%Y-%m") if changed_at else "unknown"


def reconcile(ctx: RunContext, batch_size: int = 2000) -> Reconciliation:
    result = Reconciliation(ctx.source.id)
    with ctx.catalog.reading() as session:
        archived = {
            rec.business_id: (rec.archival_code, pkg.source_changed_at if pkg else None)
            for rec, pkg in session.execute(
                records_with_current_package(ctx.source.id).where(ArchiveRecordRow.status == "archived")
            ).all()
        }
        destroyed = set(
            session.execute(
                select(ArchiveRecordRow.business_id).where(
                    ArchiveRecordRow.source_id == ctx.source.id, ArchiveRecordRow.status == "destroyed"
                )
            ).scalars()
        )
        quarantined = {
            q.business_id: q.reason
            for q in session.execute(
                select(QuarantineRow).where(
                    QuarantineRow.source_id == ctx.source.id, QuarantineRow.status == "open"
                )
            ).scalars()
        }
    seen: set[str] = set()
    # A stream that filters what it already handled (the bank inbox) offers a full inventory instead.
    inventory = getattr(ctx.stream, "inventory", None)
    batches = (
        inventory() if inventory else ctx.stream.read(None, lookback=dt.timedelta(0), batch_size=batch_size)
    )
    for batch in batches:
        for record in batch:
            seen.add(record.key)
            result.source_records += 1
            changed = record.changed_at.replace(tzinfo=None) if record.changed_at else None
            if record.key in quarantined and record.key in archived:
                status = (
                    "outdated"  # the books changed into something refused; the archive holds the old version
                )
            elif record.key in quarantined:
                status = "quarantined"
            elif record.key in destroyed:
                status = "destroyed"
            elif record.key not in archived and record.data.get("skipped_duplicate"):
                status = "duplicate"  # its statements were archived from another file
            elif record.key in archived:
                code, archived_change = archived[record.key]
                status = (
                    "outdated" if changed and archived_change and changed > archived_change else "archived"
                )
            else:
                status = "missing"
            result.counts[status] += 1
            result.by_period.setdefault(_period(record.data, changed), Counter())[status] += 1
            if status in ("missing", "outdated", "quarantined"):
                result.problems.append(
                    {
                        "record": record.key,
                        "status": status,
                        "changed_at": changed.isoformat() if changed else None,
                        "archival_code": archived.get(record.key, (None,))[0],
                        "reason": quarantined.get(record.key),
                    }
                )
    result.archived_not_in_source = sorted(set(archived) - seen)
    return result
