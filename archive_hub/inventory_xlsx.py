"""The 保管清册 and the 归档文件目录 of every class as one workbook, the form archivists print and file.

The first sheet is the register (one line per class, with totals); then one sheet per class lists its
件 in 件号 order. The workbook is written in openpyxl's streaming mode, so a class of a million 件
does not have to fit in memory, and saved whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy.orm import Session

from archive_hub.catalog.inventory import InventoryClass, inventory_items
from archive_hub.workbooks import BOLD, save_workbook
from canonical_model.archival_code import ArchivalCodeRule

REGISTER_COLUMNS = (
    "类",
    "全宗号",
    "年度",
    "类别",
    "保管期限",
    "件数",
    "起止件号",
    "起止日期",
    "金额合计",
    "币种",
    "到期",
)
ITEM_COLUMNS = (
    "件号",
    "档号",
    "凭证号",
    "题名",
    "日期",
    "会计期间",
    "金额合计",
    "币种",
    "版本",
    "附件数",
    "文件数",
    "字节",
    "到期",
)
ITEM_WIDTHS = (8, 26, 10, 48, 12, 9, 14, 6, 6, 7, 7, 10, 12)


def _bold_row(sheet: Worksheet, values: tuple[object, ...] | list[object]) -> None:
    row = []
    for value in values:
        cell = WriteOnlyCell(sheet, value=value)
        cell.font = BOLD
        row.append(cell)
    sheet.append(row)


def sheet_title(label: str, taken: set[str]) -> str:
    """Excel allows 31 characters and none of []:*?/\\ in a sheet's name; names must differ."""
    title = re.sub(r"[\[\]:*?/\\]", "_", label)[:31]
    base, n = title, 2
    while title in taken:
        suffix = f"~{n}"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title)
    return title


def _register_row(c: InventoryClass, rule: ArchivalCodeRule) -> list[object]:
    width = rule.item_no_width
    return [
        c.label(rule),
        c.fonds_no,
        c.year,
        c.category,
        c.retention_label,
        c.records,
        f"{str(c.first_item).zfill(width)}–{str(c.last_item).zfill(width)}",
        f"{c.first_date.isoformat()} – {c.last_date.isoformat()}",
        c.amount_total,
        c.currency or "多币种 (not summed)",
        c.due.isoformat() if c.due else "永久",
    ]


def write_inventory_xlsx(
    session: Session,
    path: Path,
    classes: list[InventoryClass],
    code_prefix: str | None = None,
    rule: ArchivalCodeRule | None = None,
) -> Path:
    """`classes` as inventory_classes gave them for `code_prefix`, in the same reading session."""
    rule = rule or ArchivalCodeRule()
    book = Workbook(write_only=True)
    register = book.create_sheet("保管清册")
    for column, width in zip("ABCDEFGHIJK", (24, 8, 6, 6, 9, 8, 12, 26, 16, 10, 12), strict=True):
        register.column_dimensions[column].width = width
    _bold_row(register, ["会计档案保管清册 (归档文件目录 of each class on the sheets that follow)"])
    register.append(["generated (UTC)", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")])
    register.append(["scope", code_prefix or "all archived records"])
    register.append([])
    _bold_row(register, REGISTER_COLUMNS)
    for c in classes:
        register.append(_register_row(c, rule))
    _bold_row(register, ["total", "", "", "", "", sum(c.records for c in classes)])

    taken = {"保管清册"}
    for c in classes:
        sheet = book.create_sheet(sheet_title(c.label(rule), taken))
        for index, width in enumerate(ITEM_WIDTHS):
            sheet.column_dimensions[chr(ord("A") + index)].width = width
        _bold_row(sheet, [f"归档文件目录 {c.label(rule)}  ({c.retention_label}, {c.records} 件)"])
        _bold_row(sheet, ITEM_COLUMNS)
        for item in inventory_items(session, c.key, code_prefix):
            sheet.append(
                [
                    item.item_no,
                    item.archival_code,
                    item.voucher_no,
                    item.title,
                    item.record_date,
                    item.period,
                    item.amount_total,
                    item.currency,
                    item.version,
                    item.attachments,
                    item.files,
                    item.byte_size,
                    item.retention_due.isoformat() if item.retention_due else "永久",
                ]
            )
    return save_workbook(book, path)
