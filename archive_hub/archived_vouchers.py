"""Archived vouchers read back for reconciliation: each voucher.xml re-hashed against the catalog first.

Reconciliations (bank vs books, approvals vs vouchers) read the books from the archive, never from the
live ERP, and only what still matches the catalog: a file that cannot be read or no longer has its
recorded SHA-256 is left out and named in `problems`, so a report never rests on altered bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from archive_hub.catalog.packages import package_batches
from archive_hub.settings import Settings

VOUCHER_NS = "urn:archive-hub:voucher:1"
NS = {"v": VOUCHER_NS}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class ArchivedVoucher:
    code: str  # 档号
    number: str  # 凭证号 as accountants write it, e.g. 记-0012
    date: dt.date
    root: etree._Element  # the voucher XML: read 分录 with NS

    def lines(self) -> Iterator[etree._Element]:
        return self.root.iterfind("v:分录列表/v:分录", NS)


def archived_vouchers(
    session: Session, settings: Settings, where: ColumnElement[bool], problems: list[str]
) -> Iterator[ArchivedVoucher]:
    """The current version of each voucher `where` selects, checked against its catalog hash."""
    for batch in package_batches(session, where, current_only=True):
        for entry in batch:
            code = entry.record.archival_code
            expected = entry.expected.get("data/voucher.xml")
            path = settings.archive_root / entry.package.path / "data" / "voucher.xml"
            try:
                data = path.read_bytes()
            except OSError as exc:
                problems.append(f"{code}: cannot read {path}: {exc.strerror or exc}")
                continue
            if expected is None or hashlib.sha256(data).hexdigest() != expected[0]:
                problems.append(f"{code}: data/voucher.xml differs from the catalog's hash; run verify")
                continue
            root = etree.fromstring(data, _PARSER)
            number = f"{root.findtext('v:凭证字', '', NS)}-{int(root.findtext('v:凭证号', '0', NS)):04d}"
            yield ArchivedVoucher(
                code, number, dt.date.fromisoformat(root.findtext("v:凭证日期", "", NS)), root
            )
