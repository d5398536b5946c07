"""Retention table (附表一), due-date rule and the 档号 rule."""

from __future__ import annotations

import datetime as dt

import pytest

from canonical_model import ArchivalCode, ArchivalCodeRule, RetentionPeriod, retention_for
from canonical_model.retention import RETENTION_TABLE, fiscal_year_end


@pytest.mark.parametrize(
    ("item", "period"),
    [
        ("原始凭证", RetentionPeriod.Y30),
        ("记账凭证", RetentionPeriod.Y30),
        ("总账", RetentionPeriod.Y30),
        ("固定资产卡片", RetentionPeriod.Y5),
        ("月度财务会计报告", RetentionPeriod.Y10),
        ("年度财务会计报告", RetentionPeriod.PERMANENT),
        ("银行对账单", RetentionPeriod.Y10),
        ("银行存款余额调节表", RetentionPeriod.Y10),
        ("纳税申报表", RetentionPeriod.Y10),
        ("会计档案移交清册", RetentionPeriod.Y30),
        ("会计档案销毁清册", RetentionPeriod.PERMANENT),
        ("会计档案鉴定意见书", RetentionPeriod.PERMANENT),
    ],
)
def test_retention_table_matches_the_regulation(item: str, period: RetentionPeriod) -> None:
    assert retention_for(item).period is period


def test_every_category_of_the_table_is_present() -> None:
    assert {rule.category for rule in RETENTION_TABLE} == {"凭证", "账簿", "报告", "其他"}


def test_unknown_item_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="no retention rule for '发票'"):
        retention_for("发票")


def test_due_date_runs_from_the_day_after_the_fiscal_year() -> None:
    assert RetentionPeriod.Y30.due_date(fiscal_year_end(2025)) == dt.date(2056, 1, 1)
    assert RetentionPeriod.Y10.due_date(fiscal_year_end(2025)) == dt.date(2036, 1, 1)
    assert RetentionPeriod.PERMANENT.due_date(fiscal_year_end(2025)) is None
    # a fiscal year ending 2027-02-28 starts the count on 2027-03-01
    assert RetentionPeriod.Y5.due_date(dt.date(2027, 2, 28)) == dt.date(2032, 3, 1)
    # a count starting on 29 Feb lands on 28 Feb in a non-leap year
    assert RetentionPeriod.Y5.due_date(dt.date(2028, 2, 28)) == dt.date(2033, 2, 28)


def test_archival_code_renders_and_parses_back() -> None:
    rule = ArchivalCodeRule()
    code = ArchivalCode(fonds_no="J001", year=2025, retention=RetentionPeriod.Y30, category="PZ", item_no=7)
    text = rule.render(code)
    assert text == "J001-KJ·2025-D30-PZ-0007"
    assert rule.parse(text) == code


def test_archival_code_rule_is_configurable() -> None:
    rule = ArchivalCodeRule(
        levels=(("fonds_no",), ("year",), ("class_code", "retention", "category"), ("item_no",)),
        level_separator="/",
        part_separator=".",
        item_no_width=5,
    )
    code = ArchivalCode(
        fonds_no="Z9", year=2024, retention=RetentionPeriod.PERMANENT, category="BG", item_no=12
    )
    assert rule.render(code) == "Z9/2024/KJ.Y.BG/00012"
    assert rule.parse("Z9/2024/KJ.Y.BG/00012") == code


@pytest.mark.parametrize(
    "bad",
    ["J001-KJ·2025-D30-PZ", "J001-KJ-2025-D30-PZ-0001", "J001-KJ·2025-D30-PZ-1", "J001-KJ·2025-D99-PZ-0001"],
)
def test_malformed_archival_codes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ArchivalCodeRule().parse(bad)


def test_kept_years_count_whole_years_from_the_day_after_the_fiscal_year() -> None:
    import datetime as dt

    from archive_hub.catalog.appraisal import kept_years

    assert kept_years(2025, dt.date(2025, 12, 31)) == 0
    assert kept_years(2025, dt.date(2026, 12, 31)) == 0
    assert kept_years(2025, dt.date(2027, 1, 1)) == 1
    assert kept_years(2025, dt.date(2056, 1, 1)) == 30
