"""The hub's own registers as records to archive: 附表一 keeps the 销毁清册 永久 and the 移交清册 30年, so
the lists that prove what was destroyed or handed over become 件 of their own (其他会计资料), numbered,
packaged, verified and backed up like every other record, through the same pipeline.

An executed 销毁清册 is rendered from the catalog as `销毁清册-NNNN.xml` (lines by class, every destroyed
档号 with the manifest hash of each version, the opinion, the five signatures, the three witnesses); the
rendering depends only on the executed list, so reading it again gives the same bytes. A finished 移交
keeps the very 移交清册 XML that was handed over (archive_hub/transfer.py), checked against the hash the
catalog holds before it is archived. A balanced 银行存款余额调节表 kept by `bank reconcile --keep` or the
reconcile_bank DAG (10年) is archived as the XML it was kept as, checked against its hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_hub.bank_reconciliation_record import register_key
from archive_sink.durability import replace_file
from connectors.errors import ConfigError
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from archive_hub.sources import SourceConfig


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def render_xml(doc: dict[str, Any]) -> bytes:
    """The list as XML (an archival format: DA/T 70 usability), elements named as the 清册 names them."""
    root = etree.Element("会计档案销毁清册", 编号=str(doc["list"]), 状态=doc["status"])
    for tag, key in (
        ("鉴定意见", "opinion"),
        ("到期日", "judged_on"),
        ("编制人", "drawn_by"),
        ("编制时间", "drawn_at"),
    ):
        etree.SubElement(root, tag).text = str(doc[key])
    etree.SubElement(root, "销毁时间").text = doc["destroyed_at"] or ""
    etree.SubElement(root, "内容哈希", 算法="SHA-256").text = doc["content_hash"]
    lines = etree.SubElement(root, "清册")
    for line in doc["lines"]:
        row = etree.SubElement(lines, "行")
        for tag, value in line.items():
            etree.SubElement(row, tag).text = str(value)
    items = etree.SubElement(root, "明细")
    for r in doc["records"]:
        item = etree.SubElement(items, "件", 档号=r["档号"])
        for tag in ("题名", "凭证号", "日期", "到期"):
            etree.SubElement(item, tag).text = r[tag] or ""
        for version, manifest in sorted(r["versions"].items(), key=lambda kv: int(kv[0])):
            etree.SubElement(item, "版本", 号=version, manifest_sha256=manifest)
    signed = etree.SubElement(root, "签字")
    for title, s in doc["signatures"].items():
        etree.SubElement(signed, "签字人", 职务=title, 时间=s["at"]).text = s["name"]
    witnessed = etree.SubElement(root, "监销")
    for title, name in doc["witnesses"].items():
        etree.SubElement(witnessed, "监销人", 职务=title).text = name
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


class RegistersStream:
    """Executed 销毁清册 (永久), finished 移交清册 (30年) and kept 银行存款余额调节表 (10年), one record each, keyed
    销毁清册-0001 / 移交清册-0001 / 银行存款余额调节表-<account>-<day>."""

    name = "registers"
    primary_key = ("register",)

    def __init__(self, source_id: str, catalog_url: str, work_dir: Path, system: str = "archive-hub") -> None:
        self.source_id = source_id
        self.catalog_url = catalog_url
        self.work_dir = Path(work_dir)
        self.system = system

    def __repr__(self) -> str:
        return f"RegistersStream({self.source_id})"

    def check(self) -> None:
        with self._session():
            pass

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        # Every register, each run, whatever the cursor: a unit has a handful a year, and one that finished
        # after a cursor passed its time must still be archived. The archive step finds the ones already
        # archived unchanged by their fingerprint.
        records = self._records(None)
        for start in range(0, len(records), batch_size):
            yield records[start : start + batch_size]

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        return self._records(set(keys))

    @contextmanager
    def _session(self) -> Iterator[Session]:
        from archive_hub.catalog import Catalog

        catalog = Catalog(self.catalog_url)
        try:
            with catalog.reading() as session:
                yield session
        finally:
            catalog.dispose()

    def _records(self, keys: set[str] | None) -> list[SourceRecord]:
        from archive_hub.catalog.destruction import list_document
        from archive_hub.catalog.models import BankReconciliationRow as B
        from archive_hub.catalog.models import DestructionListRow as L
        from archive_hub.catalog.models import TransferRow as T

        found = []
        with self._session() as session:
            for list_id, destroyed_at in session.execute(
                select(L.id, L.destroyed_at).where(L.status == "destroyed").order_by(L.id)
            ).all():
                if keys is None or f"销毁清册-{list_id:04d}" in keys:
                    found.append(
                        self._destruction(list_document(session, list_id, destroyed_at.date()), destroyed_at)
                    )
            for row in session.execute(select(T).where(T.status == "done").order_by(T.id)).scalars():
                if keys is None or f"移交清册-{row.id:04d}" in keys:
                    found.append(self._transfer(row))
            for kept in session.execute(select(B).order_by(B.on, B.account)).scalars():
                if keys is None or register_key(kept.account, kept.on) in keys:
                    found.append(self._reconciliation(kept))
        return sorted(found, key=lambda r: (r.changed_at or dt.datetime.min, r.key))

    def _record(
        self, key: str, at: dt.datetime, item: str, title: str, data: bytes, fields: dict[str, Any]
    ) -> SourceRecord:
        name = f"{key}.xml"
        path = self.work_dir / name
        replace_file(path, data)
        return SourceRecord(
            self.name,
            key,
            at,
            {
                "register": key,
                "item": item,
                "title": title,
                "document_no": key,
                "fiscal_year": at.year,
                "date": at.date().isoformat(),
                "changed_at": at.isoformat(),
                **fields,
                "attachments": [
                    {
                        "name": name,
                        "media_type": "application/xml",
                        "uri": str(path),
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                ],
            },
        )

    def _destruction(self, doc: dict[str, Any], destroyed_at: dt.datetime) -> SourceRecord:
        key = f"销毁清册-{doc['list']:04d}"
        classes = ", ".join(line["档案编号"].split("–")[0].rsplit("-", 1)[0] for line in doc["lines"])
        return self._record(
            key,
            destroyed_at,
            "会计档案销毁清册",
            f"会计档案销毁清册 {key} ({len(doc['records'])}件: {classes})",
            render_xml(doc),
            {
                "summary": doc["opinion"],
                "responsible": doc["drawn_by"],
                "related_codes": [r["档号"] for r in doc["records"]],
            },
        )

    def _transfer(self, row: Any) -> SourceRecord:
        key = f"移交清册-{row.id:04d}"
        data = Path(row.register_path).read_bytes() if row.register_path else b""
        if hashlib.sha256(data).hexdigest() != row.register_sha256:
            # the mapping quarantines it: the kept 移交清册 is not the one handed over
            return SourceRecord(
                self.name,
                key,
                row.finished_at,
                {
                    "_refused": f"{row.register_path}: not the 移交清册 handed over (its SHA-256 differs from the catalog's)"
                },
            )
        return self._record(
            key,
            row.finished_at,
            "会计档案移交清册",
            f"会计档案移交清册 {key} ({row.records}件 {row.code_prefix} 移交 {row.receiver})",
            data,
            {
                "summary": f"移交 {row.receiver}: {row.records}件, {row.packages} 版本, {row.bytes} 字节",
                "responsible": row.people.get("handed_by", ""),
                "related_codes": [
                    item.get("档号")
                    for item in etree.fromstring(data, _PARSER).iter("件")
                    if item.get("档号")
                ],
            },
        )

    def _reconciliation(self, row: Any) -> SourceRecord:
        key = register_key(row.account, row.on)
        data = row.xml.encode()
        if hashlib.sha256(data).hexdigest() != row.sha256:
            return SourceRecord(
                self.name, key, row.drawn_at, {"_refused": f"{key}: the kept table's SHA-256 differs"}
            )
        root = etree.fromstring(data, _PARSER)
        return self._record(
            key,
            row.drawn_at,
            "银行存款余额调节表",
            f"银行存款余额调节表 {root.findtext('开户行及账户')} {row.account} {row.on}",
            data,
            {
                "fiscal_year": row.on.year,
                "date": row.on.isoformat(),
                "summary": root.findtext("结论", ""),
                "responsible": row.drawn_by,
                "related_codes": [s.get("档号") for s in root.iter("对账单") if s.get("档号")],
            },
        )


def stream_from_config(config: SourceConfig) -> RegistersStream:
    """`kind: hub.registers` (see config/sources/hub_registers.yaml)."""
    from archive_hub.settings import Settings

    if config.connection:
        raise ConfigError(config.id, "connection", "takes no settings: the lists are read from the catalog")
    settings = Settings.from_env()
    return RegistersStream(
        config.id, settings.catalog_url, settings.home / "registers" / config.id, system=config.system
    )
