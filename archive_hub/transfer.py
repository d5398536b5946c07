"""移交: hand a fonds, a year or a class over to another custodian, verified, with its 移交清册.

《会计档案管理办法》 Art. 12-13: archives change hands with a 移交清册, checked by both sides under a 监交人;
e-archives go with their metadata in a standard format, and the receiver runs the 四性检测 again. Here:
every package version of the archived records under a 档号 prefix is copied and checked like `verify`
checks an original, into a hidden partial folder; the 移交清册 (移交清册.xml) lists each 件 with every file's
SHA-256, SM3 and size, so the receiver can check the set with nothing but it (`archive-hub transfer check`,
no catalog needed); the folder is renamed into view only when whole. A damaged original stops the whole
transfer: a 移交 is complete or it does not happen. The transfer and each record's part in it are logged
in the event chain, and the 移交清册 itself is archived (30年) through the registers source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import and_, select

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.history import links_of_many
from archive_hub.catalog.locks import source_lock
from archive_hub.catalog.models import ArchiveRecordRow, TransferRow, utcnow
from archive_hub.catalog.packages import code_scope, count_packages, package_batches
from archive_sink.durability import fsync_dir, replace_file, syncfs
from archive_sink.filesystem import copy_checked, published_packages, verify_package_dir

REGISTER = "移交清册.xml"
PEOPLE = {"handed_by": "移交人", "received_by": "接收人", "supervised_by": "监交人"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


class TransferRefused(ValueError):
    """The transfer cannot be made whole and verified; nothing was handed over."""


@dataclass
class TransferMade:
    transfer_id: int
    path: Path
    records: int
    packages: int
    files: int
    bytes: int
    register_sha256: str
    # earlier transfers a killed process had left open: (transfer id, handed over?, what was done)
    settled: list[tuple[int, bool, str]] = field(default_factory=list)


@dataclass
class TransferCheck:
    records: int = 0
    packages: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def transfer_out(
    catalog: Catalog,
    archive_root: Path,
    destination: Path,
    registers_dir: Path,
    *,
    code_prefix: str,
    receiver: str,
    people: dict[str, str],
    progress: Callable[[int, int], None] | None = None,
) -> TransferMade:
    """One transfer at a time (a lock beside the registers folder, and on PostgreSQL an advisory lock), so
    every transfer still `preparing` when it starts was left by a killed process and is settled first."""
    missing = [title for key, title in PEOPLE.items() if not people.get(key, "").strip()]
    if missing or not receiver.strip():
        raise TransferRefused(
            f"name the {', '.join(missing or ['接收单位 (--to)'])}: a 移交 is signed by both sides"
        )
    if not code_prefix.strip():
        raise TransferRefused("say what is handed over (--code: a fonds, a year or a class)")
    root, target = archive_root.resolve(), destination.resolve()
    if target == root or root in target.parents or target in root.parents:
        raise TransferRefused(f"{destination} overlaps the archive {archive_root}")
    with source_lock(catalog, registers_dir, "移交"):
        settled = finish_interrupted(catalog, registers_dir)
        if destination.exists():
            raise TransferRefused(
                f"{destination} exists already; a transfer set is written once, into a new folder"
            )
        signed = {k: v.strip() for k, v in people.items()}
        made = _hand_over(
            catalog, archive_root, destination, registers_dir, code_prefix, receiver, signed, progress
        )
    made.settled = settled
    return made


def _hand_over(
    catalog: Catalog,
    archive_root: Path,
    destination: Path,
    registers_dir: Path,
    code_prefix: str,
    receiver: str,
    people: dict[str, str],
    progress: Callable[[int, int], None] | None,
) -> TransferMade:
    target = destination.resolve()
    where = and_(code_scope(code_prefix), ArchiveRecordRow.status == "archived")
    with catalog.transaction() as session:
        row = TransferRow(
            status="preparing",
            code_prefix=code_prefix,
            receiver=receiver.strip(),
            people=people,
            destination=str(target),
        )
        session.add(row)
        session.flush()
        transfer_id, started = row.id, utcnow()
    partial = destination.parent / f".{destination.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    items: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    files = total_bytes = packages = 0
    try:
        with catalog.reading() as session:
            total = count_packages(session, where)
            for batch in package_batches(session, where):
                for entry in batch:
                    package, record = entry.package, entry.record
                    found = copy_checked(
                        archive_root / package.path,
                        partial / "archive" / package.path,
                        entry.expected,
                        record.archival_code,
                    )
                    problems.extend(
                        f"{record.archival_code} v{package.version}: {p.path}: {p.reason}" for p in found
                    )
                    item = items.setdefault(record.id, _item(record))
                    item["versions"].append(
                        {
                            "version": package.version,
                            "path": package.path,
                            "manifest_sha256": package.manifest_sha256,
                            "files": sorted((f.path, f.role, f.size, f.sha256, f.sm3) for f in entry.files),
                        }
                    )
                    packages += 1
                    files += len(entry.files)
                    total_bytes += package.byte_size
                if progress:
                    progress(len(batch), total)
        if not items:
            raise TransferRefused(f"no archived record has a 档号 starting with {code_prefix!r}")
        with catalog.reading() as session:  # 关联: the related 件 (审批单 ↔ 记账凭证), in the set or not
            links = links_of_many(session, [i["档号"] for i in items.values()])
        for item in items.values():
            item["关联"] = [(k.relation, k.other, k.basis) for k in links.get(item["档号"], [])]
        if problems:
            raise TransferRefused(
                "the originals below do not match the catalog, so nothing was handed over "
                "(`archive-hub verify` names the damage):\n" + "\n".join(problems)
            )
        head = {
            "编号": transfer_id,
            "范围": code_prefix,
            "移交单位": _fonds_names(items),
            "接收单位": receiver.strip(),
            **{PEOPLE[k]: v for k, v in people.items() if k in PEOPLE},
            "移交时间": started.isoformat(timespec="seconds"),
            "件数": len(items),
            "版本数": packages,
            "文件数": files,
            "字节": total_bytes,
        }
        register = render_register(head, list(items.values()))
        replace_file(partial / REGISTER, register)
        syncfs(partial)
        os.rename(partial, destination)
        fsync_dir(destination.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        with catalog.transaction() as session:
            session.get(TransferRow, transfer_id).status = "failed"  # type: ignore[union-attr]
        raise
    return _finish(catalog, transfer_id, register, registers_dir, destination)


def _finish(
    catalog: Catalog, transfer_id: int, register: bytes, registers_dir: Path, destination: Path
) -> TransferMade:
    """Register a set that is in view: the 清册 kept for archiving, the row done, one event per 件 and one for
    the transfer. Everything is read from the 清册 itself, so an interrupted run is finished the same way."""
    root = etree.fromstring(register, _PARSER)
    codes = [node.get("档号", "") for node in root.iterfind("明细/件")]
    receiver, scope = root.findtext("接收单位", ""), root.findtext("范围", "")
    packages, files, total_bytes = (int(root.findtext(k, "0")) for k in ("版本数", "文件数", "字节"))
    signed = {title: root.findtext(title, "") for title in PEOPLE.values()}
    digest = hashlib.sha256(register).hexdigest()
    kept = registers_dir / f"移交清册-{transfer_id:04d}.xml"
    replace_file(kept, register)
    with catalog.transaction() as session:
        row = session.get(TransferRow, transfer_id)
        assert row is not None
        row.status, row.finished_at = "done", utcnow()
        row.records, row.packages, row.bytes = len(codes), packages, total_bytes
        row.register_sha256, row.register_path = digest, str(kept)
        append(
            session,
            [Event("transferred", code, {"transfer": transfer_id, "to": receiver}) for code in codes]
            + [
                Event(
                    "transfer",
                    f"移交清册 {transfer_id}",
                    {
                        "to": receiver,
                        "scope": scope,
                        "records": len(codes),
                        "packages": packages,
                        "bytes": total_bytes,
                        "register_sha256": digest,
                        "destination": str(destination.resolve()),
                        **signed,
                    },
                )
            ],
        )
    return TransferMade(transfer_id, destination, len(codes), packages, files, total_bytes, digest)


def finish_interrupted(catalog: Catalog, registers_dir: Path) -> list[tuple[int, bool, str]]:
    """Settle the transfers a killed process left `preparing` (call with the transfer lock held, so none runs).

    A set already renamed into view whose 清册 is this transfer's and checks whole was handed over: only its
    registration was lost, and it is registered now. Anything else never became visible: its partial folder
    is removed and the row marked interrupted. Returns (id, handed over?, what was done) per transfer.
    """
    with catalog.reading() as session:
        stale = session.scalars(select(TransferRow).where(TransferRow.status == "preparing")).all()
    said: list[tuple[int, bool, str]] = []
    for row in stale:
        destination = Path(row.destination)
        register = destination / REGISTER
        try:
            data = register.read_bytes()
            ours = etree.fromstring(data, _PARSER).get("编号") == str(row.id)
        except (OSError, etree.XMLSyntaxError):
            data, ours = b"", False
        if ours and check_transfer(destination).ok:
            _finish(catalog, row.id, data, registers_dir, destination)
            said.append(
                (row.id, True, f"移交 {row.id} to {destination} was handed over whole; registered now")
            )
            continue
        shutil.rmtree(destination.parent / f".{destination.name}.partial", ignore_errors=True)
        with catalog.transaction() as session:
            session.get(TransferRow, row.id).status = "interrupted"  # type: ignore[union-attr]
        said.append(
            (row.id, False, f"移交 {row.id} to {destination} was interrupted before the set was whole")
        )
    return said


def _item(record: ArchiveRecordRow) -> dict[str, Any]:
    return {
        "档号": record.archival_code,
        "题名": record.title,
        "年度": record.year,
        "保管期限": record.retention,
        "凭证号": record.voucher_no or "",
        "日期": record.record_date.isoformat(),
        "全宗": record.fonds_no,
        "versions": [],
    }


def _fonds_names(items: dict[int, dict[str, Any]]) -> str:
    return ", ".join(sorted({i["全宗"] for i in items.values()}))


def render_register(head: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    """The 移交清册: the transfer's heading, then each 件 with every version and every file's hashes."""
    root = etree.Element("会计档案移交清册", 编号=str(head["编号"]))
    for key, value in head.items():
        if key != "编号":
            etree.SubElement(root, key).text = str(value)
    listing = etree.SubElement(root, "明细")
    for item in sorted(items, key=lambda i: i["档号"]):
        node = etree.SubElement(listing, "件", 档号=item["档号"])
        for key in ("题名", "年度", "保管期限", "凭证号", "日期"):
            etree.SubElement(node, key).text = str(item[key])
        for relation, other, basis in item.get("关联", []):
            etree.SubElement(node, "关联", 关系=relation, 档号=other).text = basis
        for v in item["versions"]:
            version = etree.SubElement(
                node, "版本", 号=str(v["version"]), 路径=v["path"], manifest_sha256=v["manifest_sha256"]
            )
            for path, role, size, sha256, sm3 in v["files"]:
                etree.SubElement(
                    version, "文件", 路径=path, 角色=role, 字节=str(size), sha256=sha256, sm3=sm3
                )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def check_transfer(directory: Path) -> TransferCheck:
    """The receiver's 四性检测 of a transfer set, with nothing but the set: every package listed in the 移交清册
    re-hashed (SHA-256 and SM3, both manifests, the metadata) against the hashes the 清册 gives, and nothing
    on disk that it does not list."""
    report = TransferCheck()
    register = directory / REGISTER
    try:
        tree = etree.parse(str(register), _PARSER)
    except (OSError, etree.XMLSyntaxError) as exc:
        report.problems.append(f"{register}: cannot be read as the 移交清册: {exc}")
        return report
    if tree.docinfo.doctype:  # the carrier of entity tricks; a 移交清册 never has one
        report.problems.append(f"{register}: has a DOCTYPE, which a 移交清册 never has: refused unread")
        return report
    root = tree.getroot()
    listed: set[str] = set()
    for item in root.iter("件"):
        code = item.get("档号") or ""
        report.records += 1
        for version in item.iter("版本"):
            rel = version.get("路径") or ""
            listed.add(rel)
            expected = {
                f.get("路径") or "": (f.get("sha256") or "", f.get("sm3") or "", int(f.get("字节") or -1))
                for f in version.iter("文件")
            }
            package_dir = directory / "archive" / rel
            name = f"{code} v{version.get('号')}"
            if not package_dir.is_dir():
                report.problems.append(f"{name}: listed in the 移交清册 but not in the set ({rel})")
                continue
            report.packages += 1
            report.files += len(expected)
            report.problems.extend(
                f"{name}: {p.path}: {p.reason.replace('the catalog', 'the 移交清册')}"
                for p in verify_package_dir(package_dir, expected, code)
            )
            manifest = expected.get("manifest-sha256.txt")
            if manifest and manifest[0] != version.get("manifest_sha256"):
                report.problems.append(f"{name}: the 移交清册 contradicts itself on manifest-sha256.txt")
    for package_dir in published_packages(directory / "archive"):
        rel = str(package_dir.relative_to(directory / "archive"))
        if rel not in listed:
            report.problems.append(f"{rel}: in the set but not in the 移交清册")
    return report
