"""Fill the sample ERP (总账) with a deterministic year of realistic vouchers, attachments and known defects.

Why: the demo, the connector tests and the benchmark all need the same believable ledger — balanced
凭证 with 辅助核算, gap-free 凭证号, month-end 计提/结转, attachments on a "file server" — plus a
handful of deliberately broken records whose ids are reported, so validation can be tested against a
known answer. Everything derives from ``random.Random(seed)``: same seed, same rows, same bytes.

Run: ``python -m connectors.erp.sample_erp.seed --db-url sqlite:///var/sample_erp/erp.sqlite
--attachments var/sample_erp/attachments --vouchers 3000``.
"""

from __future__ import annotations

import argparse
import calendar
import random
import struct
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.engine import make_url

from connectors.erp.sample_erp.einvoices import BUYER, SELLER, SampleInvoice, einvoice_ofd, einvoice_xml
from connectors.erp.sample_erp.pdf_bytes import assemble_pdf
from connectors.erp.sample_erp.schema import account, attachment, company, metadata, voucher, voucher_line

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
VAT_RATE = Decimal("0.13")  # 增值税基本税率 13%
BOOK_CODE = "01"  # 主账簿
CURRENCY = "CNY"

COMPANY = {
    "id": 1,
    "code": "1001",
    "name": "华东精密制造有限公司",
    "fonds_no": "J001",
    "base_currency": CURRENCY,
}

# 科目表 per 企业会计准则 (code, leaf name, 类别, 余额方向). Names are leaf names, as Kingdee/Yonyou store
# them; the full name (应交税费-应交增值税-进项税额) is the chain of parent codes.
ACCOUNTS: list[tuple[str, str, str, str]] = [
    ("1001", "库存现金", "资产", "D"),
    ("1002", "银行存款", "资产", "D"),
    ("1002.01", "工商银行基本户", "资产", "D"),
    ("1002.02", "建设银行一般户", "资产", "D"),
    ("1002.03", "招商银行一般户", "资产", "D"),
    ("1012", "其他货币资金", "资产", "D"),
    ("1121", "应收票据", "资产", "D"),
    ("1122", "应收账款", "资产", "D"),
    ("1123", "预付账款", "资产", "D"),
    ("1221", "其他应收款", "资产", "D"),
    ("1231", "坏账准备", "资产", "C"),
    ("1403", "原材料", "资产", "D"),
    ("1405", "库存商品", "资产", "D"),
    ("1601", "固定资产", "资产", "D"),
    ("1602", "累计折旧", "资产", "C"),
    ("1701", "无形资产", "资产", "D"),
    ("2001", "短期借款", "负债", "C"),
    ("2201", "应付票据", "负债", "C"),
    ("2202", "应付账款", "负债", "C"),
    ("2203", "预收账款", "负债", "C"),
    ("2211", "应付职工薪酬", "负债", "C"),
    ("2211.01", "工资", "负债", "C"),
    ("2211.02", "社会保险费", "负债", "C"),
    ("2211.03", "住房公积金", "负债", "C"),
    ("2221", "应交税费", "负债", "C"),
    ("2221.01", "应交增值税", "负债", "C"),
    ("2221.01.01", "进项税额", "负债", "C"),
    ("2221.01.05", "销项税额", "负债", "C"),
    ("2221.02", "未交增值税", "负债", "C"),
    ("2221.06", "应交企业所得税", "负债", "C"),
    ("2221.07", "应交城建税及教育费附加", "负债", "C"),
    ("2221.10", "应交个人所得税", "负债", "C"),
    ("2241", "其他应付款", "负债", "C"),
    ("2241.01", "代扣社保", "负债", "C"),
    ("4001", "实收资本", "权益", "C"),
    ("4101", "盈余公积", "权益", "C"),
    ("4103", "本年利润", "权益", "C"),
    ("4104", "利润分配", "权益", "C"),
    ("5001", "生产成本", "成本", "D"),
    ("5101", "制造费用", "成本", "D"),
    ("5101.01", "折旧费", "成本", "D"),
    ("5101.02", "工资", "成本", "D"),
    ("5101.03", "水电费", "成本", "D"),
    ("6001", "主营业务收入", "损益", "C"),
    ("6051", "其他业务收入", "损益", "C"),
    ("6401", "主营业务成本", "损益", "D"),
    ("6601", "销售费用", "损益", "D"),
    ("6601.01", "工资", "损益", "D"),
    ("6601.02", "运输费", "损益", "D"),
    ("6601.03", "折旧费", "损益", "D"),
    ("6602", "管理费用", "损益", "D"),
    ("6602.01", "工资", "损益", "D"),
    ("6602.02", "差旅费", "损益", "D"),
    ("6602.03", "办公费", "损益", "D"),
    ("6602.04", "业务招待费", "损益", "D"),
    ("6602.05", "折旧费", "损益", "D"),
    ("6602.06", "研究费用", "损益", "D"),
    ("6603", "财务费用", "损益", "D"),
    ("6603.01", "利息支出", "损益", "D"),
    ("6603.02", "手续费", "损益", "D"),
    ("6603.03", "利息收入", "损益", "D"),
    ("6711", "营业外支出", "损益", "D"),
    ("6801", "所得税费用", "损益", "D"),
]

BANKS = ["1002.01", "1002.02", "1002.03"]
CUSTOMERS = [
    "苏州恒达机电有限公司",
    "上海锦程贸易有限公司",
    "无锡华光电子科技有限公司",
    "杭州新松自动化设备有限公司",
    "南京宏远工业集团有限公司",
    "宁波东方模具有限公司",
    "常州天合精密部件有限公司",
    "合肥瑞丰汽车零部件有限公司",
]
SUPPLIERS = [
    "江苏永钢金属材料有限公司",
    "昆山立信五金制品有限公司",
    "浙江中力轴承有限公司",
    "上海申达包装材料有限公司",
    "嘉兴恒润塑胶有限公司",
    "无锡明阳电气有限公司",
    "苏州顺通物流有限公司",
]
MATERIALS = ["冷轧钢板", "铝合金型材", "深沟球轴承", "伺服电机", "包装纸箱", "工程塑料粒子", "紧固件"]
PRODUCTS = ["精密主轴", "直线导轨", "滚珠丝杠", "数控转台"]
# 职员 → 部门 (辅助核算: 部门/职员)
EMPLOYEES = {
    "张伟": "销售部",
    "李娜": "财务部",
    "王芳": "行政部",
    "刘洋": "采购部",
    "陈静": "人力资源部",
    "杨磊": "生产部",
    "赵敏": "财务部",
    "黄晓明": "研发部",
    "周杰": "销售部",
    "吴婷": "总经办",
}
PREPARERS = ["李娜", "赵敏"]  # 制单
REVIEWERS = ["孙丽华", "钱进"]  # 审核 — never the preparer (不相容职务分离)
POSTER = "赵敏"  # 记账
CHIEF_ACCOUNTANT = "孙丽华"  # 会计主管
RD_PROJECT = "RD2025-01 高精度主轴研发"
CITIES = ["北京", "深圳", "成都", "武汉", "西安", "青岛"]

# Month weights: February is thin (春节), December heavy (年末结账).
MONTH_WEIGHTS = [9, 6, 9, 8, 8, 9, 8, 8, 9, 8, 8, 10]


class Defect(StrEnum):
    """The injected data-quality defects, one voucher each."""

    UNBALANCED = "unbalanced"  # 借贷不平
    MISSING_ACCOUNT = "missing_account"  # 分录缺科目
    INVALID_DATE = "invalid_date"  # 凭证日期无法解析
    MISSING_ATTACHMENT_FILE = "missing_attachment_file"  # 附件文件不存在
    DUPLICATE_VOUCHER_NO = "duplicate_voucher_no"  # 凭证号重复
    DUPLICATE_INVOICE = "duplicate_invoice"  # 发票重复报销: the file of an earlier voucher attached again
    # Only with `einvoices`: an earlier voucher's 数电票 booked again in its other carrier (the XML of an OFD)
    INVOICE_OTHER_CARRIER = "invoice_other_carrier"


@dataclass(frozen=True)
class BadVoucher:
    voucher_id: int
    defect: Defect
    detail: str


@dataclass
class SeedSummary:
    """What was seeded, so callers (tests, demo, bench) know the expected answer without re-querying."""

    db_url: str
    attachment_root: Path
    companies: int
    accounts: int
    vouchers: int  # including the bad ones
    normal_vouchers: int
    voucher_lines: int
    attachments: int
    attachment_bytes: int
    bad_vouchers: list[BadVoucher]
    seconds: float = field(default=0.0, compare=False)

    def one_line(self) -> str:
        bad = ", ".join(f"{b.voucher_id}:{b.defect}" for b in self.bad_vouchers) or "none"
        return (
            f"seeded {self.db_url}: {self.vouchers} vouchers ({self.normal_vouchers} normal), "
            f"{self.voucher_lines} lines, {self.accounts} accounts, {self.attachments} attachments "
            f"({self.attachment_bytes / 1_048_576:.1f} MiB under {self.attachment_root}), "
            f"bad=[{bad}] in {self.seconds:.1f}s"
        )


# --------------------------------------------------------------------------------------------- amounts


def _money(value: Decimal | float | int) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def _amount(rng: random.Random, low: int, high: int) -> Decimal:
    """A random amount in [low, high] yuan with cents; deterministic via rng."""
    return (Decimal(rng.randint(low * 100, high * 100)) / 100).quantize(CENT)


def _split(rng: random.Random, total: Decimal, parts: int) -> list[Decimal]:
    """Split total into `parts` positive amounts that add up exactly."""
    if parts <= 1 or total < CENT * parts * 10:
        return [total]
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    s = sum(weights)
    out = [_money(total * Decimal(w / s)) for w in weights[:-1]]
    out.append(total - sum(out, ZERO))
    return out


# --------------------------------------------------------------------------------------------- scenarios

Line = dict[str, Any]


def _dr(summary: str, code: str, amt: Decimal, **aux: str) -> Line:
    return {"summary": summary, "account_code": code, "debit": amt, "credit": ZERO, **aux}


def _cr(summary: str, code: str, amt: Decimal, **aux: str) -> Line:
    return {"summary": summary, "account_code": code, "debit": ZERO, "credit": amt, **aux}


@dataclass
class _PeriodState:
    """Running figures of one period so month-end 结转 follows the month's business."""

    revenue: Decimal = ZERO
    material_in: Decimal = ZERO


Scenario = Callable[[random.Random, _PeriodState], tuple[str, list[Line]]]


def _purchase_material(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    supplier = rng.choice(SUPPLIERS)
    mats = rng.sample(MATERIALS, rng.randint(1, 3))
    nets = [_amount(rng, 2_000, 120_000) for _ in mats]
    tax = _money(sum(nets, ZERO) * VAT_RATE)
    total = sum(nets, ZERO) + tax
    st.material_in += sum(nets, ZERO)
    lines = [_dr(f"采购{m} {supplier}", "1403", n) for m, n in zip(mats, nets, strict=True)]
    lines.append(_dr("进项税额", "2221.01.01", tax))
    lines.append(_cr(f"应付{supplier}货款", "2202", total, aux_supplier=supplier))
    return "转", lines


def _sell_goods(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    customer = rng.choice(CUSTOMERS)
    prods = rng.sample(PRODUCTS, rng.randint(1, 3))
    nets = [_amount(rng, 5_000, 260_000) for _ in prods]
    tax = _money(sum(nets, ZERO) * VAT_RATE)
    total = sum(nets, ZERO) + tax
    st.revenue += sum(nets, ZERO)
    lines = [_dr(f"销售商品 {customer}", "1122", total, aux_customer=customer)]
    lines += [_cr(f"销售{p}", "6001", n, aux_customer=customer) for p, n in zip(prods, nets, strict=True)]
    lines.append(_cr("销项税额", "2221.01.05", tax))
    return "转", lines


def _receive_payment(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    customer = rng.choice(CUSTOMERS)
    bank = rng.choice(BANKS)
    amt = _amount(rng, 10_000, 300_000)
    summary = f"收到{customer}货款"
    if rng.random() < 0.3:  # 客户承担不足额 — 银行扣了手续费
        fee = _amount(rng, 5, 50)
        return "收", [
            _dr(summary, bank, amt - fee),
            _dr("银行手续费", "6603.02", fee),
            _cr(summary, "1122", amt, aux_customer=customer),
        ]
    return "收", [_dr(summary, bank, amt), _cr(summary, "1122", amt, aux_customer=customer)]


def _pay_supplier(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    supplier = rng.choice(SUPPLIERS)
    bank = rng.choice(BANKS)
    amt = _amount(rng, 5_000, 200_000)
    summary = f"支付{supplier}货款"
    if rng.random() < 0.4:
        fee = _amount(rng, 1, 30)
        return "付", [
            _dr(summary, "2202", amt, aux_supplier=supplier),
            _dr("转账手续费", "6603.02", fee),
            _cr(summary, bank, amt + fee),
        ]
    return "付", [_dr(summary, "2202", amt, aux_supplier=supplier), _cr(summary, bank, amt)]


def _prepay_supplier(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    supplier = rng.choice(SUPPLIERS)
    amt = _amount(rng, 3_000, 80_000)
    summary = f"预付{supplier}材料款"
    return "付", [_dr(summary, "1123", amt, aux_supplier=supplier), _cr(summary, rng.choice(BANKS), amt)]


def _travel_expense(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    emp = rng.choice(list(EMPLOYEES))
    dept = EMPLOYEES[emp]
    amt = _amount(rng, 300, 9_000)
    summary = f"{emp}报销{rng.choice(CITIES)}差旅费"
    aux = {"aux_department": dept, "aux_employee": emp}
    if rng.random() < 0.5:  # 冲借款: 借支多于报销, 退回现金
        loan = _money(amt + _amount(rng, 100, 2_000))
        return "记", [
            _dr(summary, "6602.02", amt, **aux),
            _dr(f"{emp}退回借款余额", "1001", loan - amt),
            _cr(f"冲{emp}借款", "1221", loan, aux_employee=emp),
        ]
    return "付", [_dr(summary, "6602.02", amt, **aux), _cr(summary, "1001", amt)]


def _office_supplies(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    emp = rng.choice(list(EMPLOYEES))
    net = _amount(rng, 100, 5_000)
    tax = _money(net * VAT_RATE)
    summary = f"购买办公用品 {EMPLOYEES[emp]}"
    return "付", [
        _dr(summary, "6602.03", net, aux_department=EMPLOYEES[emp], aux_employee=emp),
        _dr("进项税额", "2221.01.01", tax),
        _cr(summary, rng.choice(["1001", *BANKS]), net + tax),
    ]


def _entertainment(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    emp = rng.choice(["张伟", "周杰", "吴婷"])
    amt = _amount(rng, 200, 6_000)
    summary = f"{emp}招待{rng.choice(CUSTOMERS)}业务招待费"
    return "付", [
        _dr(summary, "6602.04", amt, aux_department=EMPLOYEES[emp], aux_employee=emp),
        _cr(summary, "1002.01", amt),
    ]


def _employee_advance(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    emp = rng.choice(list(EMPLOYEES))
    amt = _money(rng.choice([1000, 2000, 3000, 5000]))
    summary = f"{emp}借支差旅费"
    return "付", [_dr(summary, "1221", amt, aux_employee=emp), _cr(summary, "1001", amt)]


def _withdraw_cash(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    amt = _money(rng.choice([5000, 10000, 20000]))
    return "付", [_dr("提取备用金", "1001", amt), _cr("提取备用金", "1002.01", amt)]


def _bank_fee(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    bank = rng.choice(BANKS)
    amt = _amount(rng, 5, 300)
    return "付", [_dr("银行手续费", "6603.02", amt), _cr("银行手续费", bank, amt)]


def _interest_income(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    bank = rng.choice(BANKS)
    amt = _amount(rng, 20, 3_000)
    return "收", [_dr("结息收入", bank, amt), _cr("结息收入", "6603.03", amt)]


def _buy_fixed_asset(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    supplier = rng.choice(SUPPLIERS)
    net = _amount(rng, 8_000, 400_000)
    tax = _money(net * VAT_RATE)
    summary = f"购入{rng.choice(['数控车床', '空压机', '检测仪器', '叉车', '办公电脑'])} {supplier}"
    return "付", [
        _dr(summary, "1601", net),
        _dr("进项税额", "2221.01.01", tax),
        _cr(summary, rng.choice(BANKS), net + tax),
    ]


def _freight(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    net = _amount(rng, 300, 12_000)
    tax = _money(net * Decimal("0.09"))  # 运输服务 9%
    summary = "支付销售运费 苏州顺通物流有限公司"
    return "付", [
        _dr(summary, "6601.02", net, aux_department="销售部"),
        _dr("进项税额", "2221.01.01", tax),
        _cr(summary, "2202", net + tax, aux_supplier="苏州顺通物流有限公司"),
    ]


def _rd_expense(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    amt = _amount(rng, 1_000, 30_000)
    return "转", [
        _dr("研发领用材料", "6602.06", amt, aux_department="研发部", aux_project=RD_PROJECT),
        _cr("研发领用材料", "1403", amt),
    ]


# (scenario, weight) for day-to-day business; month-end ones are generated separately.
DAILY: list[tuple[Scenario, int]] = [
    (_purchase_material, 18),
    (_sell_goods, 22),
    (_receive_payment, 16),
    (_pay_supplier, 14),
    (_prepay_supplier, 3),
    (_travel_expense, 9),
    (_office_supplies, 5),
    (_entertainment, 4),
    (_employee_advance, 3),
    (_withdraw_cash, 2),
    (_bank_fee, 3),
    (_interest_income, 1),
    (_buy_fixed_asset, 1),
    (_freight, 3),
    (_rd_expense, 2),
]


def _pay_salary(rng: random.Random, gross: Decimal) -> tuple[str, list[Line]]:
    """发放上月工资: 代扣个税和社保个人部分后从基本户发放."""
    iit = _money(gross * Decimal(rng.uniform(0.02, 0.04)))
    social = _money(gross * Decimal("0.105"))
    return "付", [
        _dr("发放上月工资", "2211.01", gross),
        _cr("代扣个人所得税", "2221.10", iit),
        _cr("代扣社保个人部分", "2241.01", social),
        _cr("发放上月工资", "1002.01", gross - iit - social),
    ]


def _accrue_salary(rng: random.Random, gross: Decimal) -> tuple[str, list[Line]]:
    """计提本月工资, 按部门分摊."""
    parts = _split(rng, gross, 4)
    if len(parts) < 4:
        return "转", [
            _dr("计提本月工资", "6602.01", gross, aux_department="行政部"),
            _cr("计提本月工资", "2211.01", gross),
        ]
    return "转", [
        _dr("计提管理人员工资", "6602.01", parts[0], aux_department="行政部"),
        _dr("计提研发人员工资", "6602.01", parts[1], aux_department="研发部"),
        _dr("计提销售人员工资", "6601.01", parts[2], aux_department="销售部"),
        _dr("计提车间人员工资", "5101.02", parts[3], aux_department="生产部"),
        _cr("计提本月工资", "2211.01", gross),
    ]


def _depreciation(rng: random.Random) -> tuple[str, list[Line]]:
    m, a, s = _amount(rng, 18_000, 26_000), _amount(rng, 3_000, 5_000), _amount(rng, 800, 1_500)
    return "转", [
        _dr("计提本月折旧", "5101.01", m, aux_department="生产部"),
        _dr("计提本月折旧", "6602.05", a, aux_department="行政部"),
        _dr("计提本月折旧", "6601.03", s, aux_department="销售部"),
        _cr("计提本月折旧", "1602", m + a + s),
    ]


def _carry_cost(rng: random.Random, st: _PeriodState) -> tuple[str, list[Line]]:
    """结转本月销售成本 ≈ 收入 × 毛利率倒数."""
    base = st.revenue if st.revenue > 0 else _amount(rng, 50_000, 200_000)
    cost = _money(base * Decimal(rng.uniform(0.62, 0.76)))
    parts = _split(rng, cost, 2)
    lines = [_dr("结转本月销售成本", "6401", cost)]
    lines += [_cr(f"结转{p}成本", "1405", amt) for p, amt in zip(PRODUCTS, parts, strict=False)]
    return "转", lines


# --------------------------------------------------------------------------------------------- files


def _pdf_text(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _build_pdf(lines: list[str], title: str, created: datetime, padding: bytes) -> bytes:
    """A one-page PDF 1.4 with a correct xref table; `padding` goes into an extra stream object."""
    content = ["BT", "/F1 16 Tf", "60 780 Td", "20 TL"]
    for i, text in enumerate(lines):
        if i == 1:
            content.append("/F1 11 Tf")
        content.append(f"({_pdf_text(text)}) Tj T*")
    content.append("ET")
    content += ["0.5 w", "50 800 495 -320 re S"]  # a frame around the "invoice"
    stream = "\n".join(content).encode("ascii")
    title_hex = (b"\xfe\xff" + title.encode("utf-16-be")).hex().upper()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        f"<< /Title <{title_hex}> /Producer (archive-hub sample ERP) "
        f"/CreationDate (D:{created:%Y%m%d%H%M%S}+08'00') >>".encode("ascii"),
    ]
    if padding:
        objects.append(b"<< /Length %d >>\nstream\n" % len(padding) + padding + b"\nendstream")
    return assemble_pdf(objects, b"/Info 6 0 R")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_parts(rng: random.Random, title: str) -> tuple[bytes, bytes]:
    """A small grayscale 'receipt' (白底, 边框, 文字行) as (head, tail); padding chunk goes in between."""
    w, h = 240, 320
    white, ink = b"\xff", b"\x30"
    border = b"\x00" + ink * w
    rows = [border] + [b"\x00" + ink + white * (w - 2) + ink] * (h - 2) + [border]
    y = 20
    while y < h - 30:
        length = rng.randint(60, w - 40) if y > 30 else w - 60  # first row: the heading, wide
        thick = 6 if y == 20 else 3
        bar = b"\x00" + ink + white * 19 + ink * length + white * (w - 21 - length) + ink
        for dy in range(thick):
            rows[y + dy] = bar
        y += rng.choice([14, 14, 18, 24])
    rows[h - 40] = b"\x00" + ink + white * 19 + (ink + white) * ((w - 40) // 2) + white * 19 + ink
    raw = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    itxt = b"Title\x00\x00\x00zh-CN\x00\x00" + title.encode("utf-8")
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"iTXt", itxt)
    return head, _png_chunk(b"IDAT", zlib.compress(raw, 6)) + _png_chunk(b"IEND", b"")


def _build_png(head: bytes, tail: bytes, padding: bytes) -> bytes:
    # prVt: private, ancillary, safe-to-copy — viewers skip it, so padding keeps the image valid
    return head + (_png_chunk(b"prVt", padding) if padding else b"") + tail


def _fit(build: Callable[[bytes], bytes], target: int | None, filler: bytes) -> bytes:
    """Grow the padding until the file is `target` bytes (exact unless the bare file is already bigger)."""
    data = build(b"")
    if not target or len(data) >= target:
        return data
    pad = target - len(data) - 40  # rough overhead of the padding object/chunk
    for _ in range(4):
        pad = max(pad, 1)
        data = build(filler[:pad] if pad <= len(filler) else (filler * (pad // len(filler) + 1))[:pad])
        if len(data) == target:
            break
        pad += target - len(data)
    return data


# --------------------------------------------------------------------------------------------- seeding


def _period_dates(year: int, period: int) -> tuple[list[date], date]:
    last = calendar.monthrange(year, period)[1]
    days = [date(year, period, d) for d in range(1, last + 1)]
    return [d for d in days if d.weekday() < 5] or days, days[-1]


def _allocate(total: int) -> list[int]:
    """Spread `total` vouchers over 12 periods by MONTH_WEIGHTS, exactly."""
    s = sum(MONTH_WEIGHTS)
    counts = [total * w // s for w in MONTH_WEIGHTS]
    by_remainder = sorted(range(12), key=lambda i: (-(total * MONTH_WEIGHTS[i] % s), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _ensure_sqlite_dir(db_url: str) -> None:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def seed_sample_erp(
    db_url: str,
    attachment_root: Path,
    *,
    vouchers: int = 3000,
    fiscal_year: int = 2025,
    attachment_every: int = 4,
    attachment_size: int | None = None,
    bad_records: bool = True,
    seed: int = 20250101,
    bank_books: bool = False,
    einvoices: bool = False,
) -> SeedSummary:
    """Create the sample ERP tables and fill them with one fiscal year of vouchers (see module doc).

    The tables must be empty: ids are assigned here so that a seed always yields the same rows.
    `bad_records` adds 6 defective vouchers (one per Defect) on top of `vouchers` normal ones; with
    `einvoices` a 7th, INVOICE_OTHER_CARRIER.
    `einvoices` turns about a third of the purchase and sale invoices into a 数电票 delivered as OFD (every other one also as XML,
    both carriers on the voucher, as the platform's download has them) instead of a PDF.
    `bank_books` books the 工商银行基本户 (1002.01) from the sample bank statements' year instead
    (``bank_books.py``), on top of `vouchers`: the day-to-day vouchers then pay through the other two
    banks, and the bank's 代发工资 replaces the month's 发放上月工资.
    """
    started = time.perf_counter()
    if vouchers < 0 or (bad_records and vouchers < 1):
        raise ValueError("vouchers must be >= 0 (>= 1 with bad_records: the duplicate needs a twin)")
    rng = random.Random(seed)
    attachment_root = Path(attachment_root)
    _ensure_sqlite_dir(db_url)
    engine = create_engine(db_url)
    metadata.create_all(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(voucher)).scalar_one():
            raise ValueError(f"{db_url} already holds vouchers; seed into an empty database (CLI: --reset)")

    specs: list[dict[str, Any]] = []  # voucher header + "_lines" + "_seq", ids assigned later
    gross_prev = _amount(rng, 380_000, 420_000)  # 上年12月工资, paid in January
    for period, n in enumerate(_allocate(vouchers), start=1):
        workdays, last_day = _period_dates(fiscal_year, period)
        st = _PeriodState()
        gross = _money(gross_prev * Decimal(rng.uniform(0.97, 1.05)))
        month_end: list[tuple[date, tuple[str, list[Line]]]] = [
            (workdays[min(9, len(workdays) - 1)], _pay_salary(rng, gross_prev)),
            (last_day, _accrue_salary(rng, gross)),
            (last_day, _depreciation(rng)),
        ]
        daily: list[tuple[date, tuple[str, list[Line]]]] = []
        funcs, weights = zip(*DAILY, strict=True)
        for _ in range(max(0, n - len(month_end) - 1)):
            day = (
                rng.choice(workdays) if rng.random() < 0.97 else date(fiscal_year, period, rng.randint(1, 28))
            )
            daily.append((day, rng.choices(funcs, weights)[0](rng, st)))
        month_end.append((last_day, _carry_cost(rng, st)))  # after the month's sales are known
        entries = (daily + month_end)[:n] if n < len(month_end) else daily + month_end
        gross_prev = gross
        for day, (natural_word, lines) in entries:
            word = natural_word if rng.random() < 0.15 else "记"
            hour = rng.randint(16, 18) if day == last_day else rng.randint(8, 17)
            created = datetime.combine(day, datetime.min.time()) + timedelta(
                hours=hour, minutes=rng.randint(0, 59), seconds=rng.randint(0, 59)
            )
            specs.append(_header(rng, fiscal_year, period, word, day.isoformat(), created, lines))

    if bank_books:
        specs = [s for s in specs if not s["_lines"][0]["summary"].startswith("发放上月工资")]
        for s in specs:
            for ln in s["_lines"]:
                if ln["account_code"] == "1002.01":
                    ln["account_code"] = "1002.03"
        specs += _bank_book_specs(random.Random(seed + 1), fiscal_year)

    normal_count = len(specs)
    bad: list[tuple[dict[str, Any], Defect, str]] = []
    if bad_records:
        bad = _bad_specs(rng, fiscal_year, specs, attachment_root, einvoices=einvoices)

    all_specs = specs + [b[0] for b in bad]
    _number_and_stamp(rng, fiscal_year, all_specs)

    # ids in creation order, as an autoincrement ERP would hand them out
    order = sorted(range(len(all_specs)), key=lambda i: (all_specs[i]["created_at"], i))
    for new_id, i in enumerate(order, start=1):
        all_specs[i]["id"] = new_id
    for i, (spec, defect, detail) in enumerate(bad):
        if defect is Defect.DUPLICATE_VOUCHER_NO:
            twin = spec.pop("_twin")
            detail = (
                f"same book/year/period/word/no as voucher {twin['id']}: "
                f"{BOOK_CODE}/{fiscal_year}/{twin['period']}/{twin['voucher_word']}/{twin['voucher_no']}"
            )
            bad[i] = (spec, defect, detail)

    voucher_rows, line_rows, att_rows = [], [], []
    att_bytes = 0
    filler = rng.randbytes(max(attachment_size or 0, 1) + 1024)
    normal_ids = sorted(s["id"] for s in specs)
    with_attachment = (
        set(normal_ids[attachment_every - 1 :: attachment_every]) if attachment_every > 0 else set()
    )
    reuser = next((b[0]["id"] for b in bad if b[1] is Defect.DUPLICATE_INVOICE), None)
    if reuser is not None and not any(i < reuser for i in with_attachment):
        with_attachment.add(normal_ids[0])  # the double booking needs an earlier file to reuse
    first_file: tuple[int, dict[str, Any]] | None = None  # (voucher id, attachment row)
    reused_detail = ""
    invoice_rng = random.Random(seed + 2)
    ofd_only: tuple[int, SampleInvoice] | None = None  # the first 数电票 a voucher carries as OFD alone
    rebooked_detail = ""
    for spec in sorted(all_specs, key=lambda s: s["id"]):
        vid = spec["id"]
        lines = spec.pop("_lines")
        atts = spec.pop("_attachments", [])
        spec.pop("_period_end")
        if vid in with_attachment and einvoices and len(att_rows) % 6 == 0 and _invoiced(lines):
            with_xml = len(att_rows) % 12 == 0
            rows, size, inv = _write_einvoice(invoice_rng, attachment_root, spec, lines, with_xml)
            atts += rows
            att_bytes += size
            if not with_xml:
                ofd_only = ofd_only or (vid, inv)
        elif vid in with_attachment:
            att, size = _write_attachment(
                rng, attachment_root, spec, lines, attachment_size, filler, len(att_rows)
            )
            atts.append(att)
            att_bytes += size
            first_file = first_file or (vid, att)
        if spec.pop("_rebooks_einvoice", False):
            if ofd_only is None or ofd_only[0] >= vid:
                raise ValueError("the invoice booked in its other carrier needs an earlier 数电票 OFD")
            twin_id, inv = ofd_only
            row, size = _write_einvoice_file(
                attachment_root, spec, "xml", einvoice_xml(inv), f"数电票_{inv.number}.xml", "application/xml"
            )
            atts.append(row)
            att_bytes += size
            rebooked_detail = f"carries the XML of 数电票 {inv.number}, whose OFD voucher {twin_id} carries"
        if spec.pop("_reuses_attachment", False):
            if first_file is None or first_file[0] >= vid:
                raise ValueError("the duplicate invoice needs an earlier voucher with an attachment")
            twin_id, twin_att = first_file
            atts.append({**twin_att, "uploaded_at": spec["created_at"] + timedelta(minutes=7)})
            reused_detail = f"carries the file of voucher {twin_id}: {twin_att['storage_path']}"
        spec["attachment_count"] = len(atts)
        spec["summary"] = lines[0]["summary"]
        voucher_rows.append(spec)
        for no, ln in enumerate(lines, start=1):
            line_rows.append(
                {
                    "voucher_id": vid,
                    "line_no": no,
                    "currency": CURRENCY,
                    "exchange_rate": Decimal("1"),
                    **{k: None for k in ("aux_customer", "aux_supplier", "aux_department", "aux_employee")},
                    "aux_project": None,
                    **ln,
                }
            )
        for att in atts:
            att_rows.append({"voucher_id": vid, **att})
    for i, row in enumerate(line_rows, start=1):
        row["id"] = i
    for i, row in enumerate(att_rows, start=1):
        row["id"] = i

    account_rows = [
        {"id": i, "code": c, "name": n, "category": cat, "balance_direction": d}
        for i, (c, n, cat, d) in enumerate(ACCOUNTS, start=1)
    ]
    with engine.begin() as conn:
        conn.execute(company.insert(), [COMPANY])
        conn.execute(account.insert(), account_rows)
        _insert_chunks(conn, voucher.insert(), voucher_rows)
        _insert_chunks(conn, voucher_line.insert(), line_rows)
        if att_rows:
            _insert_chunks(conn, attachment.insert(), att_rows)
    engine.dispose()

    return SeedSummary(
        db_url=db_url,
        attachment_root=attachment_root,
        companies=1,
        accounts=len(account_rows),
        vouchers=len(voucher_rows),
        normal_vouchers=normal_count,
        voucher_lines=len(line_rows),
        attachments=len(att_rows),
        attachment_bytes=att_bytes,
        bad_vouchers=sorted(
            (
                BadVoucher(
                    s["id"],
                    d,
                    {
                        Defect.DUPLICATE_INVOICE: reused_detail,
                        Defect.INVOICE_OTHER_CARRIER: rebooked_detail,
                    }.get(d, detail),
                )
                for s, d, detail in bad
            ),
            key=lambda b: list(Defect).index(b.defect),
        ),
        seconds=time.perf_counter() - started,
    )


def _insert_chunks(conn: Any, stmt: Any, rows: list[dict[str, Any]], size: int = 5000) -> None:
    for i in range(0, len(rows), size):
        conn.execute(stmt, rows[i : i + size])


def _header(
    rng: random.Random,
    year: int,
    period: int,
    word: str,
    voucher_date: str,
    created: datetime,
    lines: list[Line],
) -> dict[str, Any]:
    preparer = rng.choice(PREPARERS)
    return {
        "company_id": COMPANY["id"],
        "book_code": BOOK_CODE,
        "fiscal_year": year,
        "period": period,
        "voucher_word": word,
        "voucher_date": voucher_date,
        "currency": CURRENCY,
        "preparer": preparer,
        "reviewer": rng.choice([r for r in REVIEWERS if r != preparer]),
        "poster": POSTER,
        "chief_accountant": CHIEF_ACCOUNTANT,
        "status": "posted",
        "created_at": created,
        "_lines": lines,
        "_period_end": datetime(year, period, calendar.monthrange(year, period)[1], 23, 59, 59),
    }


def _bank_book_specs(rng: random.Random, year: int) -> list[dict[str, Any]]:
    from connectors.erp.sample_erp.bank_books import bank_book_entries

    out = []
    for day, word, lines in bank_book_entries(year):
        created = datetime.combine(day, datetime.min.time()) + timedelta(
            hours=rng.randint(9, 17), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59)
        )
        out.append(_header(rng, year, day.month, word, day.isoformat(), created, lines))
    return out


def _number_and_stamp(rng: random.Random, year: int, specs: list[dict[str, Any]]) -> None:
    """凭证号 gap-free per (book, year, period, word) in date order; updated_at with deliberate ties.

    Posting (过账) happens in batches: a run of consecutive vouchers gets one identical updated_at, which
    is what breaks naive ``updated_at > cursor`` incremental extraction.
    """
    by_period: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in specs:
        by_period[s["period"]].append(s)
    for period in sorted(by_period):
        items = sorted(by_period[period], key=lambda s: s["created_at"])  # stable: generation order on ties
        counters: dict[str, int] = defaultdict(int)
        for s in items:
            if "_twin" in s:  # the injected duplicate takes its twin's number below
                continue
            counters[s["voucher_word"]] += 1
            s["voucher_no"] = counters[s["voucher_word"]]
        i = 0
        while i < len(items):
            if rng.random() < 0.12:
                batch = items[i : i + rng.randint(2, 6)]
                stamp = max(s["created_at"] for s in batch) + timedelta(minutes=rng.randint(1, 240))
                for s in batch:
                    s["updated_at"] = min(stamp, s["_period_end"])
                i += len(batch)
            else:
                s = items[i]
                s["updated_at"] = min(
                    s["created_at"] + timedelta(seconds=rng.randint(120, 3 * 86400)), s["_period_end"]
                )
                i += 1
    for s in specs:
        if "_twin" in s:
            s["voucher_no"] = s["_twin"]["voucher_no"]


def _bad_specs(
    rng: random.Random, year: int, specs: list[dict[str, Any]], attachment_root: Path, *, einvoices: bool
) -> list[tuple[dict[str, Any], Defect, str]]:
    """One voucher per Defect, each otherwise ordinary so exactly one rule fires for it."""
    out: list[tuple[dict[str, Any], Defect, str]] = []
    periods = rng.sample(range(1, 13), 5)

    def make(period: int, lines: list[Line], voucher_date: str | None = None) -> dict[str, Any]:
        workdays, _ = _period_dates(year, period)
        day = rng.choice(workdays)
        created = datetime.combine(day, datetime.min.time()) + timedelta(hours=rng.randint(9, 17))
        return _header(rng, year, period, "记", voucher_date or day.isoformat(), created, lines)

    st = _PeriodState()
    _, lines = _office_supplies(rng, st)
    lines[-1]["credit"] += Decimal("100.00")  # 贷方多录 100 元
    out.append((make(periods[0], lines), Defect.UNBALANCED, "credit exceeds debit by 100.00"))

    _, lines = _travel_expense(rng, st)
    lines[0]["account_code"] = None
    out.append((make(periods[1], lines), Defect.MISSING_ACCOUNT, "line 1 has no account_code"))

    _, lines = _bank_fee(rng, st)
    out.append(
        (make(periods[2], lines, f"{year}-13-45"), Defect.INVALID_DATE, f"voucher_date '{year}-13-45'")
    )

    _, lines = _pay_supplier(rng, st)
    spec = make(periods[3], lines)
    rel = f"{year}/{periods[3]:02d}/{uuid.UUID(int=rng.getrandbits(128), version=4)}.pdf"
    assert not (attachment_root / rel).exists()
    spec["_attachments"] = [
        {
            "file_name": "付款回单.pdf",
            "mime_type": "application/pdf",
            "storage_path": rel,
            "size": 48_213,
            "uploaded_at": spec["created_at"] + timedelta(minutes=5),
        }
    ]
    out.append((spec, Defect.MISSING_ATTACHMENT_FILE, f"{rel} is not on disk"))

    twin = rng.choice(specs)
    _, lines = _withdraw_cash(rng, st)
    spec = make(twin["period"], lines)
    spec["voucher_word"] = twin["voucher_word"]
    spec["_twin"] = twin
    out.append((spec, Defect.DUPLICATE_VOUCHER_NO, ""))  # detail filled once ids exist

    _, lines = _travel_expense(rng, st)
    spec = make(12, lines)  # in December: the voucher whose file it reuses is read (and archived) first
    spec["_reuses_attachment"] = True
    out.append((spec, Defect.DUPLICATE_INVOICE, ""))  # detail filled once the reused file is written
    if einvoices:
        _, lines = _purchase_material(rng, st)
        spec = make(12, lines)  # late in the year: the OFD it duplicates is archived first
        spec["_rebooks_einvoice"] = True
        out.append((spec, Defect.INVOICE_OTHER_CARRIER, ""))  # detail filled once the XML is written
    return out


def _write_attachment(
    rng: random.Random,
    root: Path,
    spec: dict[str, Any],
    lines: list[Line],
    target: int | None,
    filler: bytes,
    index: int,
) -> tuple[dict[str, Any], int]:
    """Write one PDF (even index) or PNG (odd) for the voucher and return its erp_attachment row."""
    total = sum((ln["debit"] for ln in lines), ZERO)
    name = uuid.UUID(int=rng.getrandbits(128), version=4)
    created: datetime = spec["created_at"]
    offset = rng.randrange(1024)
    fill = filler[offset:]
    if index % 2 == 0:
        invoice_no = f"{rng.randrange(10**8):08d}"
        title = f"增值税专用发票 No.{invoice_no}"
        text = [
            f"VAT Special Invoice (Zengzhishui Zhuanyong Fapiao) No. {invoice_no}",
            f"Invoice code: 32{rng.randrange(10**8):08d}   Date: {created:%Y-%m-%d}",
            f"Voucher: {spec['fiscal_year']}-{spec['period']:02d} book {BOOK_CODE}",
            f"Amount incl. tax: CNY {total:,.2f}",
            "Seller tax id: 91320500MA1XXXXXX",
            "Buyer: Huadong Precision Manufacturing Co., Ltd. (1001 / J001)",
        ]
        data = _fit(lambda pad: _build_pdf(text, title, created, pad), target, fill)
        ext, mime, file_name = "pdf", "application/pdf", f"增值税专用发票_{invoice_no}.pdf"
    else:
        title = f"银行回单 CNY {total:,.2f}"
        head, tail = _png_parts(rng, title)
        data = _fit(lambda pad: _build_png(head, tail, pad), target, fill)
        ext, mime, file_name = "png", "image/png", f"银行回单_{created:%Y%m%d}_{index:05d}.png"
    rel = f"{spec['fiscal_year']}/{spec['period']:02d}/{name}.{ext}"
    uploaded = min(created + timedelta(minutes=rng.randint(1, 30)), spec["updated_at"])
    return _store(root, rel, data, file_name, mime, uploaded)


def _store(
    root: Path, rel: str, data: bytes, file_name: str, mime: str, uploaded: datetime
) -> tuple[dict[str, Any], int]:
    """Put the file on the sample "file server" and return its erp_attachment row and size."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    row = {
        "file_name": file_name,
        "mime_type": mime,
        "storage_path": rel,
        "size": len(data),
        "uploaded_at": uploaded,
    }
    return row, len(data)


def _write_einvoice_file(
    root: Path, spec: dict[str, Any], ext: str, data: bytes, file_name: str, mime: str
) -> tuple[dict[str, Any], int]:
    name = uuid.uuid5(uuid.NAMESPACE_URL, f"{file_name}@{spec['created_at']}")
    rel = f"{spec['fiscal_year']}/{spec['period']:02d}/{name}.{ext}"
    uploaded = min(spec["created_at"] + timedelta(minutes=3), spec["updated_at"])
    return _store(root, rel, data, file_name, mime, uploaded)


VAT_ACCOUNTS = ("2221.01.01", "2221.01.05")  # 进项税额, 销项税额


def _invoiced(lines: list[Line]) -> bool:
    """Whether the voucher is a purchase or a sale (a counterparty or a VAT line): a payroll or an
    accrual has no invoice."""
    return any(
        ln.get("aux_supplier") or ln.get("aux_customer") or ln["account_code"] in VAT_ACCOUNTS for ln in lines
    )


def _party(name: str) -> tuple[str, str]:
    """A counterparty with a fictitious, stable 统一社会信用代码."""
    return name, f"9132050{zlib.crc32(name.encode()) % 10**10:010d}X"


def _write_einvoice(
    rng: random.Random, root: Path, spec: dict[str, Any], lines: list[Line], with_xml: bool
) -> tuple[list[dict[str, Any]], int, SampleInvoice]:
    """A 数电票 for the voucher: its OFD, and with `with_xml` its XML too. A sale's invoice is ours to the
    customer, a purchase's the supplier's to us; the tax is the voucher's 进项/销项 line where it has one."""
    total = sum((ln["debit"] for ln in lines), ZERO)
    tax = sum((ln["debit"] + ln["credit"] for ln in lines if ln["account_code"] in VAT_ACCOUNTS), ZERO)
    if not tax:
        tax = total - _money(total / (1 + VAT_RATE))
    us = (COMPANY["name"], BUYER[1])
    customer = next((ln.get("aux_customer") for ln in lines if ln.get("aux_customer")), None)
    supplier = next((ln.get("aux_supplier") for ln in lines if ln.get("aux_supplier")), None)
    seller, buyer = (us, _party(customer)) if customer else (_party(supplier) if supplier else SELLER, us)
    created: datetime = spec["created_at"]
    inv = SampleInvoice(
        number=f"{created:%y}322000{rng.randrange(10**12):012d}",
        issued=created.date(),
        item=f"*货物*{next((ln for ln in lines if ln['account_code'] == '6001'), lines[0])['summary']}",
        amount=total - tax,
        tax=tax,
        seller=seller,
        buyer=buyer,
    )
    carriers = [("ofd", einvoice_ofd(inv), "application/ofd")]
    if with_xml:
        carriers.append(("xml", einvoice_xml(inv), "application/xml"))
    rows, size = [], 0
    for ext, data, mime in carriers:
        row, n = _write_einvoice_file(root, spec, ext, data, f"数电票_{inv.number}.{ext}", mime)
        rows.append(row)
        size += n
    return rows, size, inv


# --------------------------------------------------------------------------------------------- helpers


def touch_voucher(db_url: str, voucher_id: int, *, new_summary: str) -> datetime:
    """Simulate an edit in the ERP after archiving: new 摘要 and an updated_at later than every other row.

    Returns the new updated_at. Later than the table's maximum (not just "now") so an incremental cursor
    picks the change up even when the seeded fiscal year lies in the future.
    """
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            current = conn.execute(select(voucher.c.updated_at).where(voucher.c.id == voucher_id)).scalar()
            if current is None:
                raise LookupError(f"voucher {voucher_id} not found in {db_url}")
            latest = conn.execute(select(func.max(voucher.c.updated_at))).scalar_one()
            stamp = max(datetime.now().replace(microsecond=0), latest + timedelta(seconds=1))
            conn.execute(
                update(voucher)
                .where(voucher.c.id == voucher_id)
                .values(summary=new_summary, updated_at=stamp)
            )
            conn.execute(
                update(voucher_line)
                .where(voucher_line.c.voucher_id == voucher_id, voucher_line.c.line_no == 1)
                .values(summary=new_summary)
            )
        return stamp
    finally:
        engine.dispose()


def _reset(db_url: str) -> None:
    """Drop the sample tables. Attachment files are left alone: names are uuids, stale ones are harmless."""
    engine: Engine = create_engine(db_url)
    metadata.drop_all(engine)
    engine.dispose()


def main(argv: Iterable[str] | None = None) -> SeedSummary:
    """CLI entry point: seed and print a one-line summary."""
    p = argparse.ArgumentParser(
        prog="python -m connectors.erp.sample_erp.seed", description=__doc__.splitlines()[0]
    )
    p.add_argument("--db-url", default="sqlite:///var/sample_erp/erp.sqlite")
    p.add_argument("--attachments", type=Path, default=Path("var/sample_erp/attachments"))
    p.add_argument("--vouchers", type=int, default=3000)
    p.add_argument("--fiscal-year", type=int, default=2025)
    p.add_argument("--attachment-every", type=int, default=4)
    p.add_argument("--attachment-size", type=int, default=None, help="pad each attachment to about N bytes")
    p.add_argument("--no-bad-records", dest="bad_records", action="store_false")
    p.add_argument("--seed", type=int, default=20250101)
    p.add_argument("--bank-books", action="store_true", help="book 1002.01 from the sample bank statements")
    p.add_argument(
        "--einvoices", action="store_true", help="every third invoice a 数电票 (OFD, some with XML)"
    )
    p.add_argument("--reset", action="store_true", help="drop the sample ERP tables first")
    args = p.parse_args(list(argv) if argv is not None else None)
    _ensure_sqlite_dir(args.db_url)
    if args.reset:
        _reset(args.db_url)
    summary = seed_sample_erp(
        args.db_url,
        args.attachments,
        vouchers=args.vouchers,
        fiscal_year=args.fiscal_year,
        attachment_every=args.attachment_every,
        attachment_size=args.attachment_size,
        bad_records=args.bad_records,
        seed=args.seed,
        bank_books=args.bank_books,
        einvoices=args.einvoices,
    )
    print(summary.one_line())
    return summary


if __name__ == "__main__":
    main()
