"""A local 用友 YonBIP open-API peer serving the sample ERP's books (erp.sqlite) through YonBIP's contract.

    GET  /open-auth/selfAppAuth/getAccessToken?appKey=&timestamp=&signature=
         signature = Base64(HmacSHA256(appSecret, "appKey<k>timestamp<ms>")), timestamp within 5 minutes
         → {"code": "00000", "message": "成功!", "data": {"access_token", "expire"}}
    POST /yonbip/fi/ficloud/openapi/voucher/queryVouchers?access_token=
         {"pager": {"pageIndex", "pageSize"}, "accbookCode", "periodStart", "periodEnd"}
         → {"code": "200", "message": "OK", "data": {"pageIndex", "pageSize", "recordCount",
            "recordList": [{"header": {...}, "body": [...]}]}}, in 会计期间 and 凭证号 order (not change time)
    POST /_peer/faults  {"unavailable_next": n (HTTP 503), "expire_tokens": true, "ignore_page": true,
                         "delete": {"after": n, "voucher": id} (deleted in the ERP after n more queries)}
    GET  /_peer/stats   {"calls": {...}, "tokens_issued": n, "refused_tokens": n}

YonBIP does not publish the code it answers for an expired token; this peer answers code "401" with a
message naming access_token, which is what the connector keys on.

Run: python -m connectors.erp.yonbip_peer --data DIR --port N --app-key K --secret-env VAR
(DIR holds erp.sqlite, as `archive-hub seed-sample-erp` writes it).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import secrets
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import create_engine, delete, func, select

from connectors.erp.kingdee_peer import countdown
from connectors.erp.sample_erp import schema
from connectors.erp.yonbip import TOKEN_PATH
from connectors.oa.peer_kit import add_call_counter, add_peer_controls, secret_and_data, serve_on_loopback

QUERY_PATH = "/yonbip/fi/ficloud/openapi/voucher/queryVouchers"
CLOCK_SKEW_MS = 5 * 60 * 1000
v, line, acct, co = schema.voucher, schema.voucher_line, schema.account, schema.company
AUX = {"aux_customer": "客户", "aux_supplier": "供应商", "aux_department": "部门", "aux_employee": "职员"}
AUX |= {"aux_project": "项目"}


class PeerState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        self.issued: list[str] = []  # for tests that look for leaked tokens
        self.refused_tokens = 0
        self.unavailable_next = 0
        self.delete: tuple[int, int] | None = None  # (after n more queries, voucher id): deleted in the ERP
        self.ignore_page = False  # answer page 1 whatever pageIndex says (a misnamed pager)

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.unavailable_next = int(body.get("unavailable_next", self.unavailable_next))
            self.ignore_page = bool(body.get("ignore_page", self.ignore_page))
            if "delete" in body:
                self.delete = (int(body["delete"]["after"]), int(body["delete"]["voucher"]))
            if body.get("expire_tokens"):
                self.tokens.clear()
        return {"ok": True}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "tokens_issued": self.tokens_issued,
                "issued": list(self.issued),
                "refused_tokens": self.refused_tokens,
            }


def _amount(value: Decimal | None) -> float:
    return float(value or 0)


def _vouchers(
    engine: Any, book: str, start: str | None, end: str | None, page: int, size: int
) -> tuple[int, list]:
    """One page of vouchers as YonBIP nests them, and the count of all that match."""
    period_key = v.c.fiscal_year * 100 + v.c.period
    where = [v.c.book_code == book]
    if start:
        year, month = (int(x) for x in start.split("-"))
        where.append(period_key >= year * 100 + month)
    if end:
        year, month = (int(x) for x in end.split("-"))
        where.append(period_key <= year * 100 + month)
    order = (v.c.fiscal_year, v.c.period, v.c.voucher_word, v.c.voucher_no, v.c.id)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(v).where(*where)).scalar_one()
        heads = conn.execute(
            select(v, co.c.code.label("org_code"), co.c.name.label("org_name"))
            .join(co, co.c.id == v.c.company_id)
            .where(*where)
            .order_by(*order)
            .offset((page - 1) * size)
            .limit(size)
        ).all()
        ids = [h.id for h in heads]
        rows = conn.execute(
            select(line, acct.c.name.label("account_name"))
            .outerjoin(acct, acct.c.code == line.c.account_code)
            .where(line.c.voucher_id.in_(ids))
            .order_by(line.c.voucher_id, line.c.line_no)
        ).all()
    bodies: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for r in rows:
        bodies[r.voucher_id].append(
            {
                "recordnumber": r.line_no,
                "description": r.summary,
                "accsubject": {"code": r.account_code, "name": r.account_name},
                "debit_original": _amount(r.debit),
                "credit_original": _amount(r.credit),
                "debit_org": _amount(r.debit * r.exchange_rate) if r.debit is not None else 0.0,
                "credit_org": _amount(r.credit * r.exchange_rate) if r.credit is not None else 0.0,
                "currency": {"code": r.currency},
                "rate_org": float(r.exchange_rate),
                "clientauxiliary": [
                    {"name": label, "value": getattr(r, column)}
                    for column, label in AUX.items()
                    if getattr(r, column)
                ],
            }
        )
    records = [
        {
            "header": {
                "id": str(h.id),
                "org": {"code": h.org_code, "name": h.org_name},
                "accbook": {"code": h.book_code},
                "period": f"{h.fiscal_year}-{h.period:02d}",
                "vouchertype": {"name": h.voucher_word},
                "billcode": h.voucher_no,
                "maketime": h.voucher_date,
                "maker": {"name": h.preparer},
                "auditor": {"name": h.reviewer},
                "tallyman": {"name": h.poster},
                "attachmentnumber": h.attachment_count,
                "ts": h.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            },
            "body": bodies[h.id],
        }
        for h in heads
    ]
    return total, records


def documented_signature(params: dict[str, str], app_secret: str) -> str:
    """The rule as YonBIP's page states it, written apart from the connector's code so a mistake there
    fails here: parameters sorted by name, name and value joined (signature left out), HmacSHA256 keyed with
    the appSecret, then Base64 (the URL encoding is the transport's)."""
    text = "".join(f"{name}{params[name]}" for name in sorted(params) if name != "signature")
    return base64.b64encode(hmac.digest(app_secret.encode("utf-8"), text.encode("utf-8"), "sha256")).decode()


def make_app(data: Path, *, app_key: str, app_secret: str, clock: Any = time.time) -> FastAPI:
    engine = create_engine(f"sqlite:///{data / 'erp.sqlite'}")
    state = PeerState()
    app = FastAPI()
    app.state.peer = state

    add_call_counter(app, state, lambda path: path.rsplit("/", 1)[-1])

    @app.get(TOKEN_PATH)
    async def token(appKey: str = "", timestamp: str = "", signature: str = "") -> Response:
        now_ms = int(clock() * 1000)
        fresh = timestamp.isdigit() and abs(now_ms - int(timestamp)) <= CLOCK_SKEW_MS
        expected = documented_signature({"appKey": appKey, "timestamp": timestamp}, app_secret)
        if appKey != app_key or not fresh or not hmac.compare_digest(signature.encode(), expected.encode()):
            with state.lock:
                state.refused_tokens += 1
            reason = "时间戳超出有效期" if appKey == app_key and not fresh else "签名校验失败"
            return JSONResponse({"code": "401", "message": reason, "data": None})
        issued = secrets.token_hex(20)
        with state.lock:
            state.tokens.add(issued)
            state.tokens_issued += 1
            state.issued.append(issued)
        return JSONResponse(
            {"code": "00000", "message": "成功!", "data": {"access_token": issued, "expire": 7200}}
        )

    @app.post(QUERY_PATH)
    async def query(request: Request, access_token: str = "") -> Response:
        with state.lock:
            known = access_token in state.tokens
        if not known:
            return JSONResponse({"code": "401", "message": "access_token 无效或已过期", "data": None})
        try:
            body = json.loads(await request.body())
            pager = body.get("pager") or {}
            page, size = int(pager.get("pageIndex", 1)), int(pager.get("pageSize", 20))
            book = str(body["accbookCode"])
            start, end = body.get("periodStart"), body.get("periodEnd")
            if page < 1 or not 0 < size <= 500 or not book:
                raise ValueError("pager")
            with state.lock:
                if state.ignore_page:
                    page = 1
            total, records = _vouchers(engine, book, start, end, page, size)
            with state.lock:
                gone, state.delete = countdown(state.delete)
            if gone is not None:  # a voucher deleted (作废) in the ERP while the hub pages
                with engine.begin() as conn:
                    conn.execute(delete(line).where(line.c.voucher_id == gone))
                    conn.execute(delete(v).where(v.c.id == gone))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"code": "999", "message": f"参数错误: {exc}", "data": None})
        return JSONResponse(
            {
                "code": "200",
                "message": "OK",
                "data": {"pageIndex": page, "pageSize": size, "recordCount": total, "recordList": records},
            }
        )

    add_peer_controls(app, state.apply, state.stats)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.erp.yonbip_peer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with erp.sqlite")
    parser.add_argument("--port", type=int, required=True, help="loopback port, 0 for any free one")
    parser.add_argument("--app-key", required=True)
    parser.add_argument(
        "--secret-env", required=True, help="name of the environment variable with the appSecret"
    )
    args = parser.parse_args(argv)
    secret = secret_and_data("yonbip peer", args.secret_env, args.data)
    if secret is None:
        return 2
    return serve_on_loopback(
        make_app(args.data, app_key=args.app_key, app_secret=secret), args.port, "yonbip peer"
    )


if __name__ == "__main__":
    sys.exit(main())
