"""The bank inbox's side of the catalog: which files and statements it already holds, the skip
events, and the `bank_statement` / `bank_statement_entry` rows written in the archive transaction
(each booking stored once across overlapping intraday reports) for reconciliation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import (
    ArchiveRecordRow,
    BankStatementEntryRow,
    BankStatementRow,
    EventRow,
    QuarantineRow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from canonical_model.record import ArchiveRecord

PARSED_NAME = "statement.json"
SKIP_EVENT = "bank-duplicate-skipped"


def known_files(catalog_url: str | None, source_id: str, shas: list[str]) -> set[str]:
    """Files archived, quarantined or skipped as duplicates before: nothing new can come from them."""
    if not catalog_url or not shas:
        return set()
    catalog = Catalog(catalog_url)
    known: set[str] = set()
    try:
        with catalog.reading() as session:
            for chunk in _chunks(shas, 500):
                known.update(
                    session.execute(
                        select(ArchiveRecordRow.business_id).where(
                            ArchiveRecordRow.source_id == source_id,
                            ArchiveRecordRow.status == "archived",
                            ArchiveRecordRow.business_id.in_(chunk),
                        )
                    ).scalars()
                )
                # Refused before and still open in quarantine: the same bytes give the same refusal;
                # `archive-hub quarantine retry` re-drives them once the cause is fixed.
                known.update(
                    session.execute(
                        select(QuarantineRow.business_id).where(
                            QuarantineRow.source_id == source_id,
                            QuarantineRow.status == "open",
                            QuarantineRow.business_id.in_(chunk),
                        )
                    ).scalars()
                )
                known.update(_skipped(session, source_id, chunk))
    finally:
        catalog.dispose()
    return known


def skipped_files(catalog_url: str | None, source_id: str, shas: list[str]) -> set[str]:
    """Files skipped because every statement in them was archived from another file."""
    if not catalog_url or not shas:
        return set()
    catalog = Catalog(catalog_url)
    found: set[str] = set()
    try:
        with catalog.reading() as session:
            for chunk in _chunks(shas, 500):
                found.update(_skipped(session, source_id, chunk))
    finally:
        catalog.dispose()
    return found


def _skipped(session: Session, source_id: str, shas: Sequence[str]) -> set[str]:
    subjects = [f"{source_id}:{s}" for s in shas]
    rows = session.execute(
        select(EventRow.subject).where(EventRow.kind == SKIP_EVENT, EventRow.subject.in_(subjects))
    ).scalars()
    return {subject.split(":", 1)[1] for subject in rows}


def archived_statements(catalog_url: str | None, fingerprints: list[str]) -> dict[str, str]:
    """fingerprint → 档号 of the statements already in the catalog."""
    if not catalog_url:
        return {}
    catalog = Catalog(catalog_url)
    try:
        with catalog.reading() as session:
            return dict(
                session.execute(
                    select(BankStatementRow.fingerprint, BankStatementRow.archival_code).where(
                        BankStatementRow.fingerprint.in_(fingerprints)
                    )
                ).all()
            )
    finally:
        catalog.dispose()


def note_skipped(catalog_url: str | None, source_id: str, skipped: list[dict[str, Any]]) -> None:
    if not catalog_url or not skipped:
        return
    catalog = Catalog(catalog_url)
    try:
        with catalog.transaction() as session:
            append(
                session,
                [
                    Event(
                        SKIP_EVENT,
                        f"{source_id}:{s['sha256']}",
                        {k: v for k, v in s.items() if k != "sha256"},
                    )
                    for s in skipped
                ],
            )
    finally:
        catalog.dispose()


def record_archived(session: Session, source_id: str, items: list[tuple[ArchiveRecord, str, int]]) -> None:
    """Statements and booked entries of the archived files, inside the archive transaction."""
    statement_rows: list[dict[str, Any]] = []
    entry_rows: list[dict[str, Any]] = []
    for record, code, package_id in items:
        parsed = next((a for a in reversed(record.attachments) if a.name == PARSED_NAME), None)
        if parsed is None:
            continue
        doc = json.loads(Path(parsed.uri.removeprefix("file://")).read_text(encoding="utf-8"))
        common = {
            "archival_code": code,
            "package_id": package_id,
            "source_id": source_id,
            "file_sha256": record.source.business_id,
        }
        for s in doc["statements"]:
            statement_rows.append(
                {
                    "fingerprint": s["fingerprint"],
                    "account": s["account"],
                    "currency": s["currency"],
                    "format": s["format"],
                    "statement_id": s["statement_id"],
                    "statement_number": s["statement_number"],
                    "sequence_number": s["sequence_number"],
                    "opening_balance": _decimal(s["opening_balance"]),
                    "opening_date": _date(s["opening_balance_date"]),
                    "closing_balance": _decimal(s["closing_balance"]),
                    "closing_date": _date(s["closing_balance_date"]),
                    "entry_count": s["entry_count"],
                    "balance_check": s["balance_check"],
                    **common,
                }
            )
            entry_rows.extend(_entry_rows(s, common))
    if statement_rows:
        _insert_ignoring_duplicates(session, BankStatementRow, statement_rows)
    if entry_rows:
        _insert_ignoring_duplicates(session, BankStatementEntryRow, entry_rows)


def _entry_rows(statement: dict[str, Any], common: dict[str, Any]) -> list[dict[str, Any]]:
    """Booked entries only: a pending entry becomes a booking later and is stored then."""
    rows = []
    seen: dict[str, int] = {}
    for e, key in zip(statement["entries"], statement["entry_keys"], strict=True):
        if e.get("status", "booked") != "booked":
            continue
        digest = hashlib.sha256(key.encode()).hexdigest()
        seen[digest] = seen.get(digest, 0) + 1
        rows.append(
            {
                "account": statement["account"],
                "currency": e["currency"],
                "statement_fingerprint": statement["fingerprint"],
                "entry_key": key,
                "entry_hash": digest,
                "occurrence": seen[digest],
                "booking_date": _date(e["booking_date"]),
                "value_date": _date(e["value_date"]),
                "amount": Decimal(e["amount"]),
                "reversal": bool(e["reversal"]),
                "bank_reference": _cut(e["bank_reference"], 200),
                "customer_reference": _cut(e["customer_reference"], 200),
                "end_to_end_id": _cut(e["end_to_end_id"], 200),
                "counterparty_name": e["counterparty_name"],
                "counterparty_account": _cut(e["counterparty_account"], 100),
                "remittance": e["remittance"],
                "bank_transaction_code": _cut(e["bank_transaction_code"], 100),
                "position": _cut(e["position"], 200) or "",
                **common,
            }
        )
    return rows


def _insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for chunk in _chunks(rows, 500):
        session.execute(insert(table).on_conflict_do_nothing(), chunk)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value[:10]) if value else None


def _decimal(value: str | None) -> Decimal | None:
    return Decimal(value) if value not in (None, "") else None


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value
