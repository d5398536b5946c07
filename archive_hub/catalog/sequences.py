"""Gap-free 件号 allocation per fonds/year/保管期限/category, safe under concurrent runs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive_hub.catalog.models import ArchivalSequenceRow

SequenceKey = tuple[str, int, str, str]  # fonds_no, year, retention code, category code


def allocate(session: Session, wanted: dict[SequenceKey, int]) -> dict[SequenceKey, int]:
    """Reserve `n` consecutive 件号 per key inside the caller's transaction; returns the first of each.

    Keys are locked in sorted order so two concurrent runs can never deadlock. The numbers become
    visible only when the caller commits, together with the records that use them, so a rolled-back
    run leaves no gap.
    """
    first: dict[SequenceKey, int] = {}
    for key in sorted(wanted):
        count = wanted[key]
        if count <= 0:
            continue
        _ensure_row(session, key)
        row = session.execute(
            select(ArchivalSequenceRow)
            .where(
                ArchivalSequenceRow.fonds_no == key[0],
                ArchivalSequenceRow.year == key[1],
                ArchivalSequenceRow.retention == key[2],
                ArchivalSequenceRow.category == key[3],
            )
            .with_for_update()
        ).scalar_one()
        first[key] = row.last_item_no + 1
        row.last_item_no += count
    session.flush()
    return first


def _ensure_row(session: Session, key: SequenceKey) -> None:
    values = {"fonds_no": key[0], "year": key[1], "retention": key[2], "category": key[3], "last_item_no": 0}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(ArchivalSequenceRow).values(**values).on_conflict_do_nothing())


def keys_of(items: Iterable[SequenceKey]) -> dict[SequenceKey, int]:
    counts: dict[SequenceKey, int] = {}
    for key in items:
        counts[key] = counts.get(key, 0) + 1
    return counts
