"""The sample ERP's 工商银行基本户 (1002.01) booked from the bank's own side of the story.

Why: an auditor reconciles the bank statement against the books (银行存款余额调节表). For the demo to
show a believable one, the books must hold the same payments as the sample statements
(``connectors/bank/sample_statements.icbc_year``), with the timing differences (未达账项) every real
ledger has at a month end:

* the 电子银行服务费 charged on the last working day and the quarterly 结息 credited on the 21st reach
  the accountant with the month's 回单, so they are booked on the first working day of the next month
  (银行已付/已收, 企业未付/未收);
* from February on, the first customer receipt and the first supplier payment the bank books in a
  month were booked on the last working day of the month before: the cheque was written, or the
  customer's transfer advised, before the bank booked it (企业已付/已收, 银行未付/未收).

Every other booking is entered on the day the bank booked it, for the amount it booked.
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal

from connectors.bank.sample_statements import Booking, icbc_year
from connectors.erp.sample_erp.seed import Line, _cr, _dr, _money

BASIC_ACCOUNT = "1002.01"  # 工商银行基本户, the account the sample statements are for


def _workdays(year: int, month: int) -> list[date]:
    last = calendar.monthrange(year, month)[1]
    return [d for d in (date(year, month, n) for n in range(1, last + 1)) if d.weekday() < 5]


def _lines(b: Booking) -> tuple[str, list[Line]]:
    """The voucher the accountant enters for one bank booking: (凭证字, lines)."""
    amt = abs(b.amount)
    name = b.party.name
    if b.kind == "receipt":
        summary = f"收到{name}货款"
        return "收", [_dr(summary, BASIC_ACCOUNT, amt), _cr(summary, "1122", amt, aux_customer=name)]
    if b.kind == "interest":
        return "收", [_dr(b.purpose, BASIC_ACCOUNT, amt), _cr(b.purpose, "6603.03", amt)]
    debit: list[Line]
    if b.kind == "payment":
        summary = f"支付{name}{b.purpose.split()[0]}"
        debit = [_dr(summary, "2202", amt, aux_supplier=name)]
    elif b.kind == "salary":  # the bank pays the net; 个税 and 社保个人部分 were withheld
        iit, social = _money(amt * Decimal("0.03")), _money(amt * Decimal("0.12"))
        summary = f"发放工资 {b.purpose}"
        return "付", [
            _dr(summary, "2211.01", amt + iit + social),
            _cr("代扣个人所得税", "2221.10", iit),
            _cr("代扣社保个人部分", "2241.01", social),
            _cr(summary, BASIC_ACCOUNT, amt),
        ]
    elif b.kind == "social":  # 单位部分 and the 个人部分 withheld from last month's pay
        personal = _money(amt * Decimal("0.3"))
        debit = [_dr(b.purpose, "2211.02", amt - personal), _dr(b.purpose, "2241.01", personal)]
    else:
        code = {
            "fund": "2211.03",
            "tax": "2221.02",
            "power": "5101.03",
            "water": "5101.03",
            "transfer": "1002.02",
            "cash": "1001",
            "fee": "6603.02",
        }[b.kind]
        if b.kind == "tax":
            code = "2221.10" if "个人所得税" in b.purpose else "2221.07" if "附加" in b.purpose else "2221.02"
        summary = {"transfer": "资金调拨 转建行一般户", "cash": "提取备用金"}.get(b.kind, b.purpose)
        debit = [_dr(summary, code, amt)]
    return "付", [*debit, _cr(debit[0]["summary"], BASIC_ACCOUNT, amt)]


def bank_book_entries(fiscal_year: int, statements_seed: int = 7) -> list[tuple[date, str, list[Line]]]:
    """(voucher date, 凭证字, lines) for every booking of the 基本户's year, timing differences included."""
    months = icbc_year(fiscal_year=fiscal_year, seed=statements_seed)
    out: list[tuple[date, str, list[Line]]] = []
    for m in months:
        early: set[int] = set()  # bookings entered on the last working day of the month before
        if m.month > 1:
            for kind in ("receipt", "payment"):
                first = min((b for b in m.bookings if b.kind == kind), key=lambda b: b.at, default=None)
                if first is not None:
                    early.add(id(first))
        next_first = _workdays(m.year, m.month + 1)[0] if m.month < 12 else None
        for b in m.bookings:
            day = b.at.date()
            if id(b) in early:
                day = _workdays(m.year, m.month - 1)[-1]
            elif next_first and (b.kind == "interest" or (b.kind == "fee" and b.purpose == "电子银行服务费")):
                day = next_first
            out.append((day, *_lines(b)))
    return out
