"""The 销毁清册 as a workbook, the form that is printed, signed on paper where the unit still does, and filed.

First sheet: the list's heading, its lines by class (Art. 18's columns), the signatures and the witnesses;
second sheet: every listed 件. Saved whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openpyxl import Workbook

from archive_hub.workbooks import BOLD, save_workbook

LINE_COLUMNS = ("名称", "件数", "起止年度", "档案编号", "应保管期限", "已保管期限", "销毁时间")
RECORD_COLUMNS = ("档号", "题名", "凭证号", "日期", "到期", "versions", "status")


def write_destruction_xlsx(path: Path, data: dict[str, Any]) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.title = "销毁清册"
    sheet.append([f"会计档案销毁清册 第 {data['list']} 号 ({data['status']})"])
    sheet["A1"].font = BOLD
    sheet.append(["鉴定意见", data["opinion"]])
    sheet.append(["到期日 (judged on)", data["judged_on"], "编制人", data["drawn_by"]])
    sheet.append(["content SHA-256", data["content_hash"]])
    sheet.append([])
    sheet.append(list(LINE_COLUMNS))
    for cell in sheet[sheet.max_row]:
        cell.font = BOLD
    for line in data["lines"]:
        sheet.append([line[c] for c in LINE_COLUMNS])
    sheet.append([])
    sheet.append(["签字"])
    sheet[f"A{sheet.max_row}"].font = BOLD
    for title, s in data["signatures"].items():
        sheet.append([title, s["name"], s["at"]])
    sheet.append(["监销"])
    sheet[f"A{sheet.max_row}"].font = BOLD
    for title, name in data["witnesses"].items():
        sheet.append([title, name, data["destroyed_at"]])
    for column, width in zip("ABCDEFG", (34, 8, 10, 60, 10, 10, 12), strict=True):
        sheet.column_dimensions[column].width = width
    records = book.create_sheet("明细")
    records.append(list(RECORD_COLUMNS))
    for cell in records[1]:
        cell.font = BOLD
    for r in data["records"]:
        records.append([len(r[c]) if c == "versions" else r[c] for c in RECORD_COLUMNS])
    return save_workbook(book, path)
