"""A catalog from before invoice claims: the e-invoices it already archived are claimed once, from the files.

Without this an invoice archived before the upgrade could be booked again in its other carrier, since
only its bytes were claimed. The identities live in the archived OFD/XML attachments, so the step runs
where the archive root is known (RunContext.open), once, before the first run archives anything.
Each invoice goes to the earliest package that carries it (package id order), as the claims would have.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, true
from sqlalchemy.dialects import postgresql, sqlite

from archive_hub.catalog.claims import BookedInvoice
from archive_hub.catalog.db import Catalog
from archive_hub.catalog.models import CatalogUpgradeRow, InvoiceClaimRow, utcnow
from archive_hub.catalog.packages import package_batches
from archive_sink.durability import read_bytes
from archive_sink.einvoice import read_einvoice
from archive_sink.ofd import Unreadable

CLAIM_ARCHIVED_INVOICES = "claim archived e-invoices"
_CARRIERS = (".xml", ".ofd")


def claim_archived_invoices(catalog: Catalog, archive_root: Path) -> str | None:
    """Perform the step if the catalog owes it; what it found, or None when nothing was owed."""
    with catalog.reading() as session:
        owed = session.get(CatalogUpgradeRow, CLAIM_ARCHIVED_INVOICES)
        if owed is None or owed.done_at is not None:
            return None
        claims: dict[str, dict[str, object]] = {}
        problems: list[str] = []
        for batch in package_batches(session, true()):
            for entry in batch:
                for f in entry.files:
                    if f.role != "attachment" or not f.path.lower().endswith(_CARRIERS):
                        continue
                    try:
                        invoice = read_einvoice(read_bytes(archive_root / entry.package.path / f.path))
                    except (OSError, Unreadable) as exc:
                        problems.append(
                            f"{entry.record.archival_code} v{entry.package.version} {f.path}: {exc}"
                        )
                        continue
                    if invoice is None or invoice.key in claims:
                        continue
                    file_name = f.path.rsplit("/", 1)[-1]
                    claims[invoice.key] = {
                        "invoice_key": invoice.key,
                        "source_id": entry.record.source_id,
                        "business_id": entry.record.business_id,
                        "file_name": file_name,
                        **BookedInvoice(invoice, file_name, f.sha256).columns(),
                        "run_id": entry.package.run_id,
                        "claimed_at": utcnow(),
                    }
    outcome = f"{len(claims)} e-invoice(s) claimed" + (
        f"; not read: {'; '.join(problems)}" if problems else ""
    )
    with catalog.transaction() as session:
        row = session.execute(
            select(CatalogUpgradeRow)
            .where(CatalogUpgradeRow.name == CLAIM_ARCHIVED_INVOICES)
            .with_for_update()
        ).scalar_one()
        if row.done_at is not None:  # another process did it meanwhile
            return None
        if claims:
            insert = postgresql.insert if catalog.is_postgres else sqlite.insert
            session.execute(insert(InvoiceClaimRow).on_conflict_do_nothing(), list(claims.values()))
        row.done_at, row.outcome = utcnow(), outcome
    return outcome
