"""The one archive metadata model every source maps into (DA/T 94-2022 file entity, 会计档案)."""

from canonical_model.archival_code import ArchivalCode, ArchivalCodeRule
from canonical_model.record import (
    AccountingForm,
    Agent,
    AgentRole,
    ArchiveRecord,
    FileEntity,
    Fonds,
    RecordCategory,
    SourceAttachment,
    SourceRef,
)
from canonical_model.retention import RetentionPeriod, retention_for
from canonical_model.voucher import Voucher, VoucherLine

__all__ = [
    "AccountingForm",
    "Agent",
    "AgentRole",
    "ArchivalCode",
    "ArchivalCodeRule",
    "ArchiveRecord",
    "FileEntity",
    "Fonds",
    "RecordCategory",
    "RetentionPeriod",
    "SourceAttachment",
    "SourceRef",
    "Voucher",
    "VoucherLine",
    "retention_for",
]
