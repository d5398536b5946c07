"""Booked once: the same attachment bytes may not be archived with two records (财会〔2020〕6号).

An e-invoice or bank e-receipt attached to a second voucher is the classic double booking (重复报销,
重复入账). Every record claims the SHA-256 of each file it carries, in its batch's 档号 turn and before
any package is built; a record presenting a file another catalogued record holds is refused with both
named, and goes to quarantine. Exact bytes are what can be proven here; the same invoice re-exported
with other bytes needs the invoice's own number, which only a parser of that invoice format knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive_hub.catalog.bulk import select_in
from archive_hub.catalog.models import ArchiveRecordRow, AttachmentClaimRow, utcnow

Owner = tuple[str, str]  # source_id, business_id


@dataclass(frozen=True)
class Presented:
    """A record about to be archived and the files it carries: (SHA-256, file name) each."""

    business_id: str
    files: list[tuple[str, str]]


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
    """A record refused because a file it carries belongs to another record."""

    file_name: str
    sha256: str
    owner: Owner
    held: tuple[str, str | None] | None  # (档号, 凭证号) of the owner, once it has a catalog row

    def reason(self, source_id: str) -> str:
        holder = f"source record {self.owner[0]}:{self.owner[1]}"
        if self.held is not None:
            code, voucher_no = self.held
            holder = f"{code} ({voucher_no + ', ' if voucher_no else ''}{holder})"
        return (
            f"attachment {self.file_name!r} (SHA-256 {self.sha256[:16]}…) is already archived with {holder}: "
            f"an e-invoice or receipt is booked only once (财会〔2020〕6号). If both records rightly carry this "
            f"file, set duplicate_attachments: allow for source {source_id}"
        )


def claim_attachments(
    session: Session, source_id: str, run_id: str, presented: Sequence[Presented]
) -> dict[str, Refusal]:
    """Claim every file of every record, in the given (source) order, inside the caller's transaction.

    Returns the records refused, by business id; their files are not claimed. The owner of a refusal
    that is itself in `presented` has no 档号 yet (`held` is None): the caller names it once reserved.
    """
    table = AttachmentClaimRow.__table__
    hashes = sorted({sha for p in presented for sha, _ in p.files})
    if not hashes:
        return {}
    owners: dict[str, Owner] = {
        sha: (src, bid)
        for sha, src, bid in select_in(
            session, table, ("sha256", "source_id", "business_id"), "sha256", hashes
        )
    }
    # Whether an owner has a catalog row matters only where someone else presents its file: a record
    # presenting its own files again (a re-run, a new version) costs no lookup.
    contested = {
        owners[sha]
        for p in presented
        for sha, _ in p.files
        if owners.get(sha, (source_id, p.business_id)) != (source_id, p.business_id)
    }
    alive = _catalogued(session, contested)
    refused: dict[str, Refusal] = {}
    accepted: set[Owner] = set()
    claims: dict[str, tuple[Owner, str, Owner | None]] = {}  # sha -> (new owner, name, stale owner replaced)
    for record in presented:
        me = (source_id, record.business_id)
        conflict = next(
            (
                (sha, name, owners[sha])
                for sha, name in record.files
                if sha in owners and owners[sha] != me and (owners[sha] in alive or owners[sha] in accepted)
            ),
            None,
        )
        if conflict is not None:
            sha, name, owner = conflict
            refused[record.business_id] = Refusal(name, sha, owner, alive.get(owner))
            continue
        accepted.add(me)
        for sha, name in record.files:
            if owners.get(sha) != me:
                claims[sha] = (me, name, owners.get(sha))
                owners[sha] = me
    if not claims:
        return refused
    now = utcnow()
    fresh = [
        {
            "sha256": sha,
            "source_id": me[0],
            "business_id": me[1],
            "file_name": name,
            "run_id": run_id,
            "claimed_at": now,
        }
        for sha, (me, name, stale) in claims.items()
        if stale is None
    ]
    if fresh:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(insert(AttachmentClaimRow).on_conflict_do_nothing(), fresh)
    for sha, (me, name, stale) in claims.items():
        if stale is not None:  # its record never got a catalog row: the file passes to this record
            session.execute(
                update(AttachmentClaimRow)
                .where(
                    AttachmentClaimRow.sha256 == sha,
                    AttachmentClaimRow.source_id == stale[0],
                    AttachmentClaimRow.business_id == stale[1],
                )
                .values(source_id=me[0], business_id=me[1], file_name=name, run_id=run_id, claimed_at=now)
            )
    # Another source may have claimed a file between our read and our write: the claim row decides.
    held = {
        sha: (src, bid)
        for sha, src, bid in select_in(
            session, table, ("sha256", "source_id", "business_id"), "sha256", sorted(claims)
        )
    }
    lost = {sha for sha, (me, _, _) in claims.items() if held.get(sha) != me}
    for sha in sorted(lost):
        me, name, _ = claims[sha]
        if me[1] in refused:
            continue
        winner = held.get(sha, ("?", "?"))
        refused[me[1]] = Refusal(name, sha, winner, _catalogued(session, {winner}).get(winner))
        mine = [s for s, (owner, _, _) in claims.items() if owner == me and s not in lost]
        if mine:
            session.execute(
                delete(AttachmentClaimRow).where(
                    and_(
                        AttachmentClaimRow.sha256.in_(mine),
                        AttachmentClaimRow.source_id == me[0],
                        AttachmentClaimRow.business_id == me[1],
                    )
                )
            )
    return refused
