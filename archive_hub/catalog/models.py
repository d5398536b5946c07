"""Catalog tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ArchiveRecordRow(Base):
    """One 件: its 档号 parts, search fields and the current package version."""

    __tablename__ = "archive_record"
    __table_args__ = (
        UniqueConstraint("source_id", "business_id", name="uq_record_source"),
        UniqueConstraint("fonds_no", "year", "retention", "category", "item_no", name="uq_record_item"),
        Index("ix_record_voucher", "book_code", "fiscal_year", "period", "voucher_no"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(String(100))
    business_id: Mapped[str] = mapped_column(String(200))
    archival_code: Mapped[str] = mapped_column(String(100), unique=True)  # 档号
    fonds_no: Mapped[str] = mapped_column(String(20))
    year: Mapped[int] = mapped_column(Integer)
    retention: Mapped[str] = mapped_column(String(4))
    category: Mapped[str] = mapped_column(String(4))
    item_no: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))  # reserved / archived / destroyed
    reserved_run: Mapped[str | None] = mapped_column(String(250), nullable=True)  # run that holds the 档号
    current_version: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(Text)
    record_date: Mapped[dt.date] = mapped_column(Date)
    fiscal_year: Mapped[int] = mapped_column(Integer)
    period: Mapped[int | None] = mapped_column(Integer, nullable=True)
    book_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    voucher_no: Mapped[str | None] = mapped_column(String(40), nullable=True)
    amount_total: Mapped[Decimal | None] = mapped_column(Numeric(18, 2), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    search_text: Mapped[str] = mapped_column(Text, default="")
    retention_due: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PackageRow(Base):
    """One version of a record's archive package; versions are never overwritten."""

    __tablename__ = "archive_package"
    __table_args__ = (UniqueConstraint("record_id", "version", name="uq_package_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # no index of its own: uq_package_version (record_id, version) serves lookups by record
    record_id: Mapped[int] = mapped_column(ForeignKey("archive_record.id"))
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))  # relative to the archive root
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical content
    manifest_sha256: Mapped[str] = mapped_column(String(64))  # hash of manifest-sha256.txt
    manifest_sm3: Mapped[str] = mapped_column(String(64))
    file_count: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    previous_package_id: Mapped[int | None] = mapped_column(ForeignKey("archive_package.id"), nullable=True)
    source_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    run_id: Mapped[str] = mapped_column(String(250))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class FileRow(Base):
    __tablename__ = "archive_file"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("archive_package.id"), index=True)
    path: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sm3: Mapped[str] = mapped_column(String(64))


class AttachmentClaimRow(Base):
    """The source record that first presented a file's bytes as an attachment (财会〔2020〕6号: an
    e-invoice or bank receipt is booked once).

    Claimed in each batch's 档号 turn, batch after batch in source order, before any package is built, so
    two vouchers carrying the same invoice never both pass, whichever worker or source is faster. A claim
    whose record never got a catalog row (its run died, or it was quarantined and its reservation reused)
    is stale and passes to the next record that presents the file.
    """

    __tablename__ = "attachment_claim"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(100))
    business_id: Mapped[str] = mapped_column(String(200))
    file_name: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str] = mapped_column(String(250))
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class InvoiceClaimRow(Base):
    """The source record that first booked an e-invoice, by the invoice's own identity (财会〔2020〕6号).

    The same invoice in other bytes (its OFD on one voucher, its XML on the next) shares no SHA-256, so
    it is claimed a second time by its number (archive_sink/einvoice.py), in the same transaction and
    with the same rules as the file claims. The facts read from the invoice make `search --invoice`
    answer which 件 booked it.
    """

    __tablename__ = "invoice_claim"

    invoice_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # 号码, or 代码-号码
    invoice_no: Mapped[str] = mapped_column(String(32), index=True)
    source_id: Mapped[str] = mapped_column(String(100))
    business_id: Mapped[str] = mapped_column(String(200))
    file_name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the file it was read from
    carrier: Mapped[str] = mapped_column(String(100))
    issued: Mapped[str | None] = mapped_column(String(40))
    total: Mapped[str | None] = mapped_column(String(40))
    seller_tax_id: Mapped[str | None] = mapped_column(String(40))
    run_id: Mapped[str] = mapped_column(String(250))
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CatalogUpgradeRow(Base):
    """A one-time step an older catalog still owes, which needs more than SQL (the archive's files).

    create_schema records it when it adds a table an existing catalog had no rows for; the first run
    that knows the archive root performs it and stamps `done_at`.
    """

    __tablename__ = "catalog_upgrade"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(Text)


class DestructionHoldRow(Base):
    """A record kept past its 保管期限 whatever the appraisal says: 未结清的债权债务 (Art. 18), a dispute, an
    audit in progress. A record under a hold is never put on a 销毁清册, and one held after its list was
    drawn up stops that list from being executed."""

    __tablename__ = "destruction_hold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("archive_record.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class DestructionListRow(Base):
    """A 销毁清册 (kept 永久 under 附表一): drawn up from an appraisal (鉴定意见), signed, then executed
    under supervision (监销). `content_hash` covers every listed record with the manifest of each of its
    versions, so what the signatories approved is exactly what gets destroyed."""

    __tablename__ = "destruction_list"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(12))  # draft / destroying / destroyed / withdrawn
    judged_on: Mapped[dt.date] = mapped_column(Date)  # due by this date
    opinion: Mapped[str] = mapped_column(Text)  # 鉴定意见
    drawn_by: Mapped[str] = mapped_column(String(100))
    drawn_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    content_hash: Mapped[str] = mapped_column(String(64))
    witnesses: Mapped[dict] = mapped_column(JSON, default=dict)  # 监销人 by role
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class DestructionItemRow(Base):
    """One 件 on a 销毁清册, with what the list shows of it (the catalog row stays after destruction)."""

    __tablename__ = "destruction_item"

    list_id: Mapped[int] = mapped_column(ForeignKey("destruction_list.id"), primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("archive_record.id"), primary_key=True, index=True)
    archival_code: Mapped[str] = mapped_column(String(100))


class DestructionSignatureRow(Base):
    """A signature on a 销毁清册 (Art. 18: 单位负责人, 档案管理机构负责人, 会计管理机构负责人 and the two
    经办人), bound to the list's content hash at the time of signing."""

    __tablename__ = "destruction_signature"

    list_id: Mapped[int] = mapped_column(ForeignKey("destruction_list.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(30), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LoanRow(Base):
    """借阅: a verified copy of one package version handed to a borrower until a due date (利用登记)."""

    __tablename__ = "loan"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("archive_record.id"), index=True)
    archival_code: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    borrower: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(Text)
    lent_by: Mapped[str] = mapped_column(String(100))
    lent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    due: Mapped[dt.date] = mapped_column(Date)
    path: Mapped[str] = mapped_column(Text)  # where the copy was handed out
    returned_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    return_state: Mapped[str | None] = mapped_column(String(10), nullable=True)  # intact / altered / missing
    return_problems: Mapped[str] = mapped_column(Text, default="")


class TransferRow(Base):
    """移交: a verified set of packages handed to another custodian, with its 移交清册 (kept 30年 under 附表一).

    `register_sha256` is the hash of the 移交清册 XML handed over; the same bytes are kept under the hub's
    home and archived as a record of their own (connectors/registers)."""

    __tablename__ = "transfer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(12))  # preparing / done / failed / interrupted
    code_prefix: Mapped[str] = mapped_column(String(100))
    receiver: Mapped[str] = mapped_column(Text)  # 接收单位
    people: Mapped[dict] = mapped_column(JSON, default=dict)  # 移交人, 接收人, 监交人
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    destination: Mapped[str] = mapped_column(Text)
    records: Mapped[int] = mapped_column(Integer, default=0)
    packages: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    register_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    register_path: Mapped[str | None] = mapped_column(Text, nullable=True)


class BankReconciliationRow(Base):
    """A balanced 银行存款余额调节表 kept as drawn up (`bank reconcile --keep`, the reconcile_bank DAG): 附表一
    keeps it 10年, so the registers source archives it as a 件 of its own. One per account and day; drawing
    it up again replaces it, and a changed table becomes a new version of that 件."""

    __tablename__ = "bank_reconciliation"
    __table_args__ = (UniqueConstraint("account", "on", name="uq_bank_reconciliation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(100))
    on: Mapped[dt.date] = mapped_column(Date)
    drawn_by: Mapped[str] = mapped_column(String(100))
    drawn_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    xml: Mapped[str] = mapped_column(Text)  # the table as archived (render_xml)
    sha256: Mapped[str] = mapped_column(String(64))


class ArchivalSequenceRow(Base):
    """Last 件号 handed out per fonds/year/保管期限/category; row-locked while allocating."""

    __tablename__ = "archival_sequence"

    fonds_no: Mapped[str] = mapped_column(String(20), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    retention: Mapped[str] = mapped_column(String(4), primary_key=True)
    category: Mapped[str] = mapped_column(String(4), primary_key=True)
    last_item_no: Mapped[int] = mapped_column(Integer, default=0)


class CursorRow(Base):
    """Incremental state per connector and stream, owned by the hub (never Airflow's data interval)."""

    __tablename__ = "connector_cursor"

    source_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    run_id: Mapped[str] = mapped_column(String(250))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class QuarantineRow(Base):
    """A record refused by mapping, validation or archiving, kept with its raw payload for re-drive."""

    __tablename__ = "quarantine_item"
    __table_args__ = (Index("ix_quarantine_open", "source_id", "business_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250))
    source_id: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(100))
    business_id: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(20))  # map / validate / archive
    reason: Mapped[str] = mapped_column(Text)
    raw_payload: Mapped[str] = mapped_column(Text)  # JSON of the source record as read
    mapping_version: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(12), default="open")  # open / resolved
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class SyncRunRow(Base):
    __tablename__ = "sync_run"

    run_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="running")
    summary: Mapped[dict] = mapped_column(JSON, default=dict)


class EventRow(Base):
    """Append-only event log; each row's hash covers the previous hash (a hash chain)."""

    __tablename__ = "event_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(30), index=True)  # archived / verified / quarantined ...
    subject: Mapped[str] = mapped_column(String(250), index=True)
    run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHeadRow(Base):
    """The single row that serialises appends to the event chain (row lock on PostgreSQL)."""

    __tablename__ = "event_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class BankStatementRow(Base):
    """A bank statement (银行对账单) archived from a statement file: one row per statement fingerprint.

    The same statement delivered again (re-export, other transport, renamed file) has the same
    fingerprint and is not stored twice; `archival_code` names the package that holds the original.
    """

    __tablename__ = "bank_statement"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # checks.statement_fingerprint
    account: Mapped[str] = mapped_column(String(100), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    format: Mapped[str] = mapped_column(String(40))
    statement_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    statement_number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    sequence_number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Numeric(18, 4): ISO 4217 has 3- and 4-decimal currencies (BHD, KWD, CLF); 2 places would round them.
    opening_balance: Mapped[Decimal | None] = mapped_column(Numeric(18, 4), nullable=True)
    opening_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    closing_balance: Mapped[Decimal | None] = mapped_column(Numeric(18, 4), nullable=True)
    closing_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    entry_count: Mapped[int] = mapped_column(Integer)
    balance_check: Mapped[str] = mapped_column(Text)
    archival_code: Mapped[str] = mapped_column(String(100), index=True)  # 档号 of the package
    package_id: Mapped[int] = mapped_column(ForeignKey("archive_package.id"))
    source_id: Mapped[str] = mapped_column(String(100))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BankStatementEntryRow(Base):
    """One booked bank entry, for reconciliation (bank vs books); stored once per booking.

    Overlapping intraday reports (MT942, camt.052) and the end-of-day statement repeat the same
    bookings: (account, entry_hash, occurrence) is unique, so a repeat is dropped on insert. The
    occurrence (1, 2 ...) counts identical bookings inside one statement, so two genuine identical
    fees on one day are both kept. `entry_hash` is the SHA-256 of `entry_key` (checks.entry_key),
    which is kept in full for reading.
    """

    __tablename__ = "bank_statement_entry"
    __table_args__ = (
        UniqueConstraint("account", "entry_hash", "occurrence", name="uq_bank_entry"),
        Index("ix_bank_entry_booking", "account", "booking_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    statement_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    entry_key: Mapped[str] = mapped_column(Text)
    entry_hash: Mapped[str] = mapped_column(String(64))
    occurrence: Mapped[int] = mapped_column(Integer, default=1)
    booking_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    value_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 4))  # signed: debit negative
    reversal: Mapped[bool] = mapped_column(Boolean, default=False)
    bank_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    customer_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    end_to_end_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    counterparty_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    counterparty_account: Mapped[str | None] = mapped_column(String(100), nullable=True)
    remittance: Mapped[str | None] = mapped_column(Text, nullable=True)
    bank_transaction_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    archival_code: Mapped[str] = mapped_column(String(100), index=True)  # 档号 of the package
    package_id: Mapped[int] = mapped_column(ForeignKey("archive_package.id"))
    source_id: Mapped[str] = mapped_column(String(100))
    file_sha256: Mapped[str] = mapped_column(String(64))
    position: Mapped[str] = mapped_column(String(200))  # where in the original file


class ApprovalRow(Base):
    """An OA approval (审批单) archived as 原始凭证: the facts `oa reconcile` pairs with the vouchers.

    One row per archived package version, so a changed approval (a comment added later) keeps its history.
    """

    __tablename__ = "oa_approval"
    __table_args__ = (
        UniqueConstraint("package_id", name="uq_oa_approval_package"),
        Index("ix_oa_approval_no", "source_id", "approval_no"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(String(100))
    approval_no: Mapped[str] = mapped_column(String(100))  # 审批单号 (WeCom sp_no)
    approval_name: Mapped[str] = mapped_column(String(200))  # 审批名称: 报销, 付款 ...
    applicant: Mapped[str] = mapped_column(String(100))  # 申请人 (经办)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    finished_on: Mapped[dt.date] = mapped_column(Date)  # 审批通过日
    archival_code: Mapped[str] = mapped_column(String(100), index=True)  # 档号 of the package
    package_id: Mapped[int] = mapped_column(ForeignKey("archive_package.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApprovalLinkRow(Base):
    """审批单 ↔ 记账凭证: the voucher that booked an approval, found by `oa reconcile`, and on what basis.

    Archive packages are never rewritten, so the relation between the two 件 lives here (and in the event
    chain): an approval is booked by one voucher; a voucher may book several approvals.
    """

    __tablename__ = "oa_approval_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    approval_code: Mapped[str] = mapped_column(String(100), unique=True)  # 档号 of the 审批单
    voucher_code: Mapped[str] = mapped_column(String(100), index=True)  # 档号 of the 记账凭证
    basis: Mapped[str] = mapped_column(Text)
    linked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
