"""The reconciliation as an Excel workbook, the form an auditor files with the working papers.

Sheets: 汇总 (per period and status, with totals), 问题 (every missing, outdated or quarantined record,
not cut off at 200 like the JSON), 源中已删除 (archived records the source no longer holds; they are
kept). Written to a temporary file and renamed, so a half-written workbook is never seen.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from openpyxl import Workbook

from archive_hub.reconciliation import STATUSES, Reconciliation
from archive_hub.workbooks import BOLD, save_workbook


def write_xlsx(report: Reconciliation, path: Path) -> Path:
    book = Workbook()
    summary = book.active
    summary.title = "汇总"
    summary.append(["source", report.source])
    summary.append(["generated (UTC)", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")])
    summary.append(["records in the source", report.source_records])
    summary.append(["result", "ok" if report.ok else "records missing or outdated"])
    summary.append([])
    summary.append(["period", *STATUSES])
    header_row = summary.max_row
    for period, counts in sorted(report.by_period.items()):
        summary.append([period, *(counts.get(s, 0) for s in STATUSES)])
    summary.append(["total", *(report.counts.get(s, 0) for s in STATUSES)])
    for cell in (*summary[header_row], *summary[summary.max_row]):
        cell.font = BOLD

    problems = book.create_sheet("问题")
    columns = ("record", "status", "changed_at", "archival_code", "reason")
    problems.append(list(columns))
    for problem in report.problems:
        problems.append([problem.get(c) for c in columns])

    gone = book.create_sheet("源中已删除")
    gone.append(["record (archived, no longer in the source; kept)"])
    for key in report.archived_not_in_source:
        gone.append([key])
    for sheet in (problems, gone):
        for cell in sheet[1]:
            cell.font = BOLD
    for sheet in book.worksheets:
        sheet.column_dimensions["A"].width = 24
    for column in "BCDE":
        problems.column_dimensions[column].width = 24 if column != "E" else 80

    return save_workbook(book, path)
