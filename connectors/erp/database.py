"""Database voucher source: reads 凭证头, 分录 and attachments from an ERP database with SQLAlchemy 2.

Incremental by (updated_at, id) keyset pages; lines and attachments are fetched per page with one
IN query each, so a page costs three round trips however large it is.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, create_engine, or_, select
from sqlalchemy.exc import SQLAlchemyError

from archive_hub.settings import redact_url
from connectors.erp.sample_erp import schema
from connectors.errors import ConfigError, SourceError
from connectors.stream import Cursor, SourceRecord


class DatabaseVoucherStream:
    name = "vouchers"
    primary_key = ("id",)

    def __init__(
        self, source_id: str, url: str, attachment_root: Path | None, system: str = "erp-db"
    ) -> None:
        self.source_id = source_id
        self.url = url
        self.system = system
        self.attachment_root = Path(attachment_root) if attachment_root else None
        self.engine = create_engine(url)
        self._root: str | None = None
        self._real_dirs: dict[str, str] = {}  # folder → its realpath, for this stream's lifetime (one run)

    def __repr__(self) -> str:
        return f"DatabaseVoucherStream({self.source_id}, {redact_url(self.url)})"

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(schema.voucher.c.id).limit(1)).all()
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            hint = (
                " (create the sample ERP with `archive-hub seed-sample-erp`)"
                if self.system == "sample-erp"
                else ""
            )
            raise ConfigError(
                self.source_id,
                "connection.url",
                f"cannot read erp_voucher at {redact_url(self.url)}: {type(exc).__name__}: {detail}{hint}",
            ) from None
        if self.attachment_root is not None and not self.attachment_root.is_dir():
            raise ConfigError(
                self.source_id, "connection.attachment_root", f"{self.attachment_root} is not a directory"
            )

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        v = schema.voucher
        position: tuple[dt.datetime, int] | None = None
        start = cursor.changed_at - lookback if cursor else None
        while True:
            query = select(
                v, schema.company.c.code.label("company_code"), schema.company.c.name.label("company_name")
            ).join(schema.company, schema.company.c.id == v.c.company_id)
            if position is not None:
                ts, last_id = position
                query = query.where(or_(v.c.updated_at > ts, and_(v.c.updated_at == ts, v.c.id > last_id)))
            elif start is not None:
                query = query.where(v.c.updated_at >= start)  # closed boundary
            query = query.order_by(v.c.updated_at, v.c.id).limit(batch_size)
            try:
                with self.engine.connect() as conn:
                    headers = _dicts(conn.execute(query))
                    if not headers:
                        return
                    batch = self._assemble(conn, headers)
            except SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
                raise SourceError(
                    f"{self.source_id}: reading vouchers failed: {type(exc).__name__}: {detail}"
                ) from None
            yield batch
            last = headers[-1]
            position = (last["updated_at"], last["id"])
            if len(headers) < batch_size:
                return

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        v = schema.voucher
        ids = [int(k) for k in keys]
        query = (
            select(
                v, schema.company.c.code.label("company_code"), schema.company.c.name.label("company_name")
            )
            .join(schema.company, schema.company.c.id == v.c.company_id)
            .where(v.c.id.in_(ids))
            .order_by(v.c.updated_at, v.c.id)
        )
        with self.engine.connect() as conn:
            headers = _dicts(conn.execute(query))
            return self._assemble(conn, headers) if headers else []

    def _attachment_uri(self, storage_path: str) -> str:
        """The file under the attachment root; a path that escapes it (absolute, `..`, a symlink) is refused.

        Symlinks are resolved per directory (cached: attachments share few folders) and for the file
        itself only when it is a link, so a batch does not pay a realpath walk per attachment.
        """
        root = self._resolved_root()
        joined = os.path.join(root, storage_path)
        folder, name = os.path.split(joined)
        real = self._real_dirs.get(folder)
        if real is None:
            real = self._real_dirs[folder] = os.path.realpath(folder)
        path = os.path.join(real, name)
        if os.path.islink(path):
            path = os.path.realpath(path)
        if path != root and not path.startswith(root + os.sep):
            return f"refused:storage_path {storage_path!r} lies outside the attachment root"
        return path

    def _resolved_root(self) -> str:
        if self._root is None:
            self._root = os.path.realpath(self.attachment_root or ".")
        return self._root

    def _assemble(self, conn: Any, headers: list[dict[str, Any]]) -> list[SourceRecord]:
        ids = [h["id"] for h in headers]
        line, acct, att = schema.voucher_line, schema.account, schema.attachment
        lines: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        line_query = (
            select(line, acct.c.name.label("account_name"))
            .join(acct, acct.c.code == line.c.account_code, isouter=True)
            .where(line.c.voucher_id.in_(ids))
            .order_by(line.c.voucher_id, line.c.line_no)
        )
        for item in _dicts(conn.execute(line_query)):
            lines[item["voucher_id"]].append(item)
        files: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for item in _dicts(
            conn.execute(select(att).where(att.c.voucher_id.in_(ids)).order_by(att.c.voucher_id, att.c.id))
        ):
            item["uri"] = self._attachment_uri(item["storage_path"])
            files[item["voucher_id"]].append(item)
        records = []
        for header in headers:
            data = dict(header)
            data["lines"] = lines[header["id"]]
            data["attachments"] = files[header["id"]]
            records.append(
                SourceRecord(self.name, str(header["id"]), header["updated_at"], data, files[header["id"]])
            )
        return records


def _dicts(result: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts, with the column names looked up once per query rather than once per row."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]  # one fetchall, not a fetchone a row
