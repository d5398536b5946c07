"""四性检测 on the metadata of a package: the DA/T 94 XML parses (defused), names the 档号 the
catalog holds, carries the mandatory elements, and lists every content file with the hashes the
manifests give (content properties match metadata)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from archive_sink.xml_documents import METADATA_NS

MANDATORY = (
    "聚合层次",
    "来源/m:全宗号",
    "档号",
    "题名",
    "日期",
    "责任者",
    "保管期限",
    "会计年度",
    "会计资料形式",
)
_NS = {"m": METADATA_NS}
# Defused: no DTD loading, no entity expansion, no network, no huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def check_metadata(
    package_dir: Path, archival_code: str | None, manifest_sha256: dict[str, str]
) -> list[str]:
    path = package_dir / "data" / "metadata.xml"
    try:
        data = path.read_bytes()
        if b"<!DOCTYPE" in data[:2048] or b"<!ENTITY" in data:
            return ["data/metadata.xml: carries a DOCTYPE/ENTITY declaration (refused)"]
        root = etree.fromstring(data, _PARSER)
    except (OSError, etree.XMLSyntaxError) as exc:
        return [f"data/metadata.xml: does not parse: {exc}"]
    entity = root.find("m:文件实体", _NS)
    if entity is None:
        return ["data/metadata.xml: no 文件实体 element"]
    problems = []
    for name in MANDATORY:
        element = entity.find(f"m:{name}", _NS)
        if element is None or not (element.text or "").strip():
            problems.append(
                f"data/metadata.xml: mandatory element {name.replace('m:', '')} is missing or empty"
            )
    code = entity.findtext("m:档号", namespaces=_NS)
    if archival_code is not None and code != archival_code:
        problems.append(f"data/metadata.xml: 档号 {code!r} differs from the catalog's {archival_code!r}")
    listed = {}
    for f in entity.findall("m:计算机文件", _NS):
        name = f.findtext("m:计算机文件名", namespaces=_NS)
        sha = next((h.text for h in f.findall("m:哈希值", _NS) if h.get("算法") == "SHA-256"), None)
        listed[name] = sha
    for name, digest in manifest_sha256.items():
        if name == "data/metadata.xml":
            continue
        if name not in listed:
            problems.append(f"data/metadata.xml: content file {name} is not described")
        elif listed[name] != digest:
            problems.append(f"data/metadata.xml: 哈希值 of {name} differs from manifest-sha256.txt")
    return problems
