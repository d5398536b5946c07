"""档号: the archival reference code, kept as separate parts with a configurable joining rule.

Default rule (as in DESIGN.md): levels joined by "-", parts within a level by "·":
``J001-KJ·2025-D30-PZ-0001`` = 全宗号 - 门类·年度 - 保管期限 - 类别 - 件号.
The 件号 is allocated gap-free per fonds/year/retention/category by the catalog.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from canonical_model.retention import RetentionPeriod


class ArchivalCode(BaseModel):
    model_config = ConfigDict(frozen=True)

    fonds_no: str = Field(min_length=1, pattern=r"^[A-Za-z0-9]+$")  # 全宗号
    class_code: str = "KJ"  # 门类: 会计
    year: int = Field(ge=1900, le=2999)  # 年度
    retention: RetentionPeriod  # 保管期限
    category: str = Field(pattern=r"^[A-Z]{2}$")  # PZ 凭证, ZB 账簿, BG 报告, QT 其他
    item_no: int = Field(ge=1)  # 件号


class ArchivalCodeRule(BaseModel):
    """How parts are rendered; the levels name the parts in order, each level a tuple of parts."""

    model_config = ConfigDict(frozen=True)

    levels: tuple[tuple[str, ...], ...] = (
        ("fonds_no",),
        ("class_code", "year"),
        ("retention",),
        ("category",),
        ("item_no",),
    )
    level_separator: str = "-"
    part_separator: str = "·"
    item_no_width: int = 4

    def render(self, code: ArchivalCode) -> str:
        def part(name: str) -> str:
            value = getattr(code, name)
            if name == "item_no":
                return str(value).zfill(self.item_no_width)
            if name == "retention":
                return value.value
            return str(value)

        return self.level_separator.join(
            self.part_separator.join(part(name) for name in level) for level in self.levels
        )

    def parse(self, text: str) -> ArchivalCode:
        """Inverse of render, used when searching by 档号 and when verifying packages."""
        levels = text.split(self.level_separator)
        if len(levels) != len(self.levels):
            raise ValueError(f"档号 {text!r} does not have {len(self.levels)} levels")
        values: dict[str, object] = {}
        for names, level in zip(self.levels, levels, strict=True):
            parts = level.split(self.part_separator)
            if len(parts) != len(names):
                raise ValueError(f"档号 {text!r}: level {level!r} should hold {', '.join(names)}")
            values.update(zip(names, parts, strict=True))
        if "item_no" in values and len(str(values["item_no"])) != self.item_no_width:
            raise ValueError(f"档号 {text!r}: 件号 must have {self.item_no_width} digits")
        return ArchivalCode.model_validate(values)


CATEGORY_CODES = {"凭证": "PZ", "账簿": "ZB", "报告": "BG", "其他": "QT"}
