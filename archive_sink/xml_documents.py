"""The two XML documents of a package: the voucher itself (记账凭证) and its DA/T 94 metadata.

Element names are the Chinese element names of DA/T 94-2022, as DA/T 48-style encapsulation does.
The documents are written by a small escaping writer rather than by building an lxml tree: they
are flat and fixed in shape, and this is the archive step's hottest code (≈3× faster). Tests parse
the documents back with defusedxml, and `verify` with a defused lxml parser (metadata_check.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr as _sax_quoteattr

from canonical_model.record import ArchiveRecord, FileEntity
from canonical_model.voucher import Voucher, VoucherLine

VOUCHER_NS = "urn:archive-hub:voucher:1"
METADATA_NS = "urn:archive-hub:da-t-94:1"


@lru_cache(maxsize=8192)
def quoteattr(value: str) -> str:
    """saxutils.quoteattr, cached: attribute values (roles, 辅助核算 names, line numbers) repeat endlessly."""
    return _sax_quoteattr(value)


def _attrs(attrib: dict[str, str]) -> str:
    return "".join(f" {k}={quoteattr(v)}" for k, v in attrib.items())


def _escape(text: str) -> str:
    """xml.sax.saxutils.escape, without its three passes when there is nothing to escape (the usual case)."""
    if "&" in text or "<" in text or ">" in text:
        return escape(text)
    return text


class _Writer:
    """Appends indented elements; `open`/`close` for containers, `leaf` for text elements.

    Attributes are passed pre-rendered (`attrs=_attrs({...})`), so the common call builds no dict.
    """

    def __init__(self, root: str, namespace: str, attrs: str = "") -> None:
        self.parts = ["<?xml version='1.0' encoding='UTF-8'?>\n", f'<{root} xmlns="{namespace}"{attrs}>\n']
        self.stack = [root]
        self.indent = "  "

    def leaf(self, tag: str, text: object | None = None, attrs: str = "") -> None:
        if text is None or text == "":
            self.parts.append(f"{self.indent}<{tag}{attrs}/>\n")
        else:
            self.parts.append(f"{self.indent}<{tag}{attrs}>{_escape(_text(text))}</{tag}>\n")

    def open(self, tag: str, attrs: str = "") -> None:
        self.parts.append(f"{self.indent}<{tag}{attrs}>\n")
        self.stack.append(tag)
        self.indent += "  "

    def raw(self, text: str) -> None:
        """Append pre-rendered elements (they must already carry this depth's indentation)."""
        self.parts.append(text)

    def close(self) -> None:
        tag = self.stack.pop()
        self.indent = self.indent[:-2]
        self.parts.append(f"{self.indent}</{tag}>\n")

    def bytes(self) -> bytes:
        while self.stack:
            self.close()
        return "".join(self.parts).encode("utf-8")


def _text(value: object) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is Decimal:
        return f"{value:.2f}"
    if kind is dt.datetime:
        return value.isoformat(timespec="seconds")  # type: ignore[attr-defined]
    if kind is dt.date:
        return value.isoformat()  # type: ignore[attr-defined]
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _leaf(indent: str, tag: str, text: object | None, attrs: str = "") -> str:
    """One text element as a string (what `_Writer.leaf` appends), for blocks rendered in one piece."""
    if text is None or text == "":
        return f"{indent}<{tag}{attrs}/>\n"
    return f"{indent}<{tag}{attrs}>{_escape(_text(text))}</{tag}>\n"


def _line_block(line: VoucherLine) -> str:
    """One 分录 in one f-string: voucher lines are most of a voucher's elements (the hot loop)."""
    i = "      "
    aux = ""
    if line.auxiliary:
        items = "".join(
            _leaf("        ", "项", value, f" 名称={quoteattr(name)}")
            for name, value in sorted(line.auxiliary.items())
        )
        aux = f"{i}<辅助核算>\n{items}{i}</辅助核算>\n"
    return (
        f'    <分录 行号="{line.line_no}">\n'
        f"{_leaf(i, '摘要', line.summary)}{_leaf(i, '科目编码', line.account_code)}"
        f"{_leaf(i, '科目名称', line.account_name)}"
        f"{i}<借方金额>{line.debit:.2f}</借方金额>\n{i}<贷方金额>{line.credit:.2f}</贷方金额>\n"
        f"{_leaf(i, '币种', line.currency)}{i}<汇率>{line.exchange_rate:.2f}</汇率>\n"
        f"{aux}    </分录>\n"
    )


_SHA256 = _attrs({"算法": "SHA-256"})
_SM3 = _attrs({"算法": "SM3"})


def voucher_xml(voucher: Voucher, record: ArchiveRecord) -> bytes:
    w = _Writer("记账凭证", VOUCHER_NS)
    w.leaf("账簿", voucher.book_code)
    w.leaf("会计年度", voucher.fiscal_year)
    w.leaf("会计期间", voucher.period)
    w.leaf("凭证字", voucher.word)
    w.leaf("凭证号", voucher.number)
    w.leaf("凭证日期", voucher.date)
    w.leaf("摘要", voucher.summary)
    w.leaf("币种", voucher.currency)
    w.leaf("附单据数", voucher.attachment_count)
    w.open("分录列表")
    w.raw("".join(_line_block(line) for line in voucher.lines))
    w.close()
    w.open("合计")
    w.leaf("借方金额", voucher.debit_total)
    w.leaf("贷方金额", voucher.credit_total)
    w.close()
    w.open("签章")
    for agent in record.agents:
        w.leaf(agent.role.value, agent.name)
    w.close()
    return w.bytes()


def metadata_xml(
    record: ArchiveRecord,
    *,
    archival_code: str,
    item_no: int,
    version: int,
    previous: dict[str, str] | None,
    files: list[FileEntity],
    archived_at: dt.datetime,
    retention_due: dt.date | None,
    scanned_with: str | None = None,
    checks: Sequence[str] = (),
) -> bytes:
    w = _Writer("电子会计档案元数据", METADATA_NS, _attrs({"标准": "DA/T 94-2022"}))
    w.open("文件实体")
    w.leaf("聚合层次", record.aggregation_level)
    w.open("来源")
    w.leaf("全宗名称", record.fonds.fonds_name)
    w.leaf("全宗号", record.fonds.fonds_no)
    w.leaf("立档单位名称", record.fonds.unit_name)
    w.close()
    w.leaf("档号", archival_code)
    w.leaf("类别号", record.category.code)
    w.leaf("件号", item_no)
    w.leaf("题名", record.title)
    w.leaf("日期", record.date)
    if record.document_no:
        w.leaf("文件编号", record.document_no)
    w.leaf("责任者", record.responsible)
    w.leaf("附件", len(record.attachments))
    w.leaf("密级", record.classification)
    w.leaf("保管期限", record.retention.label, _attrs({"代码": record.retention.value}))
    if retention_due is not None:
        w.leaf("保管期限到期日", retention_due)
    w.leaf("摘要", record.summary)
    w.leaf("会计年度", record.fiscal_year)
    if record.period is not None:
        w.leaf("会计期间", record.period)
    w.leaf("会计资料形式", record.category.form.value)
    w.leaf("会计资料类别", record.category.item)
    if record.voucher_no:
        w.leaf("凭证号", record.voucher_no)
    if record.start_date or record.end_date:
        w.leaf("起止日期", f"{_text(record.start_date or '')}/{_text(record.end_date or '')}")
    w.leaf("币种", record.currency)
    if record.amount_total is not None:
        w.leaf("金额合计", record.amount_total)
    w.leaf("存储位置", "data/")
    for code in record.related_codes:
        w.leaf("关联档案号", code)
    w.open("业务系统")
    w.leaf("系统", record.source.system)
    w.leaf("数据源", record.source.source_id)
    w.leaf("数据流", record.source.stream)
    w.leaf("业务标识", record.source.business_id)
    if record.source.changed_at:
        w.leaf("变更时间", record.source.changed_at)
    w.close()
    w.leaf("版本", version)
    i = "      "
    w.raw(
        "".join(
            f'    <计算机文件 序号="{index}" 角色={quoteattr(f.role)}>\n'
            f"{_leaf(i, '计算机文件名', f.path)}{i}<计算机文件大小>{f.size}</计算机文件大小>\n"
            f"{_leaf(i, '格式信息', f.media_type)}{_leaf(i, '哈希值', f.sha256, _SHA256)}"
            f"{_leaf(i, '哈希值', f.sm3, _SM3)}    </计算机文件>\n"
            for index, f in enumerate(files, start=1)
        )
    )
    w.close()
    w.open("机构人员实体")
    for agent in record.agents:
        w.open("机构人员", _attrs({"角色": agent.role.value}))
        w.leaf("机构人员名称", agent.name)
        if agent.code:
            w.leaf("机构人员代码", agent.code)
        w.close()
    w.close()
    w.open("业务实体")
    w.open("业务行为")
    w.leaf("行为", "归档")
    w.leaf("行为时间", archived_at)
    w.leaf("行为描述", f"由 {record.source.source_id} 自动归档，第 {version} 版")
    w.close()
    if scanned_with:  # 四性检测, 安全性: the attachments were scanned before they were archived
        w.open("业务行为")
        w.leaf("行为", "检测")
        w.leaf("行为时间", archived_at)
        w.leaf("行为描述", f"病毒检测: {scanned_with}, 附件未发现病毒")
        w.close()
    for check in checks:  # 四性检测 made on the attachments at archiving (电子签章, 发票查重)
        w.open("业务行为")
        w.leaf("行为", "检测")
        w.leaf("行为时间", archived_at)
        w.leaf("行为描述", check)
        w.close()
    w.close()
    w.open("关系实体")
    for code in record.related_codes:
        w.open("关系")
        w.leaf("关系类型", "关联")
        w.leaf("关系对象", code)
        w.close()
    if previous:
        w.open("关系")
        w.leaf("关系类型", "替代")  # this version supersedes the previous one, which is kept
        w.leaf("关系对象", previous["path"])
        w.leaf("关系描述", f"前一版本 manifest SHA-256 {previous['manifest_sha256']}")
        w.close()
    w.close()
    return w.bytes()
