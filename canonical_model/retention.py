"""保管期限: the retention table of 《会计档案管理办法》(财政部 国家档案局令第79号) 附表一, for enterprises.

Periods are minimums and run from the first day after the fiscal year ends (Art. 14-15): a voucher
of fiscal year 2025 with 30 years is due for appraisal on 2056-01-01. 永久 is never due.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class RetentionPeriod(StrEnum):
    """A 保管期限 with the code used inside the 档号 (Y / D30 / D10 / D5)."""

    PERMANENT = "Y"  # 永久
    Y30 = "D30"
    Y10 = "D10"
    Y5 = "D5"

    @property
    def years(self) -> int | None:
        return None if self is RetentionPeriod.PERMANENT else int(self.value[1:])

    @property
    def label(self) -> str:
        return "永久" if self is RetentionPeriod.PERMANENT else f"{self.years}年"

    def due_date(self, fiscal_year_end: dt.date) -> dt.date | None:
        """First day the record may be appraised for destruction; None for 永久."""
        if self.years is None:
            return None
        start = fiscal_year_end + dt.timedelta(days=1)
        try:
            return start.replace(year=start.year + self.years)
        except ValueError:  # 29 Feb in a non-leap target year
            return start.replace(year=start.year + self.years, day=28)


@dataclass(frozen=True)
class RetentionRule:
    category: str  # 会计资料形式: 凭证/账簿/报告/其他
    item: str
    period: RetentionPeriod
    note: str = ""


# 附表一 企业和其他组织会计档案保管期限表
RETENTION_TABLE: tuple[RetentionRule, ...] = (
    RetentionRule("凭证", "原始凭证", RetentionPeriod.Y30),
    RetentionRule("凭证", "记账凭证", RetentionPeriod.Y30),
    RetentionRule("账簿", "总账", RetentionPeriod.Y30),
    RetentionRule("账簿", "明细账", RetentionPeriod.Y30),
    RetentionRule("账簿", "日记账", RetentionPeriod.Y30),
    RetentionRule("账簿", "其他辅助性账簿", RetentionPeriod.Y30),
    RetentionRule("账簿", "固定资产卡片", RetentionPeriod.Y5, "固定资产报废清理后保管5年"),
    RetentionRule("报告", "月度财务会计报告", RetentionPeriod.Y10),
    RetentionRule("报告", "季度财务会计报告", RetentionPeriod.Y10),
    RetentionRule("报告", "半年度财务会计报告", RetentionPeriod.Y10),
    RetentionRule("报告", "年度财务会计报告", RetentionPeriod.PERMANENT),
    RetentionRule("其他", "银行存款余额调节表", RetentionPeriod.Y10),
    RetentionRule("其他", "银行对账单", RetentionPeriod.Y10),
    RetentionRule("其他", "纳税申报表", RetentionPeriod.Y10),
    RetentionRule("其他", "会计档案移交清册", RetentionPeriod.Y30),
    RetentionRule("其他", "会计档案保管清册", RetentionPeriod.PERMANENT),
    RetentionRule("其他", "会计档案销毁清册", RetentionPeriod.PERMANENT),
    RetentionRule("其他", "会计档案鉴定意见书", RetentionPeriod.PERMANENT),
)

_BY_ITEM = {rule.item: rule for rule in RETENTION_TABLE}


def retention_for(item: str) -> RetentionRule:
    """The rule for one 附表一 item; an unknown item is a configuration error, never a guess."""
    try:
        return _BY_ITEM[item]
    except KeyError:
        known = ", ".join(_BY_ITEM)
        raise ValueError(f"no retention rule for {item!r}; known items: {known}") from None


def fiscal_year_end(fiscal_year: int, end_month: int = 12, end_day: int = 31) -> dt.date:
    """Last day of a fiscal year; Chinese enterprises use the calendar year (会计年度 1/1-12/31)."""
    return dt.date(fiscal_year, end_month, end_day)
