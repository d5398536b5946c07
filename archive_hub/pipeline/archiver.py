"""The Archiver: one batch of valid records to published packages and catalog rows.

Per batch: read attachments (unreadable → quarantine) → compare fingerprints with the catalog
(unchanged → nothing new) → claim each attachment's SHA-256 (a file another record is archived with →
quarantine, booked once) → reserve 档号 for new records in one transaction (reusing abandoned
reservations, so 件号 stay gap-free) → stage every package, make the batch durable with one syncfs,
read every file back and check it → publish each by rename → one catalog transaction for packages,
files, record versions and events. A crash anywhere leaves reserved 档号 that the re-run reuses and
staging leftovers that it deletes; a package published just before the crash is recognised by its
fingerprint and adopted with its on-disk hashes, never written twice.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.catalog import quarantine, sequences
from archive_hub.catalog.bulk import insert_rows, select_in, update_rows
from archive_hub.catalog.claims import BookedInvoice, Presented, Refusal, claim_attachments
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import ArchiveRecordRow, FileRow, PackageRow, utcnow
from archive_hub.catalog.quarantine import QuarantineEntry
from archive_hub.catalog.records import KnownRecord, known_records
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.validate import raw_payloads
from archive_sink.durability import read_bytes
from archive_sink.einvoice import read_einvoice
from archive_sink.filesystem import FilesystemArchive
from archive_sink.formats import OFD, attachment_problem, sniff
from archive_sink.ofd import OfdPackage, Unreadable
from archive_sink.ofd_signatures import altered, check_signatures
from archive_sink.package import ArchivePackage, AttachmentBytes, build_package, fingerprint, hash_sm3
from archive_sink.virus_scan import IN_FLIGHT, ClamdScanner, ScanRefused
from canonical_model.archival_code import ArchivalCode
from canonical_model.record import ArchiveRecord
from canonical_model.retention import fiscal_year_end


class AttachmentError(Exception):
    pass


@dataclass
class Planned:
    record: ArchiveRecord
    attachments: list[AttachmentBytes]
    fingerprint: str
    known: KnownRecord | None
    version: int
    archival_code: str = ""
    item_no: int = 0
    record_id: int = 0
    package: ArchivePackage | None = None
    scanned_with: str | None = None  # 病毒检测: the engine and signatures the attachments were scanned with


def _attachment_location(record: ArchiveRecord, index: int) -> str:
    att = record.attachments[index]
    if att.uri.startswith("refused:"):  # the connector would not resolve it (e.g. a path outside its root)
        raise AttachmentError(f"attachment {index + 1} {att.name!r}: {att.uri.removeprefix('refused:')}")
    return att.uri.removeprefix("file://")


def read_attachment(record: ArchiveRecord, index: int) -> AttachmentBytes:
    att = record.attachments[index]
    uri = _attachment_location(record, index)
    try:
        data = read_bytes(uri)
    except OSError as exc:
        raise AttachmentError(
            f"attachment {index + 1} {att.name!r} at {uri} cannot be read: {exc.strerror or exc}"
        ) from None
    if att.size is not None and att.size != len(data):
        raise AttachmentError(
            f"attachment {index + 1} {att.name!r} at {uri} has {len(data)} bytes but the source says {att.size}"
        )
    found = sniff(data)  # once: the format checks, the invoice reader and the signature check share it
    problem = attachment_problem(att.media_type, data, found)
    if problem:
        raise AttachmentError(f"attachment {index + 1} {att.name!r} at {uri} {problem}")
    try:
        package = OfdPackage(data) if found is OFD else None  # opened and its OFD.xml parsed once
        invoice = read_einvoice(package or data, found)
        signatures = tuple(check_signatures(package)) if package else ()
    except Unreadable as exc:
        raise AttachmentError(f"attachment {index + 1} {att.name!r} at {uri}: {exc}") from None
    changed = altered(signatures)
    if changed:
        raise AttachmentError(
            f"attachment {index + 1} {att.name!r} at {uri} was changed after it was signed "
            f"(真实性: the OFD's 电子签章 no longer matches): {changed}"
        )
    return AttachmentBytes(att.name, att.media_type, data, invoice, signatures)


def attachment_checks(attachments: list[AttachmentBytes], invoices_claimed: bool) -> list[str]:
    """The 四性检测 made on a record's attachments at archiving, as its metadata.xml records them."""
    checks = []
    invoices: dict[str, tuple[str, list[str]]] = {}  # key -> (label, the attachments that carry it)
    for index, a in enumerate(attachments, start=1):
        checks += [f"电子签章: 附件 {index} {a.name}: {s.described()}" for s in a.signatures]
        if a.invoice and invoices_claimed:
            invoices.setdefault(a.invoice.key, (a.invoice.label(), []))[1].append(f"附件 {index} {a.name}")
    checks += [
        f"发票查重 (财会〔2020〕6号): {label} ({', '.join(carriers)}) 未被其他记录入账"
        for label, carriers in invoices.values()
    ]
    return checks


def sequence_key(record: ArchiveRecord) -> sequences.SequenceKey:
    return (record.fonds.fonds_no, record.fiscal_year, record.retention.value, record.category.code)


def search_text(record: ArchiveRecord) -> str:
    parts = [record.title, record.summary, record.voucher_no or "", record.document_no or ""]
    if record.voucher:
        for line in record.voucher.lines:
            parts += [line.summary, line.account_code, line.account_name, *line.auxiliary.values()]
    parts += [a.name for a in record.agents]
    return " ".join(dict.fromkeys(p for p in parts if p))


# The search and listing columns a record row carries (in the order record_values gives them).
RECORD_COLUMNS = (
    "title",
    "record_date",
    "fiscal_year",
    "period",
    "book_code",
    "voucher_no",
    "amount_total",
    "currency",
    "search_text",
    "retention_due",
)


def record_values(record: ArchiveRecord) -> tuple[Any, ...]:
    v = record.voucher
    return (
        record.title,
        record.date,
        record.fiscal_year,
        record.period,
        v.book_code if v else None,
        record.voucher_no,
        record.amount_total,
        record.currency,
        search_text(record),
        record.retention.due_date(fiscal_year_end(record.fiscal_year)),
    )


def record_columns(record: ArchiveRecord) -> dict[str, Any]:
    return dict(zip(RECORD_COLUMNS, record_values(record), strict=True))


# Column orders of the rows the archive step writes through catalog.bulk (tuples, not dicts).
FILE_COLUMNS = ("package_id", "path", "role", "media_type", "size", "sha256", "sm3")
PACKAGE_COLUMNS = (
    "record_id",
    "version",
    "path",
    "fingerprint",
    "manifest_sha256",
    "manifest_sm3",
    "file_count",
    "byte_size",
    "previous_package_id",
    "source_changed_at",
    "run_id",
    "created_at",
)
STATUS_COLUMNS = ("status", "current_version", "updated_at")
RESERVATION_COLUMNS = (
    "source_id",
    "business_id",
    "archival_code",
    "fonds_no",
    "year",
    "retention",
    "category",
    "item_no",
    "status",
    "reserved_run",
    "current_version",
    *RECORD_COLUMNS,
    "created_at",
    "updated_at",
)


def package_ids(session: Session, versions: list[tuple[int, int]]) -> list[int]:
    """Ids of the package rows just inserted, in the order of `versions` ((record_id, version) pairs)."""
    rows = select_in(
        session,
        PackageRow.__table__,
        ("record_id", "version", "id"),
        "record_id",
        sorted({record_id for record_id, _ in versions}),
    )
    found = {(record_id, version): package_id for record_id, version, package_id in rows}
    return [found[v] for v in versions]


class Archiver:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        # One staging area per source: cleaning up after a crashed run never touches another source's work.
        self.store = FilesystemArchive(ctx.settings.archive_root, ctx.settings.staging_root / ctx.source.id)
        self.counts = {
            "archived": 0,
            "new_versions": 0,
            "unchanged": 0,
            "quarantined": 0,
            "quarantined_new": 0,
            "bytes": 0,
            "scanned": 0,
        }
        self.scanner = ClamdScanner(ctx.settings.clamd_url) if ctx.settings.clamd_url else None
        self.scanner_version: str | None = None

    def run(self, records: list[ArchiveRecord], *, turn: AbstractContextManager[Any] | None = None) -> None:
        """Archive one batch. With several workers, `turn` is this batch's turn to claim its files and reserve
        档号 (see turns.py)."""
        ctx = self.ctx
        failures: list[tuple[str, str]] = []

        def load(record: ArchiveRecord) -> tuple[ArchiveRecord, list[AttachmentBytes] | str]:
            try:
                return record, [read_attachment(record, i) for i in range(len(record.attachments))]
            except AttachmentError as exc:
                return record, str(exc)

        loaded = [load(r) for r in records]
        ready = []
        for record, atts in loaded:
            if isinstance(atts, str):
                failures.append((record.source.business_id, atts))
            else:
                ready.append((record, atts))

        with ctx.catalog.reading() as session:
            known = known_records(session, ctx.source.id, [r.source.business_id for r, _ in ready])
        plan: list[Planned] = []
        for record, atts in ready:
            fp = fingerprint(record, atts)
            k = known.get(record.source.business_id)
            if k and k.status in ("archived", "destroyed") and k.current_fingerprint == fp:
                self.counts["unchanged"] += 1
                continue
            if k and k.status == "destroyed":  # 销毁 is final: a change to it is an anomaly to look at
                failures.append(
                    (
                        record.source.business_id,
                        f"{k.archival_code} was destroyed under a 销毁清册; the source changed it since, "
                        "and a destroyed record is never archived again",
                    )
                )
                continue
            plan.append(Planned(record, atts, fp, k, (k.current_version if k else 0) + 1))

        plan = self._scan(plan, failures)
        with turn or nullcontext():  # 件号 follow the source: batches claim files and reserve in order
            plan, refused = self._claim_and_reserve(plan) if plan else (plan, {})
        failures.extend(self._refusals(refused, plan))
        if plan:
            self._write(plan)
            self._register(plan)
        self._quarantine(failures)
        ctx.progress("archive", len(records), None)

    def _scan(self, plan: list[Planned], failures: list[tuple[str, str]]) -> list[Planned]:
        """病毒检测 of every attachment about to be archived (an unchanged record's are not read again). An
        infected record is refused by name of the signature; a scanner that does not answer raises
        ScannerUnavailable, which fails the step: nothing is archived unscanned."""
        if self.scanner is None or not any(p.attachments for p in plan):
            return plan
        scanner = self.scanner
        if self.scanner_version is None:
            self.scanner_version = scanner.version()

        def verdict(a: AttachmentBytes) -> str | None:  # what is wrong with it, if anything
            try:
                sig = scanner.scan(a.data)
            except ScanRefused as exc:
                return f"{a.name!r} was not scanned: {exc}"
            if sig:
                return (
                    f"{a.name!r}: virus found by {self.scanner_version}: {sig}; "
                    "not archived, and its bytes are not copied into the hub"
                )
            return None

        # A few files in flight at once: clamd scans each in a thread of its own, and one at a time the
        # round trips leave it idle (measured: 1.17 ms a 50 KB file alone, 0.43 ms with two in flight).
        files = [a for p in plan for a in p.attachments]
        with ThreadPoolExecutor(min(IN_FLIGHT, len(files))) as pool:
            verdicts = iter(list(pool.map(verdict, files)))  # a scanner that fails raises here
        clean = []
        for p in plan:
            found = [
                f"attachment {i} {v}"
                for i, _ in enumerate(p.attachments, 1)
                if (v := next(verdicts)) is not None
            ]
            self.counts["scanned"] += len(p.attachments)
            if found:
                failures.append((p.record.source.business_id, "; ".join(found)))
            else:
                p.scanned_with = self.scanner_version if p.attachments else None
                clean.append(p)
        return clean

    def _quarantine(self, failures: list[tuple[str, str]]) -> None:
        if not failures:
            return
        ctx = self.ctx
        raw = raw_payloads(ctx, {key for key, _ in failures})
        entries = [
            QuarantineEntry(
                ctx.source.id, ctx.stream.name, key, "archive", reason, raw.get(key, "{}"), ctx.mapping.label
            )
            for key, reason in failures
        ]
        with ctx.catalog.transaction() as session:
            self.counts["quarantined_new"] += quarantine.put(session, ctx.run_id, entries)
        self.counts["quarantined"] += len(entries)

    def _claim_and_reserve(self, plan: list[Planned]) -> tuple[list[Planned], dict[str, Refusal]]:
        """One transaction in the batch's turn: claim every file (catalog/claims.py: a record carrying a file
        another record holds is refused before it gets a 档号), then give each new record its 档号."""
        for p in plan:
            if p.known:
                p.archival_code, p.item_no, p.record_id = (
                    p.known.archival_code,
                    p.known.item_no,
                    p.known.record_id,
                )
        presented = (
            [
                Presented(
                    p.record.source.business_id,
                    [(a.sha256, a.name) for a in p.attachments],
                    [BookedInvoice(a.invoice, a.name, a.sha256) for a in p.attachments if a.invoice],
                )
                for p in plan
                if p.attachments
            ]
            if self.ctx.source.duplicate_attachments != "allow"
            else []
        )
        new = [p for p in plan if p.known is None]
        if not presented and not new:
            return plan, {}
        with self.ctx.catalog.transaction() as session:
            refused = claim_attachments(session, self.ctx.source.id, self.ctx.run_id, presented)
            if refused:
                plan = [p for p in plan if p.record.source.business_id not in refused]
                new = [p for p in new if p.record.source.business_id not in refused]
            if new:
                self._reserve(session, new)
        return plan, refused

    def _refusals(self, refused: dict[str, Refusal], plan: list[Planned]) -> list[tuple[str, str]]:
        """Quarantine reasons; an owner from this very batch is named by the 档号 it was just given."""
        source = self.ctx.source.id
        here = {(source, p.record.source.business_id): (p.archival_code, p.record.voucher_no) for p in plan}
        return [
            (key, (r if r.held else replace(r, held=here.get(r.owner))).reason(source))
            for key, r in refused.items()
        ]

    def _reserve(self, session: Session, new: list[Planned]) -> None:
        """Give each new record its 档号 in the caller's transaction (gap-free: numbers and rows commit together)."""
        rule = self.ctx.code_rule
        # First reuse 档号 that an earlier run reserved for a record that never got its package (it
        # turned invalid, or its attachment vanished): the 件号 sequence stays gap-free.
        stale = self._stale_reservations(session, {sequence_key(p.record) for p in new})
        fresh = []
        for p in new:
            rows_for_key = stale.get(sequence_key(p.record))
            if rows_for_key:
                row = rows_for_key.pop(0)
                p.item_no, p.archival_code, p.record_id = row.item_no, row.archival_code, row.id
                row.business_id, row.reserved_run, row.updated_at = (
                    p.record.source.business_id,
                    self.ctx.run_id,
                    utcnow(),
                )
                for column, value in record_columns(p.record).items():
                    setattr(row, column, value)
            else:
                fresh.append(p)
        session.flush()
        next_no = sequences.allocate(session, sequences.keys_of(sequence_key(p.record) for p in fresh))
        rows = []
        now = utcnow()
        for p in fresh:
            key = sequence_key(p.record)
            p.item_no = next_no[key]
            next_no[key] += 1
            code = ArchivalCode(
                fonds_no=key[0],
                year=key[1],
                retention=p.record.retention,
                category=key[3],
                item_no=p.item_no,
            )
            p.archival_code = rule.render(code)
            rows.append(
                (
                    self.ctx.source.id,
                    p.record.source.business_id,
                    p.archival_code,
                    *key,
                    p.item_no,
                    "reserved",
                    self.ctx.run_id,
                    0,
                    *record_values(p.record),
                    now,
                    now,
                )
            )
        insert_rows(session, ArchiveRecordRow.__table__, RESERVATION_COLUMNS, rows)
        found = select_in(
            session,
            ArchiveRecordRow.__table__,
            ("business_id", "id"),
            "business_id",
            [p.record.source.business_id for p in fresh],
            where={"source_id": self.ctx.source.id},
        )
        ids = dict(found)
        for p in fresh:
            p.record_id = ids[p.record.source.business_id]

    def _stale_reservations(
        self, session: Session, keys: set[sequences.SequenceKey]
    ) -> dict[sequences.SequenceKey, list[ArchiveRecordRow]]:
        """Reservations of this source left by earlier runs (this run's own are still in flight)."""
        found: dict[sequences.SequenceKey, list[ArchiveRecordRow]] = {}
        if not keys:
            return found
        rows = session.execute(
            select(ArchiveRecordRow)
            .where(
                ArchiveRecordRow.source_id == self.ctx.source.id,
                ArchiveRecordRow.status == "reserved",
                (ArchiveRecordRow.reserved_run != self.ctx.run_id) | ArchiveRecordRow.reserved_run.is_(None),
            )
            .order_by(ArchiveRecordRow.item_no)
            .with_for_update()
        ).scalars()
        for row in rows:
            key = (row.fonds_no, row.year, row.retention, row.category)
            if key in keys:
                found.setdefault(key, []).append(row)
        return found

    def _write(self, plan: list[Planned]) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        hash_sm3([a for p in plan for a in p.attachments])

        def build_and_stage(p: Planned):  # type: ignore[no-untyped-def]
            previous = None
            if p.known and p.known.current_path:
                previous = {
                    "path": p.known.current_path,
                    "manifest_sha256": p.known.current_manifest_sha256 or "",
                }
            p.package = build_package(
                p.record,
                p.attachments,
                archival_code=p.archival_code,
                item_no=p.item_no,
                version=p.version,
                previous=previous,
                archived_at=now,
                retention_due=p.record.retention.due_date(fiscal_year_end(p.record.fiscal_year)),
                record_fingerprint=p.fingerprint,
                scanned_with=p.scanned_with,
                checks=attachment_checks(p.attachments, self.ctx.source.duplicate_attachments != "allow"),
            )
            return self.store.stage(p.package)

        staged = [build_and_stage(p) for p in plan]
        self.store.sync()
        for item in staged:  # staged → durable → read back and verified → published
            self.store.verify_staged(item)
        published = []
        for p, item in zip(plan, staged, strict=True):
            path, p.package = self.store.publish(item)
            published.append(path)
        self.store.sync_published(published)

    def _register(self, plan: list[Planned]) -> None:
        ctx = self.ctx
        now = utcnow()
        # Rows are built before the transaction, so the catalog's write lock is held only to write them.
        package_rows = []
        for p in plan:
            pkg = p.package
            assert pkg is not None
            changed_at = p.record.source.changed_at
            package_rows.append(
                (
                    p.record_id,
                    p.version,
                    pkg.relative_path,
                    pkg.fingerprint,
                    pkg.tag("manifest-sha256.txt").sha256,
                    pkg.tag("manifest-sm3.txt").sm3,
                    len(pkg.files),
                    pkg.byte_size,
                    p.known.current_package_id if p.known else None,
                    changed_at.replace(tzinfo=None) if changed_at else None,
                    ctx.run_id,
                    now,
                )
            )
        # A 档号 reserved by this run was written with this very record's columns: only its status
        # changes. New versions, and reservations left by an earlier run, get their columns rewritten.
        fresh = [
            p
            for p in plan
            if p.known is None or (p.known.status == "reserved" and p.known.reserved_run == ctx.run_id)
        ]
        fresh_ids = {p.record_id for p in fresh}
        status_updates = [("archived", p.version, now, p.record_id) for p in fresh]
        record_updates = [
            ("archived", p.version, now, *record_values(p.record), p.record_id)
            for p in plan
            if p.record_id not in fresh_ids
        ]
        records = ArchiveRecordRow.__table__
        with ctx.catalog.transaction() as session:
            insert_rows(session, PackageRow.__table__, PACKAGE_COLUMNS, package_rows)
            ids = package_ids(session, [(p.record_id, p.version) for p in plan])
            file_rows = [
                (package_id, f.path, f.role, f.media_type, len(f.data), f.sha256, f.sm3)
                for p, package_id in zip(plan, ids, strict=True)
                for f in p.package.files  # type: ignore[union-attr]
            ]
            insert_rows(session, FileRow.__table__, FILE_COLUMNS, file_rows)
            update_rows(session, records, STATUS_COLUMNS, "id", status_updates)
            update_rows(session, records, (*STATUS_COLUMNS, *RECORD_COLUMNS), "id", record_updates)
            events = []
            for p, package_id in zip(plan, ids, strict=True):
                kind = "archived" if p.version == 1 else "new-version"
                events.append(
                    Event(
                        kind,
                        p.archival_code,
                        {
                            "source": f"{ctx.source.id}:{p.record.source.business_id}",
                            "version": p.version,
                            "package_id": package_id,
                            "manifest_sha256": p.package.tag("manifest-sha256.txt").sha256,  # type: ignore[union-attr]
                            "fingerprint": p.fingerprint,
                        },
                        ctx.run_id,
                    )
                )
            append(session, events)
            hook = getattr(ctx.stream, "on_archived", None)
            if hook is not None:  # e.g. the bank connector records statement entries for reconciliation
                hook(
                    session,
                    [
                        (p.record, p.archival_code, package_id)
                        for p, package_id in zip(plan, ids, strict=True)
                    ],
                )
            quarantine.resolve(
                session, ctx.run_id, ctx.source.id, [p.record.source.business_id for p in plan]
            )
        for p in plan:
            self.counts["archived" if p.version == 1 else "new_versions"] += 1
            self.counts["bytes"] += p.package.byte_size  # type: ignore[union-attr]
            p.attachments = []  # free memory early
