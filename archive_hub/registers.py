"""Archiving the hub's own registers (销毁清册, 移交清册) the moment they are final, through every source of
kind hub.registers (connectors/registers), so a register never waits for the next scheduled run; and
finding the final ones that are not archived yet, for `verify`."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.bank_reconciliation_record import register_key
from archive_hub.catalog import Catalog
from archive_hub.catalog.models import (
    ArchiveRecordRow,
    BankReconciliationRow,
    DestructionListRow,
    TransferRow,
)

REGISTERS_KIND = "hub.registers"


def archive_registers(catalog: Catalog, keys: list[str]) -> dict[str, str | None]:
    """Sync the registers sources now, once whatever the number of registers (a sync archives every final
    one); the 档号 each of `keys` (销毁清册-0001, 移交清册-0001 ...) got, None for one no source archived
    (none is configured)."""
    from archive_hub.pipeline import run_sync

    sources = registers_source_ids()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    for source_id in sources:
        run_sync(source_id, f"register-{keys[0]}-{stamp}")
    with catalog.reading() as session:
        found = dict(
            session.execute(
                select(ArchiveRecordRow.business_id, ArchiveRecordRow.archival_code).where(
                    ArchiveRecordRow.source_id.in_(sources),
                    ArchiveRecordRow.business_id.in_(keys),
                    ArchiveRecordRow.status == "archived",
                )
            ).all()
        )
    return {key: found.get(key) for key in keys}


def archive_register(catalog: Catalog, key: str) -> str | None:
    """The 档号 one register got (see archive_registers)."""
    return archive_registers(catalog, [key])[key]


def registers_source_ids() -> list[str]:
    from archive_hub.sources import load_source, source_files

    return [s.id for s in map(load_source, source_files()) if s.kind == REGISTERS_KIND]


def unarchived_registers(session: Session, source_ids: list[str]) -> list[str]:
    """Executed 销毁清册, finished 移交清册 and kept 银行存款余额调节表 that no registers source has archived:
    附表一 keeps them (永久, 30年, 10年) as records, and the catalog rows alone are not that."""
    keys = (
        [
            f"销毁清册-{i:04d}"
            for i in session.execute(
                select(DestructionListRow.id).where(DestructionListRow.status == "destroyed")
            ).scalars()
        ]
        + [
            f"移交清册-{i:04d}"
            for i in session.execute(select(TransferRow.id).where(TransferRow.status == "done")).scalars()
        ]
        + [
            register_key(a, on)
            for a, on in session.execute(select(BankReconciliationRow.account, BankReconciliationRow.on))
        ]
    )
    archived: set[str] = set()
    for start in range(0, len(keys), 500):
        archived.update(
            session.execute(
                select(ArchiveRecordRow.business_id).where(
                    ArchiveRecordRow.source_id.in_(source_ids),
                    ArchiveRecordRow.business_id.in_(keys[start : start + 500]),
                    ArchiveRecordRow.status == "archived",
                )
            ).scalars()
        )
    return [
        f"{key}: final but not archived as a record (`archive-hub sync {source_ids[0]}` archives it)"
        for key in keys
        if key not in archived
    ]
