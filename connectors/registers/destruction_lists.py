"""Executed 销毁清册 as records to archive: 附表一 keeps the 销毁清册 永久, so the list that proves what
was destroyed becomes a 件 of its own (其他会计资料 / 会计档案销毁清册), numbered, packaged, verified and
backed up like every other record, through the same pipeline.

Each list whose destruction has finished is one record; its content is `销毁清册-NNNN.xml`, rendered from
the catalog (lines by class, every destroyed 档号 with the manifest hash of each version, the opinion,
the five signatures, the three witnesses). The rendering depends only on the executed list, so reading it
again gives the same bytes and the archive step sees it unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree
from sqlalchemy import select

from archive_sink.durability import replace_file
from connectors.errors import ConfigError
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from archive_hub.sources import SourceConfig


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


class DestructionListStream:
    name = "destruction_lists"
    primary_key = ("list_id",)

    def __init__(self, source_id: str, catalog_url: str, work_dir: Path, system: str = "archive-hub") -> None:
        self.source_id = source_id
        self.catalog_url = catalog_url
        self.work_dir = Path(work_dir)
        self.system = system

    def __repr__(self) -> str:
        return f"DestructionListStream({self.source_id})"

    def check(self) -> None:
        from archive_hub.catalog import Catalog

        catalog = Catalog(self.catalog_url)
        try:
            with catalog.reading() as session:
                session.execute(select(1))
        finally:
            catalog.dispose()

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        from archive_hub.catalog.models import DestructionListRow as L

        # Every executed list, each run, whatever the cursor: a unit has a handful a year, and a list that
        # finished after a cursor passed its destruction time must still be archived. The archive step
        # finds the ones already archived unchanged by their fingerprint.
        yield from self._batches(L.status == "destroyed", batch_size)

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        from archive_hub.catalog.models import DestructionListRow as L

        ids = [int(k) for k in keys if k.isdigit()]
        return [r for batch in self._batches(L.id.in_(ids), max(len(ids), 1)) for r in batch]

    def _batches(self, where: Any, batch_size: int) -> Iterator[list[SourceRecord]]:
        from archive_hub.catalog import Catalog
        from archive_hub.catalog.destruction import list_document
        from archive_hub.catalog.models import DestructionListRow as L

        catalog = Catalog(self.catalog_url)
        try:
            with catalog.reading() as session:
                ids = session.execute(
                    select(L.id, L.destroyed_at).where(where).order_by(L.destroyed_at, L.id)
                ).all()
                batch: list[SourceRecord] = []
                for list_id, destroyed_at in ids:
                    batch.append(
                        self._record(list_document(session, list_id, destroyed_at.date()), destroyed_at)
                    )
                    if len(batch) >= batch_size:
                        yield batch
                        batch = []
                if batch:
                    yield batch
        finally:
            catalog.dispose()

    def _record(self, doc: dict[str, Any], destroyed_at: dt.datetime) -> SourceRecord:
        data = render_xml(doc)
        name = f"销毁清册-{doc['list']:04d}.xml"
        path = self.work_dir / name
        replace_file(path, data)
        classes = [line["档案编号"].split("–")[0].rsplit("-", 1)[0] for line in doc["lines"]]
        return SourceRecord(
            self.name,
            str(doc["list"]),
            destroyed_at,
            {
                "list_id": str(doc["list"]),
                "document_no": f"销毁清册-{doc['list']:04d}",
                "fiscal_year": destroyed_at.year,
                "date": destroyed_at.date().isoformat(),
                "changed_at": destroyed_at.isoformat(),
                "records": len(doc["records"]),
                "classes": ", ".join(classes),
                "opinion": doc["opinion"],
                "responsible": doc["drawn_by"],
                "related_codes": [r["档号"] for r in doc["records"]],
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


def stream_from_config(config: SourceConfig) -> DestructionListStream:
    """`kind: hub.destruction_lists` (see config/sources/hub_registers.yaml)."""
    from archive_hub.settings import Settings

    if config.connection:
        raise ConfigError(config.id, "connection", "takes no settings: the lists are read from the catalog")
    settings = Settings.from_env()
    return DestructionListStream(
        config.id, settings.catalog_url, settings.home / "registers" / config.id, system=config.system
    )
