"""Booked once: the same e-invoice or file may not be archived with two records (财会〔2020〕6号).

An e-invoice or bank e-receipt attached to a second voucher is the classic double booking (重复报销,
重复入账). Every record claims, in its batch's 档号 turn and before any package is built, the SHA-256 of
each file it carries and the identity of each e-invoice among them (archive_sink/einvoice.py: the
same invoice as OFD on one voucher and as XML on the next shares no bytes, only its number). A record
presenting a file or an invoice another catalogued record holds is refused with both named, and goes
to quarantine. Both kinds are decided in one pass, so a record refused for either claims neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive_hub.catalog.bulk import select_in
from archive_hub.catalog.models import ArchiveRecordRow, AttachmentClaimRow, InvoiceClaimRow, utcnow
from archive_sink.einvoice import EInvoice

Owner = tuple[str, str]  # source_id, business_id


@dataclass(frozen=True)
class BookedInvoice:
    """An e-invoice read from one of a record's files."""

    invoice: EInvoice
    file_name: str
    sha256: str  # of that file

    def columns(self) -> dict[str, Any]:
        """invoice_claim's columns besides the key and its holder: what the invoice says, and where from."""
        inv = self.invoice
        return {
            "invoice_no": inv.number,
            "sha256": self.sha256,
            "carrier": inv.carrier,
            "issued": inv.issued,
            "total": inv.total,
            "seller_tax_id": inv.seller_tax_id,
        }


@dataclass(frozen=True)
class Presented:
    """A record about to be archived: its files as (SHA-256, file name), and the e-invoices among them."""

    business_id: str
    files: list[tuple[str, str]]
    invoices: Sequence[BookedInvoice] = field(default_factory=tuple)

    def claims(self) -> list[_Claim]:
        out = [_Claim(FILES, sha, name, {}) for sha, name in self.files]
        out += [
            _Claim(INVOICES, b.invoice.key, b.file_name, b.columns(), b.invoice.label())
            for b in self.invoices
        ]
        return out


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: there are two
class _Kind:
    table: Table
    key: str  # the primary-key column


FILES = _Kind(AttachmentClaimRow.__table__, "sha256")
INVOICES = _Kind(InvoiceClaimRow.__table__, "invoice_key")


@dataclass(frozen=True)
class _Claim:
    kind: _Kind
    key: str
    file_name: str
    values: dict[str, Any]  # the kind's further columns
    label: str = ""  # how a refusal names it (an invoice); a file is named by its SHA-256


def _catalogued(session: Session, owners: set[Owner]) -> dict[Owner, tuple[str, str | None]]:
    """(档号, 凭证号) of the owners that have a catalog row (archived, or reserved by a run)."""
    by_source: dict[str, list[str]] = {}
    for source_id, business_id in owners:
        by_source.setdefault(source_id, []).append(business_id)
    found = {}
    for source_id, ids in by_source.items():
        for business_id, code, voucher_no in select_in(
            session,
            ArchiveRecordRow.__table__,
            ("business_id", "archival_code", "voucher_no"),
            "business_id",
            ids,
            where={"source_id": source_id},
        ):
            found[(source_id, business_id)] = (code, voucher_no)
    return found


@dataclass(frozen=True)
class Refusal:
    """A record refused because a file it carries, or an invoice in it, belongs to another record."""

    file_name: str
    sha256: str  # the file's; for an invoice, the key it is booked under
    owner: Owner
    held: tuple[str, str | None] | None  # (档号, 凭证号) of the owner, once it has a catalog row
    invoice: str = ""  # the invoice's label when the refusal is for an invoice booked in other bytes

    def reason(self, source_id: str) -> str:
        holder = f"source record {self.owner[0]}:{self.owner[1]}"
        if self.held is not None:
            code, voucher_no = self.held
            holder = f"{code} ({voucher_no + ', ' if voucher_no else ''}{holder})"
        what = (
            f"e-invoice {self.invoice} in attachment {self.file_name!r}"
            if self.invoice
            else f"attachment {self.file_name!r} (SHA-256 {self.sha256[:16]}…)"
        )
        return (
            f"{what} is already archived with {holder}: "
            f"an e-invoice or receipt is booked only once (财会〔2020〕6号). If both records rightly carry this "
            f"{'invoice' if self.invoice else 'file'}, set duplicate_attachments: allow for source {source_id}"
        )


def claim_attachments(
    session: Session, source_id: str, run_id: str, presented: Sequence[Presented]
) -> dict[str, Refusal]:
    """Claim every file and e-invoice of every record, in the given (source) order, inside the caller's
    transaction.

    Returns the records refused, by business id; what they carry is not claimed. The owner of a refusal
    that is itself in `presented` has no 档号 yet (`held` is None): the caller names it once reserved.
    """
    wanted = [(p.business_id, p.claims()) for p in presented]
    keys: dict[_Kind, list[str]] = {}
    for _, claims in wanted:
        for c in claims:
            keys.setdefault(c.kind, []).append(c.key)
    if not keys:
        return {}
    owners: dict[tuple[_Kind, str], Owner] = {}
    for kind, values in keys.items():
        for key, src, bid in select_in(
            session, kind.table, (kind.key, "source_id", "business_id"), kind.key, sorted(set(values))
        ):
            owners[(kind, key)] = (src, bid)
    # Whether an owner has a catalog row matters only where someone else presents its file: a record
    # presenting its own files again (a re-run, a new version) costs no lookup.
    contested = {
        owners[(c.kind, c.key)]
        for business_id, claims in wanted
        for c in claims
        if owners.get((c.kind, c.key), (source_id, business_id)) != (source_id, business_id)
    }
    alive = _catalogued(session, contested)
    refused: dict[str, Refusal] = {}
    accepted: set[Owner] = set()
    # (kind, key) -> (new owner, the claim, stale owner replaced)
    taken: dict[tuple[_Kind, str], tuple[Owner, _Claim, Owner | None]] = {}
    for business_id, claims in wanted:
        me = (source_id, business_id)
        conflict = next(
            (
                (c, owners[(c.kind, c.key)])
                for c in claims
                if (c.kind, c.key) in owners
                and owners[(c.kind, c.key)] != me
                and (owners[(c.kind, c.key)] in alive or owners[(c.kind, c.key)] in accepted)
            ),
            None,
        )
        if conflict is not None:
            c, owner = conflict
            refused[business_id] = Refusal(c.file_name, c.key, owner, alive.get(owner), c.label)
            continue
        accepted.add(me)
        for c in claims:
            if owners.get((c.kind, c.key)) != me:
                taken[(c.kind, c.key)] = (me, c, owners.get((c.kind, c.key)))
                owners[(c.kind, c.key)] = me
    if not taken:
        return refused
    now = utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for kind in keys:
        fresh = [
            {
                kind.key: key,
                "source_id": me[0],
                "business_id": me[1],
                "file_name": c.file_name,
                "run_id": run_id,
                "claimed_at": now,
                **c.values,
            }
            for (k, key), (me, c, stale) in taken.items()
            if k is kind and stale is None
        ]
        if fresh:
            session.execute(insert(kind.table).on_conflict_do_nothing(), fresh)
    for (kind, key), (me, c, stale) in taken.items():
        if stale is not None:  # its record never got a catalog row: the claim passes to this record
            session.execute(
                update(kind.table)
                .where(
                    kind.table.c[kind.key] == key,
                    kind.table.c.source_id == stale[0],
                    kind.table.c.business_id == stale[1],
                )
                .values(
                    source_id=me[0],
                    business_id=me[1],
                    file_name=c.file_name,
                    run_id=run_id,
                    claimed_at=now,
                    **c.values,
                )
            )
    # Another source may have claimed a file between our read and our write: the claim row decides.
    held: dict[tuple[_Kind, str], Owner] = {}
    for kind in keys:
        mine = sorted(key for (k, key) in taken if k is kind)
        for key, src, bid in select_in(
            session, kind.table, (kind.key, "source_id", "business_id"), kind.key, mine
        ):
            held[(kind, key)] = (src, bid)
    lost = sorted(
        (kk for kk, (me, _, _) in taken.items() if held.get(kk) != me), key=lambda kk: (kk[0].key, kk[1])
    )
    for kk in lost:
        me, c, _ = taken[kk]
        if me[1] in refused:
            continue
        winner = held.get(kk, ("?", "?"))
        refused[me[1]] = Refusal(
            c.file_name, c.key, winner, _catalogued(session, {winner}).get(winner), c.label
        )
        for kind in keys:
            kept = [
                key
                for (k, key), (owner, _, _) in taken.items()
                if k is kind and owner == me and (k, key) not in lost
            ]
            if kept:
                session.execute(
                    delete(kind.table).where(
                        and_(
                            kind.table.c[kind.key].in_(kept),
                            kind.table.c.source_id == me[0],
                            kind.table.c.business_id == me[1],
                        )
                    )
                )
    return refused
