"""ArchiveRecord: one 件 of the electronic accounting archive, with the DA/T 94-2022 file-entity metadata.

Element names follow DA/T 94 (聚合层次, 来源, 档号, 题名, 日期, 责任者, 保管期限, 会计年度, 会计资料形式,
凭证号, 金额合计, 哈希值 ...). The 档号 and the file entities are filled by the archive sink; every
other element comes from the mapping of a source record.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from canonical_model.archival_code import CATEGORY_CODES
from canonical_model.retention import RetentionPeriod, retention_for
from canonical_model.voucher import Money, Voucher


class AccountingForm(StrEnum):
    """会计资料形式."""

    VOUCHER = "凭证"
    BOOK = "账簿"
    REPORT = "报告"
    OTHER = "其他"


class AgentRole(StrEnum):
    """Agent entity roles of DA/T 94 for accounting records."""

    HANDLER = "经办"
    REVIEWER = "审核"
    APPROVER = "审批"
    CHIEF_ACCOUNTANT = "会计主管"
    POSTER = "记账"
    PREPARER = "制单"


class Agent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: AgentRole
    name: str = Field(min_length=1)
    code: str | None = None


class Fonds(BaseModel):
    """来源: 全宗名称, 全宗号, 立档单位名称."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fonds_no: str = Field(min_length=1, pattern=r"^[A-Za-z0-9]+$")
    fonds_name: str = Field(min_length=1)
    unit_name: str = Field(min_length=1)


class RecordCategory(BaseModel):
    """会计资料形式 plus the 附表一 item (记账凭证, 银行对账单 ...) that fixes the 保管期限."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    form: AccountingForm
    item: str

    @property
    def retention(self) -> RetentionPeriod:
        return retention_for(self.item).period

    @property
    def code(self) -> str:
        """类别号 inside the 档号: PZ/ZB/BG/QT."""
        return CATEGORY_CODES[self.form.value]


class SourceRef(BaseModel):
    """Where the record was born: the business id in the source system (业务系统标识)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str = Field(min_length=1)  # our connector configuration id
    system: str = Field(min_length=1)  # e.g. "sample-erp", "kingdee"
    stream: str = Field(min_length=1)
    business_id: str = Field(min_length=1)
    changed_at: dt.datetime | None = None


class SourceAttachment(BaseModel):
    """An attachment as the source announces it; the sink reads the bytes and fixes its hashes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    media_type: str = "application/octet-stream"
    uri: str = Field(min_length=1)  # local path or URL, resolved by the connector
    size: int | None = None


class FileEntity(BaseModel):
    """计算机文件名/大小/格式 and 哈希值 of one file in a package."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # inside the package, e.g. data/attachments/invoice.pdf
    role: str  # content / attachment / metadata
    media_type: str
    size: int
    sha256: str
    sm3: str


class ArchiveRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aggregation_level: str = "件"  # 聚合层次
    fonds: Fonds
    category: RecordCategory
    fiscal_year: int = Field(ge=1900, le=2999)  # 会计年度
    period: int | None = Field(default=None, ge=1, le=16)
    title: str = Field(min_length=1)  # 题名
    date: dt.date  # 日期
    document_no: str | None = None  # 文件编号
    responsible: str = Field(min_length=1)  # 责任者
    classification: str = "内部"  # 密级
    summary: str = ""  # 摘要
    agents: list[Agent] = Field(default_factory=list)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")  # 币种
    amount_total: Money | None = None  # 金额合计
    voucher_no: str | None = None  # 凭证号
    start_date: dt.date | None = None  # 起止日期
    end_date: dt.date | None = None
    related_codes: list[str] = Field(default_factory=list)  # 关联档案号
    source: SourceRef
    voucher: Voucher | None = None
    attachments: list[SourceAttachment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _voucher_totals(self) -> ArchiveRecord:
        """金额合计 and 起止日期 of a voucher default to its own totals and date."""
        if self.voucher is not None:
            if self.amount_total is None:
                self.amount_total = self.voucher.debit_total
            self.start_date = self.start_date or self.voucher.date
            self.end_date = self.end_date or self.voucher.date
        return self

    @property
    def retention(self) -> RetentionPeriod:
        return self.category.retention

    @property
    def record_key(self) -> str:
        """Stable identity of the record across versions: source + business id."""
        return f"{self.source.source_id}:{self.source.business_id}"

    def agent(self, role: AgentRole) -> Agent | None:
        return next((a for a in self.agents if a.role is role), None)


def decimal_str(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"
