"""The YAML mapping engine: a good record maps; every failure names mapping file, field and record."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from archive_hub.settings import PROJECT_ROOT
from mappings import MappingConfigError, MappingError, load_mapping

MAPPING = PROJECT_ROOT / "mappings" / "erp_sample_voucher.yaml"
CONTEXT = {
    "source_id": "erp_sample",
    "system": "sample-erp",
    "fonds_no": "J001",
    "fonds_name": "华东精密制造有限公司",
}
RAW = {
    "id": 42,
    "company_id": 1,
    "company_code": "1001",
    "company_name": "华东精密制造有限公司",
    "book_code": "01",
    "fiscal_year": 2025,
    "period": 3,
    "voucher_word": "记",
    "voucher_no": 12,
    "voucher_date": "2025-03-05",
    "summary": "报销差旅费",
    "currency": "CNY",
    "preparer": "张伟",
    "reviewer": "李娜",
    "poster": "王芳",
    "chief_accountant": "刘洋",
    "attachment_count": 1,
    "status": "posted",
    "created_at": "2025-03-05T10:00:00",
    "updated_at": "2025-03-05T11:00:00",
    "lines": [
        {
            "line_no": 1,
            "summary": "报销差旅费",
            "account_code": "6602.01",
            "account_name": "差旅费",
            "debit": "1200.00",
            "credit": "0.00",
            "currency": "CNY",
            "exchange_rate": "1",
            "aux_customer": None,
            "aux_supplier": None,
            "aux_department": "销售部",
            "aux_employee": "张伟",
            "aux_project": None,
        },
        {
            "line_no": 2,
            "summary": "报销差旅费",
            "account_code": "1001",
            "account_name": "库存现金",
            "debit": "0.00",
            "credit": "1200.00",
            "currency": "CNY",
            "exchange_rate": "1",
            "aux_customer": None,
            "aux_supplier": None,
            "aux_department": None,
            "aux_employee": None,
            "aux_project": None,
        },
    ],
    "attachments": [{"file_name": "发票.pdf", "mime_type": "application/pdf", "uri": "/x/a.pdf", "size": 10}],
}


def test_a_good_voucher_maps_to_the_canonical_record() -> None:
    record = load_mapping(MAPPING).apply(copy.deepcopy(RAW), "42", CONTEXT)
    assert record.voucher is not None
    assert record.voucher_no == "记-0012"
    assert record.voucher.debit_total == record.voucher.credit_total == record.amount_total
    assert str(record.amount_total) == "1200.00"
    assert record.voucher.lines[0].auxiliary == {"部门": "销售部", "职员": "张伟"}
    assert record.retention.value == "D30"
    assert [a.role.value for a in record.agents] == ["制单", "审核", "记账", "会计主管"]
    assert record.source.business_id == "42"


def test_missing_account_names_file_field_and_record() -> None:
    raw = copy.deepcopy(RAW)
    raw["lines"][1]["account_code"] = None
    with pytest.raises(MappingError) as info:
        load_mapping(MAPPING).apply(raw, "42", CONTEXT)
    message = str(info.value)
    assert "erp_sample_voucher.yaml" in message and "record 42" in message
    assert "voucher.lines.1.account_code" in message and "missing" in message


def test_unparseable_date_is_explained() -> None:
    raw = copy.deepcopy(RAW)
    raw["voucher_date"] = "2025-13-45"
    with pytest.raises(
        MappingError, match=r"field date: cannot read '2025-13-45' from source field 'voucher_date' as date"
    ):
        load_mapping(MAPPING).apply(raw, "42", CONTEXT)


def test_unknown_source_field_is_named() -> None:
    raw = copy.deepcopy(RAW)
    del raw["book_code"]
    with pytest.raises(MappingError, match=r"record 42: field .*: .*book_code"):
        load_mapping(MAPPING).apply(raw, "42", CONTEXT)


def test_unknown_target_field_is_refused_when_the_mapping_loads(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text(
        MAPPING.read_text(encoding="utf-8").replace(
            '  summary: {from: summary, default: ""}\n', "  sumary: summary\n", 1
        ),
        encoding="utf-8",
    )
    with pytest.raises(MappingConfigError, match=r"typo.yaml: unknown target field 'sumary'"):
        load_mapping(bad)


def test_unknown_type_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "type.yaml"
    bad.write_text(
        MAPPING.read_text(encoding="utf-8").replace(
            "{from: fiscal_year, type: int}", "{from: fiscal_year, type: integer}", 1
        ),
        encoding="utf-8",
    )
    with pytest.raises(MappingConfigError, match="unknown type 'integer'"):
        load_mapping(bad)
