"""Our own fixtures for OFX 1.x/2.x, BAI2 and the ICBC/CMB/CCB exports (CSV in GBK or UTF-8-BOM, and XLSX)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from connectors.bank import bai2, cn, detect, ofx

from .helpers import FIXTURES


def test_ofx1_sgml() -> None:
    (s,) = ofx.parse((FIXTURES / "ofx1_checking.ofx").read_bytes(), source="a.ofx")
    assert (s.account, s.currency, s.account_bank) == ("4412345678", "USD", "121000248")
    assert [e.amount for e in s.entries] == [Decimal("2500.00"), Decimal("-120.45"), Decimal("-300.00")]
    assert s.entries[1].counterparty_name == "CITY POWER & LIGHT"
    assert s.entries[1].value_date == dt.date(2024, 1, 11)
    assert s.entries[2].customer_reference == "1042"
    assert s.closing_balance is not None and s.closing_balance.amount == Decimal("5079.55")
    assert s.opening_balance is None  # OFX has none and none is invented
    assert s.balance_check == "not checked: the statement carries no opening booked balance."


def test_ofx2_xml_credit_card() -> None:
    (s,) = ofx.parse((FIXTURES / "ofx2_creditcard.ofx").read_bytes(), source="b.ofx")
    assert (s.account, s.currency) == ("5500000000000004", "EUR")
    assert [str(e.amount) for e in s.entries] == ["-45.90", "10.00"]
    assert s.entries[0].counterparty_name == "Buchhandlung Müller"
    assert s.closing_balance is not None and s.closing_balance.amount == Decimal("-35.90")


def test_bai2_accounts_and_trailers() -> None:
    a, b = bai2.parse((FIXTURES / "bai2_two_accounts.bai").read_bytes(), source="x.bai")
    assert (a.account, a.opening_balance.amount, a.closing_balance.amount) == (  # type: ignore[union-attr]
        "4412345678",
        Decimal("10000.00"),
        Decimal("12325.00"),
    )
    assert [e.amount for e in a.entries] == [Decimal("2500.00"), Decimal("-175.00")]
    assert a.entries[1].remittance == "CHECK PAID,CHECK NUMBER 1042, PAYEE SMITH"  # 88 continuation
    assert a.balance_check == b.balance_check == "ok"
    assert b.entries[0].value_date == dt.date(2024, 2, 1)  # funds type V


@pytest.mark.parametrize(
    ("fixture", "layout", "account", "amounts"),
    [
        ("icbc_gbk.csv", "icbc", "1202021209900123456", ["58000.00", "-4249.50"]),
        ("cmb_utf8bom.csv", "cmb", "755912345610801", ["12000.00", "-3500.25", "1.38"]),
        ("ccb_gbk.csv", "ccb", "41001500260050001234", ["-1500.00", "20000.00"]),
    ],
)
def test_chinese_csv_layouts(fixture: str, layout: str, account: str, amounts: list[str]) -> None:
    data = (FIXTURES / fixture).read_bytes()
    for chosen in (layout, None):  # named layout and auto-picked layout agree
        (s,) = cn.parse(data, source=fixture, layout=chosen)
        assert s.account == account and s.currency == "CNY"
        assert [str(e.amount) for e in s.entries] == amounts
        assert s.balance_check == "ok"
        assert s.format == f"cn-csv:{layout}"
    assert detect.detect(data, source=fixture) == "cn-csv"


def test_icbc_fields() -> None:
    (s,) = cn.parse((FIXTURES / "icbc_gbk.csv").read_bytes(), source="icbc", layout="icbc")
    e = s.entries[1]
    assert e.counterparty_name == "北京电力公司"
    assert e.counterparty_account == "110060123018800012345"
    assert e.remittance == "电费 2024年2月电费"
    assert e.bank_reference == "ICBC20240311000202"
    assert e.balance_after == Decimal("153750.50")
    assert e.booking_time == dt.datetime(2024, 3, 11, 14, 2, 10)
    assert s.opening_balance is not None and s.opening_balance.amount == Decimal("100000.00")
    assert s.account_owner == "北京示例科技有限公司"


def _xlsx_from_csv(csv_path: Path, encoding: str, out: Path, numeric: bool) -> Path:
    import csv
    import io

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for row in csv.reader(io.StringIO(csv_path.read_bytes().decode(encoding))):
        cells: list[object] = []
        for c in row:
            if (
                numeric
                and len(row) >= 6
                and c.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()
                and "." in c
            ):
                cells.append(float(c.replace(",", "")))  # how Excel stores money: a double
            else:
                cells.append(c)
        ws.append(cells)
    wb.save(out)
    return out


@pytest.mark.parametrize(
    ("fixture", "encoding", "layout"),
    [
        ("icbc_gbk.csv", "gb18030", "icbc"),
        ("cmb_utf8bom.csv", "utf-8-sig", "cmb"),
        ("ccb_gbk.csv", "gb18030", "ccb"),
    ],
)
def test_chinese_xlsx_layouts(tmp_path: Path, fixture: str, encoding: str, layout: str) -> None:
    (want,) = cn.parse((FIXTURES / fixture).read_bytes(), source=fixture, layout=layout)
    xlsx = _xlsx_from_csv(FIXTURES / fixture, encoding, tmp_path / f"{layout}.xlsx", numeric=True)
    data = xlsx.read_bytes()
    assert detect.detect(data, source="x.xlsx") == "cn-csv"
    (got,) = cn.parse(data, source="x.xlsx")
    assert got.format == f"cn-xlsx:{layout}"
    assert [e.amount for e in got.entries] == [e.amount for e in want.entries]
    assert [e.balance_after for e in got.entries] == [e.balance_after for e in want.entries]
    assert got.account == want.account
    assert got.balance_check == "ok"
    assert got.entries[0].position == "sheet 'Sheet' row " + str(int(want.entries[0].position.split()[-1]))


def test_xlsx_amount_with_too_many_decimals_is_refused(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["账号: 4100150026005000"])
    ws.append(
        ["记账日期", "交易日期", "交易金额", "账户余额", "币种", "对方户名", "对方账号", "摘要", "交易流水号"]
    )
    ws.append(["20240601", "20240601", 12.345, 10.3, "人民币", "x", "1", "y", "z"])
    wb.save(tmp_path / "noise.xlsx")
    with pytest.raises(Exception) as info:
        cn.parse((tmp_path / "noise.xlsx").read_bytes(), source="noise.xlsx", layout="ccb")
    assert "more decimals than CNY allows" in str(info.value)
