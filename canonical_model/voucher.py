"""记账凭证: a voucher and its lines (分录) as the ERP booked them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Money = Annotated[Decimal, Field(max_digits=18, decimal_places=2)]


class VoucherLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_no: int = Field(ge=1)
    summary: str = ""  # 摘要
    account_code: str = Field(min_length=1)  # 科目编码
    account_name: str = ""  # 科目名称
    debit: Money = Decimal("0.00")  # 借方
    credit: Money = Decimal("0.00")  # 贷方
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    exchange_rate: Decimal = Decimal("1")
    auxiliary: dict[str, str] = Field(default_factory=dict)  # 辅助核算: 客户/供应商/部门/职员/项目


class Voucher(BaseModel):
    model_config = ConfigDict(extra="forbid")

    book_code: str = Field(min_length=1)  # 账簿
    fiscal_year: int = Field(ge=1900, le=2999)  # 会计年度
    period: int = Field(ge=1, le=16)  # 会计期间 (13-16: adjustment periods some ERPs use)
    word: str = Field(min_length=1)  # 凭证字: 记/收/付/转
    number: int = Field(ge=1)  # 凭证号
    date: dt.date
    summary: str = ""
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    attachment_count: int = Field(default=0, ge=0)  # 附单据数
    lines: list[VoucherLine] = Field(min_length=1)

    @property
    def display_no(self) -> str:
        """凭证号 as accountants write it, e.g. 记-0012."""
        return f"{self.word}-{self.number:04d}"

    @property
    def debit_total(self) -> Decimal:
        return sum((line.debit for line in self.lines), Decimal("0.00"))

    @property
    def credit_total(self) -> Decimal:
        return sum((line.credit for line in self.lines), Decimal("0.00"))
