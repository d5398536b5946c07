"""What every workbook the hub writes for people shares: bold headers, and saving whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

BOLD = Font(bold=True)


def save_workbook(book: Workbook, path: Path) -> Path:
    """Written under a hidden partial name, then renamed: a half-written workbook is never seen."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        book.save(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
