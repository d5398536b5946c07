"""Archiving the hub's own registers (销毁清册, 移交清册) the moment they are final, through every source of
kind hub.registers (connectors/registers), so a register never waits for the next scheduled run."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow

REGISTERS_KIND = "hub.registers"


def archive_register(catalog: Catalog, key: str) -> str | None:
    """Sync the registers sources now; the 档号 the register `key` (销毁清册-0001, 移交清册-0001) got, or
    None when no such source is configured."""
    from archive_hub.pipeline import run_sync
    from archive_hub.sources import load_source, source_files

    sources = [s for s in map(load_source, source_files()) if s.kind == REGISTERS_KIND]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    for source in sources:
        run_sync(source.id, f"register-{key}-{stamp}")
    with catalog.reading() as session:
        return session.execute(
            select(ArchiveRecordRow.archival_code).where(
                ArchiveRecordRow.source_id.in_([s.id for s in sources]),
                ArchiveRecordRow.business_id == key,
                ArchiveRecordRow.status == "archived",
            )
        ).scalar()
