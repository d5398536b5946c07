"""Sample WeCom (企业微信) approvals for the demo and tests: the 报销 approvals behind the sample books.

Every posted voucher of the sample ERP that reimburses a person (差旅费 6602.02, 业务招待费 6602.04, the
职员 in 辅助核算) gets the approval it was booked from: applied for some days before the voucher, approved
by the department head and then by finance (孙丽华), with the 数电票 (OFD) of the expense as the form's
file. Written as the WeCom peer (connectors/oa/wecom_peer.py) serves them: `approvals/<sp_no>.json`
(getapprovaldetail's `info`), `media/<file_id>` (+ `.json`), `users.json`; `callbacks.json` lists the
events WeCom would send (提单, then 通过 or 驳回), in order.

The exceptions an auditor should find, one each: a voucher booked without an approval, an approval
whose amount was keyed differently in the books, an approval approved but never booked (已审批未入账), a
rejected approval (驳回, never archived) and an approval whose invoice file WeCom no longer has.
Fictitious people, parties and numbers only.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zlib
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, select

from connectors.erp.sample_erp import schema
from connectors.erp.sample_erp.einvoices import SampleInvoice, einvoice_ofd
from connectors.erp.sample_erp.seed import COMPANY, EMPLOYEES

TZ = ZoneInfo("Asia/Shanghai")
TEMPLATE_ID = "3WLJF6naF9Ws5hCLcHLuK6dVmhD3eeqS8ZsZfyqB"  # 报销 (the shape of WeCom's template ids)
ACCOUNTS = {"6602.02": "差旅费", "6602.04": "业务招待费"}
USERIDS = {
    "张伟": "ZhangWei",
    "李娜": "LiNa",
    "王芳": "WangFang",
    "刘洋": "LiuYang",
    "陈静": "ChenJing",
    "杨磊": "YangLei",
    "赵敏": "ZhaoMin",
    "黄晓明": "HuangXiaoMing",
    "周杰": "ZhouJie",
    "吴婷": "WuTing",
    "孙丽华": "SunLiHua",
}
PARTIES = {d: n for n, d in enumerate(dict.fromkeys(EMPLOYEES.values()), 2)}  # 部门 → WeCom partyid
HEADS = {"销售部": "周杰", "财务部": "孙丽华", "行政部": "王芳", "采购部": "刘洋", "人力资源部": "陈静"}
HEADS |= {"生产部": "杨磊", "研发部": "黄晓明", "总经办": "吴婷"}
FINANCE = "孙丽华"  # 会计主管: the last approver of every 报销
SELLERS = {
    "差旅费": ("北京锦程酒店管理有限公司", "91110105MA1TEST03K"),
    "业务招待费": ("苏州得月楼餐饮有限公司", "91320508MA1TEST04L"),
}
US = (COMPANY["name"], "91320500MA1TEST00J")


@dataclass(frozen=True)
class SampleWeCom:
    approvals: int
    callbacks: int
    folder: Path
    exceptions: dict[str, str]  # what the auditor should find → 审批单号 or voucher id

    def one_line(self) -> str:
        return f"{self.approvals} approvals (报销), {self.callbacks} callbacks to send, in {self.folder}"


def _stamp(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _reimbursements(erp_url: str) -> list[dict[str, Any]]:
    """One row per (posted voucher, person) with the person's expense debits on the reimbursed accounts."""
    v, line = schema.voucher, schema.voucher_line
    engine = create_engine(erp_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    v.c.id,
                    v.c.voucher_date,
                    line.c.summary,
                    line.c.account_code,
                    line.c.debit,
                    line.c.aux_employee,
                )
                .join(line, line.c.voucher_id == v.c.id)
                .where(
                    v.c.status == "posted",
                    line.c.account_code.in_(list(ACCOUNTS)),
                    line.c.debit > 0,
                    line.c.aux_employee.is_not(None),
                )
                .order_by(v.c.voucher_date, v.c.id, line.c.line_no)
            ).all()
    finally:
        engine.dispose()
    grouped: dict[tuple[int, str], dict[str, Any]] = {}
    for vid, day, summary, account, debit, employee in rows:
        try:
            date = dt.date.fromisoformat(day)
        except (TypeError, ValueError):
            continue  # the sample's broken date: that voucher is quarantined, not booked
        g = grouped.setdefault(
            (vid, employee),
            {
                "voucher_id": vid,
                "date": date,
                "employee": employee,
                "amount": Decimal("0.00"),
                "summary": summary or "",
                "kind": ACCOUNTS[account],
            },
        )
        g["amount"] += Decimal(debit)
    return list(grouped.values())


def write_sample_wecom(erp_url: str, folder: Path, *, seed: int = 2025) -> SampleWeCom:
    rng = random.Random(seed)
    folder = Path(folder)
    (folder / "approvals").mkdir(parents=True, exist_ok=True)
    (folder / "media").mkdir(parents=True, exist_ok=True)
    items = _reimbursements(erp_url)
    exceptions: dict[str, str] = {}
    per_day: dict[dt.date, int] = defaultdict(int)
    callbacks: list[dict[str, Any]] = []
    invoice_no = 0

    def approval(
        item: dict[str, Any], *, status: int = 2, keyed: Decimal | None = None, file_ok: bool = True
    ) -> str:
        nonlocal invoice_no
        booked: dt.date = item["date"]
        employee: str = item["employee"]
        # Applied for in the voucher's fiscal year: the 原始凭证 is filed in the year of its books.
        day = max(booked - dt.timedelta(days=rng.randint(3, 7)), dt.date(booked.year, 1, 1))
        applied = dt.datetime.combine(day, dt.time(9), TZ)
        applied += dt.timedelta(minutes=rng.randrange(8 * 60))
        per_day[applied.date()] += 1
        sp_no = f"{applied:%Y%m%d}{per_day[applied.date()]:04d}"
        dept = EMPLOYEES.get(employee, "总经办")
        head = HEADS.get(dept, "吴婷")
        steps = [FINANCE] if head in (employee, FINANCE) else [head, FINANCE]
        at = applied
        trail = []
        for n, approver in enumerate(steps):
            at += dt.timedelta(hours=rng.randint(2, 20))
            decided = 3 if (status == 3 and n == len(steps) - 1) else 2
            trail.append(
                {
                    "sp_status": decided,
                    "approverattr": 1,
                    "details": [
                        {
                            "approver": {"userid": USERIDS.get(approver, approver)},
                            "speech": "同意" if decided == 2 else "发票抬头不符, 请重新开具",
                            "sp_status": decided,
                            "sptime": _stamp(at),
                            "media_id": [],
                        }
                    ],
                }
            )
        amount: Decimal = keyed if keyed is not None else item["amount"]
        invoice_no += 1
        tax = (amount - amount / Decimal("1.06")).quantize(Decimal("0.01"))
        inv = SampleInvoice(
            number=f"{booked:%y}442000{invoice_no:012d}",
            issued=applied.date() - dt.timedelta(days=1),
            item=f"*{'住宿服务' if item['kind'] == '差旅费' else '餐饮服务'}*{item['kind']}",
            amount=amount - tax,
            tax=tax,
            seller=SELLERS[item["kind"]],
            buyer=US,
        )
        file_id = f"WWCISP_{sp_no}_{rng.randrange(16**24):024x}"
        if file_ok:
            (folder / "media" / file_id).write_bytes(einvoice_ofd(inv))
            (folder / "media" / f"{file_id}.json").write_text(
                json.dumps({"file_name": f"数电票_{inv.number}.ofd", "content_type": "application/ofd"}),
                encoding="utf-8",
            )
        occurred = dt.datetime.combine(applied.date() - dt.timedelta(days=2), dt.time(0), TZ)
        info = {
            "sp_no": sp_no,
            "sp_name": "报销",
            "sp_status": status,
            "template_id": TEMPLATE_ID,
            "apply_time": _stamp(applied),
            "applyer": {"userid": USERIDS.get(employee, employee), "partyid": str(PARTIES.get(dept, 1))},
            "sp_record": trail,
            "notifyer": [],
            "apply_data": {
                "contents": [
                    _control(
                        "Selector",
                        "费用类型",
                        {
                            "selector": {
                                "type": "single",
                                "options": [
                                    {
                                        "key": f"option-{item['kind']}",
                                        "value": [{"text": item["kind"], "lang": "zh_CN"}],
                                    }
                                ],
                            }
                        },
                    ),
                    _control("Text", "报销事由", {"text": item["summary"]}),
                    _control(
                        "Date", "发生日期", {"date": {"type": "day", "s_timestamp": str(_stamp(occurred))}}
                    ),
                    _control("Money", "报销金额", {"new_money": f"{amount:.2f}"}),
                    _control("File", "发票", {"files": [{"file_id": file_id}]}),
                    _control("Textarea", "备注", {"text": ""}),
                ]
            },
            "comments": [],
        }
        (folder / "approvals" / f"{sp_no}.json").write_text(
            json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        event = {
            "sp_no": sp_no,
            "sp_name": "报销",
            "template_id": TEMPLATE_ID,
            "apply_time": _stamp(applied),
            "applyer_userid": info["applyer"]["userid"],
        }
        callbacks.append({**event, "sp_status": 1, "at": _stamp(applied)})
        callbacks.append({**event, "sp_status": status, "at": _stamp(at)})
        return sp_no

    for n, item in enumerate(items):
        if n == 10:
            exceptions["voucher without approval"] = f"erp voucher {item['voucher_id']}"
            continue
        if n == 20:
            keyed = item["amount"] + Decimal("90.00")  # keyed as 1,2x9 instead of 1,2x0 somewhere
            exceptions["amount differs from the books"] = approval(item, keyed=keyed)
            continue
        if n == 30:
            exceptions["invoice file missing at WeCom"] = approval(item, file_ok=False)
            continue
        approval(item)
    last = max((i["date"] for i in items), default=dt.date(2025, 12, 31))
    late = {
        "voucher_id": 0,
        "date": last - dt.timedelta(days=1),
        "employee": "周杰",
        "amount": Decimal("3560.00"),
        "summary": "周杰报销深圳差旅费",
        "kind": "差旅费",
    }
    exceptions["approved, never booked"] = approval(late)
    rejected = {**late, "amount": Decimal("1288.00"), "employee": "刘洋", "summary": "刘洋报销成都差旅费"}
    exceptions["rejected (not archived)"] = approval(rejected, status=3)
    users = {
        uid: {"userid": uid, "name": name, "department": [PARTIES.get(EMPLOYEES.get(name, "财务部"), 1)]}
        for name, uid in USERIDS.items()
    }
    (folder / "users.json").write_text(json.dumps(users, ensure_ascii=False, indent=1), encoding="utf-8")
    callbacks.sort(key=lambda c: (c["at"], c["sp_no"], c["sp_status"] != 1))
    (folder / "callbacks.json").write_text(
        json.dumps(callbacks, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    count = len(list((folder / "approvals").glob("*.json")))
    return SampleWeCom(count, len(callbacks), folder, exceptions)


def _control(kind: str, title: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "control": kind,
        "id": f"{kind}-{zlib.crc32(title.encode()) % 10**13:013d}",  # stable: the same form, the same bytes
        "title": [{"text": title, "lang": "zh_CN"}],
        "value": value,
    }
