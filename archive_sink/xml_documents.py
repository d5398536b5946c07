"""The two XML documents of a package: the voucher itself (记账凭证) and its DA/T 94 metadata.

Element names are the Chinese element names of DA/T 94-2022, as DA/T 48-style encapsulation does.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from lxml import etree

from canonical_model.record import ArchiveRecord, FileEntity
from canonical_model.voucher import Voucher

VOUCHER_NS = "urn:archive-hub:voucher:1"
METADATA_NS = "urn:archive-hub:da-t-94:1"


def _sub(parent: etree._Element, tag: str, text: object | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = _text(text)
    return el


def _text(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def voucher_xml(voucher: Voucher, record: ArchiveRecord) -> bytes:
    root = etree.Element("记账凭证", nsmap={None: VOUCHER_NS})
    _sub(root, "账簿", voucher.book_code)
    _sub(root, "会计年度", voucher.fiscal_year)
    _sub(root, "会计期间", voucher.period)
    _sub(root, "凭证字", voucher.word)
    _sub(root, "凭证号", voucher.number)
    _sub(root, "凭证日期", voucher.date)
    _sub(root, "摘要", voucher.summary)
    _sub(root, "币种", voucher.currency)
    _sub(root, "附单据数", voucher.attachment_count)
    lines = _sub(root, "分录列表")
    for line in voucher.lines:
        el = _sub(lines, "分录", 行号=str(line.line_no))
        _sub(el, "摘要", line.summary)
        _sub(el, "科目编码", line.account_code)
        _sub(el, "科目名称", line.account_name)
        _sub(el, "借方金额", line.debit)
        _sub(el, "贷方金额", line.credit)
        _sub(el, "币种", line.currency)
        _sub(el, "汇率", line.exchange_rate)
        if line.auxiliary:
            aux = _sub(el, "辅助核算")
            for name, value in sorted(line.auxiliary.items()):
                _sub(aux, "项", value, 名称=name)
    totals = _sub(root, "合计")
    _sub(totals, "借方金额", voucher.debit_total)
    _sub(totals, "贷方金额", voucher.credit_total)
    people = _sub(root, "签章")
    for agent in record.agents:
        _sub(people, agent.role.value, agent.name)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


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
) -> bytes:
    root = etree.Element("电子会计档案元数据", nsmap={None: METADATA_NS}, 标准="DA/T 94-2022")
    entity = _sub(root, "文件实体")
    _sub(entity, "聚合层次", record.aggregation_level)
    source = _sub(entity, "来源")
    _sub(source, "全宗名称", record.fonds.fonds_name)
    _sub(source, "全宗号", record.fonds.fonds_no)
    _sub(source, "立档单位名称", record.fonds.unit_name)
    _sub(entity, "档号", archival_code)
    _sub(entity, "类别号", record.category.code)
    _sub(entity, "件号", item_no)
    _sub(entity, "题名", record.title)
    _sub(entity, "日期", record.date)
    if record.document_no:
        _sub(entity, "文件编号", record.document_no)
    _sub(entity, "责任者", record.responsible)
    _sub(entity, "附件", len(record.attachments))
    _sub(entity, "密级", record.classification)
    _sub(entity, "保管期限", record.retention.label, 代码=record.retention.value)
    if retention_due is not None:
        _sub(entity, "保管期限到期日", retention_due)
    _sub(entity, "摘要", record.summary)
    _sub(entity, "会计年度", record.fiscal_year)
    if record.period is not None:
        _sub(entity, "会计期间", record.period)
    _sub(entity, "会计资料形式", record.category.form.value)
    _sub(entity, "会计资料类别", record.category.item)
    if record.voucher_no:
        _sub(entity, "凭证号", record.voucher_no)
    if record.start_date or record.end_date:
        _sub(entity, "起止日期", f"{_text(record.start_date or '')}/{_text(record.end_date or '')}")
    _sub(entity, "币种", record.currency)
    if record.amount_total is not None:
        _sub(entity, "金额合计", record.amount_total)
    _sub(entity, "存储位置", "data/")
    for code in record.related_codes:
        _sub(entity, "关联档案号", code)
    origin = _sub(entity, "业务系统")
    _sub(origin, "系统", record.source.system)
    _sub(origin, "数据源", record.source.source_id)
    _sub(origin, "数据流", record.source.stream)
    _sub(origin, "业务标识", record.source.business_id)
    if record.source.changed_at:
        _sub(origin, "变更时间", record.source.changed_at)
    _sub(entity, "版本", version)
    for index, f in enumerate(files, start=1):
        el = _sub(entity, "计算机文件", 序号=str(index), 角色=f.role)
        _sub(el, "计算机文件名", f.path)
        _sub(el, "计算机文件大小", f.size)
        _sub(el, "格式信息", f.media_type)
        _sub(el, "哈希值", f.sha256, 算法="SHA-256")
        _sub(el, "哈希值", f.sm3, 算法="SM3")
    agents = _sub(root, "机构人员实体")
    for agent in record.agents:
        el = _sub(agents, "机构人员", 角色=agent.role.value)
        _sub(el, "机构人员名称", agent.name)
        if agent.code:
            _sub(el, "机构人员代码", agent.code)
    business = _sub(root, "业务实体")
    act = _sub(business, "业务行为")
    _sub(act, "行为", "归档")
    _sub(act, "行为时间", archived_at)
    _sub(act, "行为描述", f"由 {record.source.source_id} 自动归档，第 {version} 版")
    relations = _sub(root, "关系实体")
    for code in record.related_codes:
        rel = _sub(relations, "关系")
        _sub(rel, "关系类型", "关联")
        _sub(rel, "关系对象", code)
    if previous:
        rel = _sub(relations, "关系")
        _sub(rel, "关系类型", "替代")  # this version supersedes the previous one, which is kept
        _sub(rel, "关系对象", previous["path"])
        _sub(rel, "关系描述", f"前一版本 manifest SHA-256 {previous['manifest_sha256']}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
