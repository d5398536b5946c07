"""Sample bank statements for ``make demo``: what the bank inbox of 华东精密制造有限公司 looks like.

The demo seeds a sample ERP for 华东精密制造有限公司 (fonds J001). This module drops the statements
its banks would send for the first months of the fiscal year into the bank inbox, in the formats the
company really receives:

* ``ICBC_<account>_<YYYYMM>.csv``: January, the 企业网银 "账户明细查询" export of the 基本户 at ICBC
  (GBK CSV, preamble with 期初/期末余额, running 余额, 合计 row);
* ``camt053_CNY_<YYYYMM>.xml``: February and March for the same account as ISO 20022 camt.053.001.08,
  legal/electronic sequence numbers continuing each other, each opening at the previous closing;
* ``MT940_EUR_<YYYYMM>.sta``: January of the EUR account at Deutsche Bank (payments to German suppliers,
  transfers from the German subsidiary) with German structured :86: (GVC, ?20 EREF+/SVWZ+, ?32 name);
* ``camt053_CNY_<YYYY>04.xml``: April, cut off in the middle of an entry as an interrupted transfer
  leaves it, so the demo shows a quarantined file and its one-line reason.

The customers and suppliers are those of the sample ERP (``connectors/erp/sample_erp/seed.py``). Every
amount, name and reference comes from ``random.Random`` seeded with ``seed``, and no clock is read into
the content: the same arguments give the same bytes. Files are written under a hidden temporary name and
renamed, then dated 10 minutes back, because the inbox skips files modified in its settle window.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

from archive_sink.durability import replace_file

COMPANY = "华东精密制造有限公司"
COMPANY_EN = "HUADONG PRECISION MANUFACTURING CO LTD"
# 1002.01 工商银行基本户 in the sample ERP's chart
ICBC_ACCOUNT = "1102021209000456789"
ICBC_BRANCH = "中国工商银行苏州工业园区支行"
ICBC_CNAPS = "102305002135"
ICBC_BIC = "ICBKCNBJ"
SETTLED_SECONDS = 600

# Chinese public holidays and make-up working days (调休) of the demo year; other years: Mon-Fri.
_HOLIDAYS = {
    2025: {
        "off": [
            "2025-01-01",
            *(f"2025-01-{d}" for d in range(28, 32)),
            *(f"2025-02-0{d}" for d in range(1, 5)),
        ]
        + ["2025-04-04", "2025-05-01", "2025-05-02", "2025-05-05"],
        "on": ["2025-01-26", "2025-02-08", "2025-04-27"],
    }
}


@dataclass(frozen=True)
class Party:
    name: str
    account: str
    bank: str
    bank_code: str  # CNAPS 行号 (12 digits) or BIC


# Bank details of the sample ERP's customers and suppliers (names as in seed.CUSTOMERS / seed.SUPPLIERS).
CUSTOMERS = [
    Party("苏州恒达机电有限公司", "531258436217", "中国银行苏州高新技术产业开发区支行", "104305012436"),
    Party("上海锦程贸易有限公司", "121908765410001", "招商银行上海分行营业部", "308290003020"),
    Party("无锡华光电子科技有限公司", "1103027409000123678", "中国工商银行无锡新区支行", "102302001246"),
    Party("杭州新松自动化设备有限公司", "33050161623500001234", "中国建设银行杭州高新支行", "105331000157"),
    Party("南京宏远工业集团有限公司", "320006648018010012345", "交通银行南京江宁支行", "301301000459"),
    Party("宁波东方模具有限公司", "51010122000345678", "宁波银行江北支行", "313332082914"),
    Party("常州天合精密部件有限公司", "80100188000123456", "江苏银行常州分行营业部", "313304000011"),
    Party("合肥瑞丰汽车零部件有限公司", "1021801021000123456", "徽商银行合肥经济开发区支行", "319361000123"),
]
SUPPLIERS = [
    Party("江苏永钢金属材料有限公司", "10526001040012345", "中国农业银行张家港市支行", "103305636010"),
    Party("昆山立信五金制品有限公司", "1102228309000345112", "中国工商银行昆山分行营业部", "102305421011"),
    Party("浙江中力轴承有限公司", "367758341234", "中国银行湖州分行营业部", "104336000123"),
    Party("上海申达包装材料有限公司", "98450154740012345", "上海浦东发展银行上海分行", "310290000013"),
    Party("嘉兴恒润塑胶有限公司", "33050163672700001234", "中国建设银行嘉兴分行营业部", "105335000012"),
    Party("无锡明阳电气有限公司", "20200188000456789", "江苏银行无锡分行营业部", "313302000012"),
    Party("苏州顺通物流有限公司", "51670500000123456", "苏州银行工业园区支行", "313305066001"),
]
MATERIALS = ["冷轧钢板", "铝合金型材", "深沟球轴承", "伺服电机", "包装纸箱", "工程塑料粒子", "紧固件"]
PRODUCTS = ["精密主轴", "直线导轨", "滚珠丝杠", "数控转台"]
TREASURY = Party("国家金库苏州工业园区支库", "270305000001", "国家金库苏州工业园区支库", "011305000018")
POWER = Party(
    "国网江苏省电力有限公司苏州供电分公司",
    "1102020109000012345",
    "中国工商银行苏州分行营业部",
    "102305002016",
)
WATER = Party(
    "苏州工业园区清源华衍水务有限公司", "10550101040001234", "中国农业银行苏州工业园区支行", "103305036015"
)
FUND = Party("苏州市住房公积金管理中心", "32201988236051234567", "中国建设银行苏州分行营业部", "105305000010")
PAYROLL = Party("华东精密制造有限公司代发工资户", "1102021229000888888", ICBC_BRANCH, ICBC_CNAPS)
OWN_CCB = Party(COMPANY, "32250198863600000567", "中国建设银行苏州工业园区支行", "105305000123")
ICBC_SELF = Party("中国工商银行股份有限公司苏州工业园区支行", "", ICBC_BRANCH, ICBC_CNAPS)
OURS = Party(COMPANY, ICBC_ACCOUNT, ICBC_BRANCH, ICBC_CNAPS)

# EUR account at Deutsche Bank Frankfurt (BLZ 50070010) and its German counterparties (fictional).
DB_BLZ, DB_KONTO, DB_BIC = "50070010", "0123456700", "DEUTDEFFXXX"
EUR_SUPPLIERS = [
    ("Kranich Antriebstechnik GmbH", "60050101", "7402051588", "SOLADEST600", "Servoantriebe"),
    ("Hofmann Messtechnik GmbH", "70020270", "0656123400", "HYVEDEMMXXX", "Messtaster"),
    ("Weber Spindeltechnik GmbH & Co. KG", "76050101", "0001234567", "SSKNDE77XXX", "Spindellager"),
    ("Neumann Werkzeugbau GmbH", "37040044", "0532013000", "COBADEFFXXX", "Spannmittel"),
]
EUR_SUBSIDIARY = ("Huadong Praezision Europe GmbH", "30070010", "0445566700", "DEUTDEDDXXX")
EUR_CUSTOMER = ("Bergmann Maschinenbau AG", "50040000", "0581234500", "COBADEFFXXX")


@dataclass
class Booking:
    at: dt.datetime
    amount: Decimal  # signed: debit negative
    party: Party
    summary: str  # 摘要
    purpose: str  # 用途 / Ustrd
    btc: str  # ISO bank transaction code Domn/Fmly/SubFmly
    voucher: str  # ICBC 凭证种类
    e2e: str = "NOTPROVIDED"
    kind: str = ""  # key of _KINDS: what the books debit or credit against the bank
    ref: str = ""  # bank reference (流水号 / AcctSvcrRef), set when numbered
    balance: Decimal = Decimal(0)  # running balance after the booking


# --- calendar and money ------------------------------------------------------------------------------
def _workdays(year: int, month: int) -> list[dt.date]:
    hol = _HOLIDAYS.get(year, {})
    off = {dt.date.fromisoformat(d) for d in hol.get("off", [])}
    on = {dt.date.fromisoformat(d) for d in hol.get("on", [])}
    days = [dt.date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    return [d for d in days if (d.weekday() < 5 and d not in off) or d in on]


def _on_or_after(days: list[dt.date], day: int) -> dt.date:
    return next((d for d in days if d.day >= day), days[-1])


def _at(rng: random.Random, day: dt.date) -> dt.datetime:
    seconds = rng.randint(8 * 3600 + 30 * 60, 17 * 3600 + 30 * 60)
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=seconds)


def _money(rng: random.Random, lo: int, hi: int) -> Decimal:
    return Decimal(rng.randint(lo * 100, hi * 100)) / 100


def _cents(d: Decimal) -> Decimal:
    return d.quantize(Decimal("0.01"))


def _prev_period(year: int, month: int) -> str:
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


# --- the CNY 基本户: one month of bookings ---------------------------------------------------------------
# kind → (counterparty, 摘要, ISO bank transaction code, ICBC 凭证种类)
_KINDS: dict[str, tuple[Party | None, str, str, str]] = {
    "receipt": (None, "货款", "PMNT/RCDT/DMCT", "电子转账凭证"),
    "payment": (None, "支付货款", "PMNT/ICDT/DMCT", "电子转账凭证"),
    "fund": (FUND, "公积金", "PMNT/ICDT/DMCT", "电子转账凭证"),
    "salary": (PAYROLL, "代发工资", "PMNT/ICDT/SALA", "批量代发凭证"),
    "tax": (TREASURY, "税款", "PMNT/ICDT/TAXE", "电子缴税付款凭证"),
    "social": (TREASURY, "社保费", "PMNT/ICDT/TAXE", "电子缴税付款凭证"),
    "power": (POWER, "电费", "PMNT/ICDT/DMCT", "电子转账凭证"),
    "water": (WATER, "水费", "PMNT/ICDT/DMCT", "电子转账凭证"),
    "transfer": (OWN_CCB, "资金调拨", "PMNT/ICDT/DMCT", "电子转账凭证"),
    "cash": (ICBC_SELF, "取现", "PMNT/CNTR/CWDL", "现金支票"),
    "fee": (ICBC_SELF, "手续费", "ACMT/MDOP/CHRG", "业务收费凭证"),
    "interest": (ICBC_SELF, "利息", "ACMT/MCOP/INTR", "利息清单"),
}


def _cny_month(rng: random.Random, year: int, month: int, customers: int, suppliers: int) -> list[Booking]:
    """A month of the 基本户: receipts from customers, supplier payments with their 汇划手续费, payroll,
    公积金, taxes (增值税 and the 12 % surcharges on it, 个税, 社保), utilities, quarterly interest."""
    days = _workdays(year, month)
    period = _prev_period(year, month)
    yymm = f"{year % 100:02d}{month:02d}"
    out: list[Booking] = []

    def book(
        when: dt.date | dt.datetime,
        amount: Decimal,
        kind: str,
        purpose: str,
        e2e: str = "NOTPROVIDED",
        party: Party | None = None,
    ) -> Booking:
        default, summary, btc, voucher = _KINDS[kind]
        at = when if isinstance(when, dt.datetime) else _at(rng, when)
        who = party or default
        assert who is not None, kind
        b = Booking(at, amount, who, summary, purpose, btc, voucher, e2e, kind)
        out.append(b)
        return b

    def tax_no() -> str:  # 电子缴税 税票号码
        return f"3320{yymm}{rng.randint(10**9, 10**10 - 1)}"

    for i in range(customers):
        c = rng.choice(CUSTOMERS)
        inv = f"{year % 100:02d}3220000000{rng.randint(10_000_000, 99_999_999)}"
        e2e = f"P{yymm}{rng.randint(100000, 999999)}{i:02d}"
        book(
            rng.choice(days),
            _money(rng, 120_000, 620_000),
            "receipt",
            f"{rng.choice(PRODUCTS)}货款 发票号{inv}",
            e2e,
            c,
        )
    payments = []
    for i in range(suppliers):
        s = rng.choice(SUPPLIERS)
        what = "运输费" if s.name == "苏州顺通物流有限公司" else rng.choice(MATERIALS) + "采购款"
        purpose = f"{what} 合同HDCG-{year}-{rng.randint(100, 999)}"
        payments.append(
            book(
                rng.choice(days),
                -_money(rng, 35_000, 320_000),
                "payment",
                purpose,
                f"HDFK{yymm}{i + 1:04d}",
                s,
            )
        )
    for b in rng.sample(payments, 2):  # 汇划手续费 charged right after two of the transfers
        fee = rng.choice([Decimal("5.50"), Decimal("9.00"), Decimal("15.00")])
        book(b.at + dt.timedelta(seconds=1), -fee, "fee", "汇划手续费")
    book(
        _on_or_after(days, 5),
        -_money(rng, 55_000, 65_000),
        "fund",
        f"住房公积金汇缴 {period}",
        f"GJJ{yymm}0001",
    )
    book(
        _on_or_after(days, 10),
        -_money(rng, 410_000, 460_000),
        "salary",
        f"代发{period}工资 186人",
        f"DF{yymm}0001",
    )
    vat = _money(rng, 140_000, 260_000)
    tax_day = _on_or_after(days, 15)
    book(tax_day, -vat, "tax", f"增值税 所属期{period}", tax_no())
    surcharge = _cents(vat * Decimal("0.12"))  # 城建税 7 % + 教育费附加 3 % + 地方教育附加 2 %
    book(tax_day, -surcharge, "tax", f"城市维护建设税 教育费附加 地方教育附加 所属期{period}", tax_no())
    book(tax_day, -_money(rng, 22_000, 38_000), "tax", f"个人所得税(代扣代缴) 所属期{period}", tax_no())
    book(
        _on_or_after(days, 16),
        -_money(rng, 140_000, 170_000),
        "social",
        f"社会保险费 所属期{year}-{month:02d}",
        tax_no(),
    )
    book(
        _on_or_after(days, 18),
        -_money(rng, 85_000, 130_000),
        "power",
        f"电费 户号3205123456 {period}",
        f"DF-SZ{yymm}0457",
    )
    if month == 1:
        book(
            _on_or_after(days, 20),
            -Decimal("500000.00"),
            "transfer",
            "资金调拨 转建行一般户",
            f"HDDB{yymm}0001",
        )
    else:
        book(_on_or_after(days, 3), -Decimal("20000.00"), "cash", "提取备用金 现金支票No.10205876")
        book(
            _on_or_after(days, 22),
            -_money(rng, 4_000, 9_000),
            "water",
            f"水费 户号0581234 {period}",
            f"SF{yymm}0581234",
        )
        book(days[-1], -rng.choice([Decimal("100.00"), Decimal("300.00")]), "fee", "电子银行服务费")
    if month % 3 == 0:  # 季度结息: interest to the 20th, credited on the 21st
        start = dt.date(year, month - 3, 21) if month > 3 else dt.date(year - 1, 12, 21)
        book(
            _on_or_after(days, 21),
            _money(rng, 2_000, 5_000),
            "interest",
            f"活期结息 {start}至{year}-{month:02d}-20",
        )
    out.sort(key=lambda b: (b.at, b.amount))
    return out


def _number(bookings: list[Booking], opening: Decimal, first_ref: int) -> Decimal:
    """Bank references and running balances; the closing balance."""
    bal = opening
    for i, b in enumerate(bookings):
        b.ref = f"ICBC{b.at:%Y%m%d}{first_ref + i:06d}"
        bal += b.amount
        if bal < 0:
            raise AssertionError(f"sample balance went negative at {b.at}")
        b.balance = bal
    return bal


# --- ICBC online-banking export (GBK CSV) ------------------------------------------------------------------
def _yuan(d: Decimal) -> str:
    return f"{d:,.2f}"


def _icbc_csv(bookings: list[Booking], year: int, month: int, opening: Decimal, closing: Decimal) -> bytes:
    last = calendar.monthrange(year, month)[1]
    grouped = " ".join(ICBC_ACCOUNT[i : i + 4] for i in range(0, len(ICBC_ACCOUNT), 4))
    exported = _workdays(year + month // 12, month % 12 + 1)[0]
    lines = [
        "账户明细查询",
        f"账号: {grouped}",
        f"户名: {COMPANY}",
        f"开户行: {ICBC_BRANCH}",
        "币种: 人民币",
        f"起止日期: {year}-{month:02d}-01 至 {year}-{month:02d}-{last:02d}",
        f"期初余额: {_yuan(opening)}",
        f"期末余额: {_yuan(closing)}",
        f"导出时间: {exported} 09:12:36",
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(
        ["凭证种类", "凭证号", "对方账号", "对方户名", "对方开户行", "交易时间", "起息日"]
        + ["借方发生额", "贷方发生额", "余额", "摘要", "用途", "流水号"]
    )
    debit = credit = Decimal(0)
    for n, b in enumerate(bookings, start=1):
        is_debit = b.amount < 0
        debit += -b.amount if is_debit else 0
        credit += b.amount if not is_debit else 0
        w.writerow(
            [
                b.voucher,
                f"{n:04d}",
                b.party.account,
                "" if b.party is ICBC_SELF else b.party.name,
                "" if b.party is ICBC_SELF else b.party.bank,
                f"{b.at:%Y-%m-%d %H:%M:%S}",
                f"{b.at:%Y-%m-%d}",
                _yuan(-b.amount) if is_debit else "",
                "" if is_debit else _yuan(b.amount),
                _yuan(b.balance),
                b.summary,
                b.purpose,
                b.ref,
            ]
        )
    w.writerow(
        ["合计", "", "", "", "", "", "", _yuan(debit), _yuan(credit), "", f"共{len(bookings)}笔", "", ""]
    )
    return ("\r\n".join(lines) + "\r\n" + buf.getvalue()).encode("gbk")


# --- camt.053.001.08 ---------------------------------------------------------------------------------------
_NS053 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def _agent(p: Party) -> str:
    return (
        "<FinInstnId><ClrSysMmbId><ClrSysId><Cd>CNAPS</Cd></ClrSysId>"
        f"<MmbId>{p.bank_code}</MmbId></ClrSysMmbId><Nm>{escape(p.bank)}</Nm></FinInstnId>"
    )


def _side(role: str, p: Party) -> str:
    acct = f"<{role}Acct><Id><Othr><Id>{p.account}</Id></Othr></Id></{role}Acct>" if p.account else ""
    return f"<{role}><Pty><Nm>{escape(p.name)}</Nm></Pty></{role}>{acct}"


def _ntry(b: Booking) -> str:
    credit = b.amount > 0
    ind = "CRDT" if credit else "DBIT"
    amt = f'<Amt Ccy="CNY">{abs(b.amount):.2f}</Amt>'
    dom, fam, sub = b.btc.split("/")
    btc = (
        f"<BkTxCd><Domn><Cd>{dom}</Cd><Fmly><Cd>{fam}</Cd><SubFmlyCd>{sub}</SubFmlyCd></Fmly></Domn></BkTxCd>"
    )
    dbtr, cdtr = (b.party, OURS) if credit else (OURS, b.party)
    return "\n".join(
        [
            "      <Ntry>",
            f"        <NtryRef>{b.ref[-6:]}</NtryRef>",
            f"        {amt}",
            f"        <CdtDbtInd>{ind}</CdtDbtInd>",
            "        <Sts><Cd>BOOK</Cd></Sts>",
            f"        <BookgDt><DtTm>{b.at:%Y-%m-%dT%H:%M:%S}+08:00</DtTm></BookgDt>",
            f"        <ValDt><Dt>{b.at:%Y-%m-%d}</Dt></ValDt>",
            f"        <AcctSvcrRef>{b.ref}</AcctSvcrRef>",
            f"        {btc}",
            "        <NtryDtls>",
            "          <TxDtls>",
            f"            <Refs><AcctSvcrRef>{b.ref}</AcctSvcrRef><EndToEndId>{b.e2e}</EndToEndId></Refs>",
            f"            {amt}",
            f"            <CdtDbtInd>{ind}</CdtDbtInd>",
            "            <RltdPties>",
            f"              {_side('Dbtr', dbtr)}",
            f"              {_side('Cdtr', cdtr)}",
            "            </RltdPties>",
            "            <RltdAgts>",
            f"              <DbtrAgt>{_agent(dbtr)}</DbtrAgt>",
            f"              <CdtrAgt>{_agent(cdtr)}</CdtrAgt>",
            "            </RltdAgts>",
            f"            <RmtInf><Ustrd>{escape(b.summary + ' ' + b.purpose)}</Ustrd></RmtInf>",
            "          </TxDtls>",
            "        </NtryDtls>",
            f"        <AddtlNtryInf>{escape(b.summary)}</AddtlNtryInf>",
            "      </Ntry>",
        ]
    )


def _bal(code: str, amount: Decimal, day: dt.date) -> str:
    ind = "CRDT" if amount >= 0 else "DBIT"
    return (
        f"      <Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
        f'<Amt Ccy="CNY">{abs(amount):.2f}</Amt><CdtDbtInd>{ind}</CdtDbtInd>'
        f"<Dt><Dt>{day}</Dt></Dt></Bal>"
    )


def _camt053(
    bookings: list[Booking], year: int, month: int, seq: int, opening: Decimal, closing: Decimal
) -> bytes:
    first = dt.date(year, month, 1)
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    created = f"{last + dt.timedelta(days=1)}T06:30:00+08:00"
    credits = [b.amount for b in bookings if b.amount > 0]
    debits = [-b.amount for b in bookings if b.amount < 0]
    net = sum(credits, Decimal(0)) - sum(debits, Decimal(0))
    summary = (
        "      <TxsSummry>"
        f"<TtlNtries><NbOfNtries>{len(bookings)}</NbOfNtries><Sum>{sum(credits, Decimal(0)) + sum(debits, Decimal(0)):.2f}</Sum>"
        f"<TtlNetNtry><Amt>{abs(net):.2f}</Amt><CdtDbtInd>{'CRDT' if net >= 0 else 'DBIT'}</CdtDbtInd></TtlNetNtry></TtlNtries>"
        f"<TtlCdtNtries><NbOfNtries>{len(credits)}</NbOfNtries><Sum>{sum(credits, Decimal(0)):.2f}</Sum></TtlCdtNtries>"
        f"<TtlDbtNtries><NbOfNtries>{len(debits)}</NbOfNtries><Sum>{sum(debits, Decimal(0)):.2f}</Sum></TtlDbtNtries>"
        "</TxsSummry>"
    )
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Document xmlns="{_NS053}">',
        "  <BkToCstmrStmt>",
        "    <GrpHdr>",
        f"      <MsgId>ICBC053{last + dt.timedelta(days=1):%Y%m%d}{seq:06d}</MsgId>",
        f"      <CreDtTm>{created}</CreDtTm>",
        "      <MsgPgntn><PgNb>1</PgNb><LastPgInd>true</LastPgInd></MsgPgntn>",
        "    </GrpHdr>",
        "    <Stmt>",
        f"      <Id>{ICBC_ACCOUNT}-{year}{month:02d}</Id>",
        "      <StmtPgntn><PgNb>1</PgNb><LastPgInd>true</LastPgInd></StmtPgntn>",
        f"      <ElctrncSeqNb>{seq}</ElctrncSeqNb>",
        f"      <LglSeqNb>{seq}</LglSeqNb>",
        f"      <CreDtTm>{created}</CreDtTm>",
        f"      <FrToDt><FrDtTm>{first}T00:00:00+08:00</FrDtTm><ToDtTm>{last}T23:59:59+08:00</ToDtTm></FrToDt>",
        "      <Acct>",
        f"        <Id><Othr><Id>{ICBC_ACCOUNT}</Id></Othr></Id>",
        "        <Ccy>CNY</Ccy>",
        "        <Nm>基本存款账户</Nm>",
        f"        <Ownr><Nm>{COMPANY}</Nm></Ownr>",
        f"        <Svcr><FinInstnId><BICFI>{ICBC_BIC}</BICFI><Nm>{ICBC_BRANCH}</Nm></FinInstnId></Svcr>",
        "      </Acct>",
        _bal("OPBD", opening, first),
        _bal("CLBD", closing, last),
        _bal("CLAV", closing, last),
        summary,
    ]
    tail = [
        f"      <AddtlStmtInf>{COMPANY} 基本户 {year}年{month}月对账单</AddtlStmtInf>",
        "    </Stmt>",
        "  </BkToCstmrStmt>",
        "</Document>",
        "",
    ]
    return "\n".join(head + [_ntry(b) for b in bookings] + tail).encode("utf-8")


def _truncate_in_entry(data: bytes, entry_no: int) -> bytes:
    """Cut the file inside the ``entry_no``-th Ntry, in the middle of its AcctSvcrRef (an ASCII value)."""
    pos = 0
    for _ in range(entry_no):
        pos = data.index(b"<Ntry>", pos) + 1
    ref = data.index(b"<AcctSvcrRef>", pos) + len(b"<AcctSvcrRef>")
    return data[: ref + 9]


# --- MT940, EUR account at Deutsche Bank ---------------------------------------------------------------------
def _iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def _eur(d: Decimal) -> str:
    return f"{abs(d):.2f}".replace(".", ",")


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _field86(
    gvc: str, booking_text: str, primanota: str, remit: list[str], bic: str, iban: str, name: str
) -> list[str]:
    subs = [f"?00{booking_text}", f"?10{primanota}"]
    pieces = [c for part in remit for c in _chunks(part, 27)]
    subs += [f"?{20 + i}{p}" for i, p in enumerate(pieces[:10])]
    if bic:
        subs.append(f"?30{bic}")
    if iban:
        subs.append(f"?31{iban}")
    names = _chunks(name, 27) if name else []
    subs += [f"?{32 + i}{n}" for i, n in enumerate(names[:2])]
    flat = gvc + "".join(subs)
    assert "\n" not in flat and ":" not in flat, flat
    lines = _chunks(flat, 65)
    return [":86:" + lines[0], *lines[1:]]


def _german_workdays(year: int, month: int) -> list[dt.date]:
    """TARGET2 days: Mon-Fri except New Year, Christmas and 26 December (Easter is not needed here)."""
    days = [dt.date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    return [d for d in days if d.weekday() < 5 and (d.month, d.day) not in {(1, 1), (12, 25), (12, 26)}]


def _mt940_eur(rng: random.Random, year: int, month: int) -> bytes:
    """One month of the EUR account: the subsidiary's transfer in, two customer receipts, eight SEPA
    payments to German suppliers and the bank's monthly charges (GVC 805), as Deutsche Bank writes it."""
    days = _german_workdays(year, month)
    yymm = f"{year % 100:02d}{month:02d}"
    rows: list[tuple[dt.date, Decimal, str, str, list[str]]] = []  # day, amount, :61: type + ref, :86:

    def add(
        day: dt.date, amount: Decimal, ref: str, gvc: str, remit: list[str], party: tuple[str, ...]
    ) -> None:
        name, blz, konto, bic = party[:4]
        text, primanota = ("SEPA-GUTSCHRIFT", "9248") if gvc == "166" else ("SEPA-UEBERWEISUNG", "0599")
        f86 = _field86(gvc, text, primanota, remit, bic, _iban("DE", blz + konto), name)
        rows.append((day, amount, "NTRF" + ref, f86))

    sub = EUR_SUBSIDIARY
    add(
        _on_or_after(days, 6),
        Decimal("150000.00"),
        "NONREF",
        "166",
        [f"EREF+HPE-IC-{yymm}-001", f"SVWZ+Konzernverrechnung {_prev_period(year, month)}"],
        sub,
    )
    for i in range(2):
        remit = [
            f"EREF+BMB{yymm}{rng.randint(1000, 9999)}",
            f"SVWZ+RE HD-EU-{year - 1}-{118 + i} Kugelgewindetriebe",
        ]
        add(rng.choice(days), _money(rng, 18_000, 65_000), "NONREF", "166", remit, EUR_CUSTOMER)
    for i in range(8):
        supplier = EUR_SUPPLIERS[i % len(EUR_SUPPLIERS)]
        e2e = f"HDEU{yymm}{i + 1:04d}"
        remit = [f"EREF+{e2e}", f"SVWZ+RE {year - 1}-{rng.randint(10000, 99999)} {supplier[4]}"]
        add(rng.choice(days), -_money(rng, 4_000, 38_000), e2e, "116", remit, supplier)
    charges = ["Entgelte " + f"{month:02d}/{year}", "Kontofuehrung und SEPA"]
    rows.append(
        (
            days[-1],
            Decimal("-38.50"),
            "NCHGNONREF",
            _field86("805", "ENTGELTABSCHLUSS", "9999", charges, "", "", ""),
        )
    )
    rows.sort(key=lambda r: (r[0], r[1]))

    opening = Decimal("186432.55")
    closing = opening + sum((r[1] for r in rows), Decimal(0))
    prev_close, last = dt.date(year, month, 1) - dt.timedelta(days=1), days[-1]
    iban = _iban("DE", DB_BLZ + DB_KONTO)
    lines = [
        ":20:STARTUMSE",
        f":25:{iban}",
        f":28C:{month:05d}/001",
        f":60F:C{prev_close:%y%m%d}EUR{_eur(opening)}",
    ]
    for n, (day, amount, type_ref, f86) in enumerate(rows, start=1):
        mark = "C" if amount > 0 else "D"
        bank_ref = f"{day:%m%d}DB{n:04d}{rng.randint(1000, 9999)}"
        lines.append(f":61:{day:%y%m%d%m%d}{mark}{_eur(amount)}{type_ref}//{bank_ref}")
        lines += f86
    lines += [f":62F:C{last:%y%m%d}EUR{_eur(closing)}", f":64:C{last:%y%m%d}EUR{_eur(closing)}", "-", ""]
    return "\r\n".join(lines).encode("ascii")


# --- writing -------------------------------------------------------------------------------------------------


@dataclass
class AccountMonth:
    """One month of the 基本户 as the bank books it."""

    year: int
    month: int
    opening: Decimal
    closing: Decimal
    bookings: list[Booking]


OPENING_BALANCE = Decimal(
    "3286415.62"
)  # the 基本户 on the first day of the fiscal year, bank and books alike
# (customers paying, suppliers paid) per month; the months after April use the last pair
_MONTH_SIZES = {1: (8, 7), 2: (9, 9), 3: (9, 8), 4: (9, 9)}


def icbc_year(*, fiscal_year: int = 2025, seed: int = 7) -> list[AccountMonth]:
    """The 基本户's fiscal year as the bank books it, month by month.

    The inbox shows its first months; the sample ERP books the same payments (``seed_sample_erp(...,
    bank_books=True)``), a few of them a month early or late as a real ledger does, so the demo can
    draw up the 银行存款余额调节表 from the archive.
    """
    rng = random.Random(seed)
    balance = OPENING_BALANCE
    ref = 153
    out = []
    for month in range(1, 13):
        customers, suppliers = _MONTH_SIZES.get(month, _MONTH_SIZES[4])
        bookings = _cny_month(rng, fiscal_year, month, customers, suppliers)
        opening = balance
        balance = _number(bookings, opening, ref)
        ref += len(bookings) + rng.randint(40, 90)
        out.append(AccountMonth(fiscal_year, month, opening, balance, bookings))
    return out


def sample_files(*, fiscal_year: int = 2025, seed: int = 7) -> dict[str, bytes]:
    """File name → bytes of the sample inbox, in the order the bank would have sent them."""
    year = fiscal_year
    out: dict[str, bytes] = {}
    for m in icbc_year(fiscal_year=year, seed=seed)[:4]:
        if m.month == 1:
            out[f"ICBC_{ICBC_ACCOUNT[:8]}_{year}01.csv"] = _icbc_csv(
                m.bookings, year, 1, m.opening, m.closing
            )
            out[f"MT940_EUR_{year}01.sta"] = _mt940_eur(random.Random(seed + 1), year, 1)
            continue
        data = _camt053(m.bookings, year, m.month, m.month, m.opening, m.closing)
        if m.month == 4:  # the transfer broke off in the middle of an entry
            data = _truncate_in_entry(data, 17)
        out[f"camt053_CNY_{year}{m.month:02d}.xml"] = data
    return out


def write_sample_inbox(inbox: Path, *, fiscal_year: int = 2025, seed: int = 7) -> list[Path]:
    """Write the sample statements into ``inbox`` (created if missing) and return their paths.

    Each file is written under a hidden temporary name and renamed, so the inbox never sees half a file;
    then every file is dated 10 minutes back so the next run takes them without waiting to settle.
    """
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in sample_files(fiscal_year=fiscal_year, seed=seed).items():
        path = inbox / name
        replace_file(path, data)
        paths.append(path)
    _settle(paths)
    return paths


def _settle(paths: Iterable[Path]) -> None:
    past = time.time() - SETTLED_SECONDS
    for p in paths:
        os.utime(p, (past, past))
