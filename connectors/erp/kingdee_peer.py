"""A local 金蝶云星空 WebAPI peer serving the sample ERP's books (erp.sqlite) through Kingdee's contract.

    POST /Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret.common.kdsvc
         {"parameters": [acctId, userName, appId, appSecret, lcid]}
         → {"LoginResultType": 1, "KDSVCSessionId": ..., ...} and the cookie kdservice-sessionid
    POST .../DynamicFormService.ExecuteBillQuery.common.kdsvc   {"data": "<JSON text>" or {...}}
         FormId GL_VOUCHER (one row per 分录) or BOS_Attachment; FieldKeys, FilterString, StartRow, Limit
         → a bare 2-D array; errors as HTTP 200 [[{"Result": {"ResponseStatus": {...}}}]]
    POST .../DynamicFormService.AttachmentDownLoad.common.kdsvc {"data": {"FileId", "StartIndex"}}
         → {"Result": {"ResponseStatus": {"IsSuccess": true}, "FileName", "FileSize", "FilePart" (base64),
            "IsLast", "StartIndex" (of the next part)}}
    POST /_peer/faults  {"unavailable_next": n (HTTP 503), "expire_sessions": true, "short_file": FileId,
                         "disorder": true (answer rows out of order)}
    GET  /_peer/stats   {"calls": {...}, "logins": n, "refused_logins": n}

The FilterString grammar is the part the connector uses: conditions joined by AND, each `F op 'v'`
(op =, >=, <=, >, <) or `F IN (a, b)`. Rows come in FMODIFYDATE, FVOUCHERID, FENTRYSEQ order, as the
connector's OrderString asks. 核算维度 are the FDETAILID flex fields (FFLEX4 供应商, FFLEX5 部门, FFLEX6 客户,
FFLEX7 员工; 项目 a custom FF100001): real account sets number custom dimensions their own way.

Run: python -m connectors.erp.kingdee_peer --data DIR --port N --acct-id A --user U --app-id I --secret-env VAR
(DIR holds erp.sqlite and attachments/, as `archive-hub seed-sample-erp` writes them).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import sys
import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Select, and_, create_engine, func, select, update

from connectors.erp.kingdee import DOWNLOAD, LOGIN, QUERY, SESSION_COOKIE, SESSION_LOST
from connectors.erp.sample_erp import schema
from connectors.oa.peer_kit import add_call_counter, add_peer_controls, secret_and_data, serve_on_loopback

v, line, acct, co, att = (
    schema.voucher,
    schema.voucher_line,
    schema.account,
    schema.company,
    schema.attachment,
)
STATUS = {"draft": "A", "audited": "C", "posted": "C"}  # FDocumentStatus: A 创建, B 审核中, C 已审核

# GL_VOUCHER field key → (column, how the value is shown)
VOUCHER_FIELDS: dict[str, Any] = {
    "FVOUCHERID": v.c.id,
    "FACCBOOKORGID.FNumber": co.c.code,
    "FACCBOOKORGID.FName": co.c.name,
    "FAccountBookID.FNumber": v.c.book_code,
    "FYEAR": v.c.fiscal_year,
    "FPERIOD": v.c.period,
    "FVOUCHERGROUPID.FName": v.c.voucher_word,
    "FVOUCHERGROUPNO": v.c.voucher_no,
    "FDATE": v.c.voucher_date,
    "FCREATORID.FName": v.c.preparer,
    "FCHECKERID.FName": v.c.reviewer,
    "FPOSTERID.FName": v.c.poster,
    "FATTACHMENTS": v.c.attachment_count,
    "FDocumentStatus": v.c.status,
    "FMODIFYDATE": v.c.updated_at,
    "FENTRYSEQ": line.c.line_no,
    "FEXPLANATION": line.c.summary,
    "FACCOUNTID.FNumber": line.c.account_code,
    "FACCOUNTID.FName": acct.c.name,
    "FDEBIT": line.c.debit,
    "FCREDIT": line.c.credit,
    "FCURRENCYID.FNumber": line.c.currency,
    "FEXCHANGERATE": line.c.exchange_rate,
    "FDETAILID.FFLEX4.FName": line.c.aux_supplier,
    "FDETAILID.FFLEX5.FName": line.c.aux_department,
    "FDETAILID.FFLEX6.FName": line.c.aux_customer,
    "FDETAILID.FFLEX7.FName": line.c.aux_employee,
    "FDETAILID.FF100001.FName": line.c.aux_project,
}
ATTACHMENT_FIELDS: dict[str, Any] = {
    "FID": att.c.id,
    "FInterID": att.c.voucher_id,
    "FAttachmentName": att.c.file_name,
    "FFileId": att.c.id,
    "FAttachmentSize": att.c.size,
    "FExtName": att.c.file_name,
    "FBillType": None,  # always GL_VOUCHER here
}
CONDITION = re.compile(r"^\s*([\w.]+)\s*(>=|<=|=|>|<|\bIN\b)\s*(.+?)\s*$", re.IGNORECASE)


class PeerState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.sessions: set[str] = set()
        self.logins = 0
        self.refused_logins = 0
        self.unavailable_next = 0
        self.short_file: str | None = None
        self.disorder = False
        self.touch: tuple[int, int] | None = None  # (after n more voucher queries, voucher id)
        self.touch_on_offset: int | None = None  # voucher edited while its instant is paged by offset
        self.login_cookie = True  # False: the session id only in the answer's KDSVCSessionId
        self.sessions_issued: list[str] = []  # for tests that look for leaked session ids

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.unavailable_next = int(body.get("unavailable_next", self.unavailable_next))
            if body.get("expire_sessions"):
                self.sessions.clear()
            if "short_file" in body:
                self.short_file = str(body["short_file"]) if body["short_file"] is not None else None
            self.disorder = bool(body.get("disorder", self.disorder))
            if "touch" in body:  # an edit in the ERP while the hub pages: {"after": n, "voucher": id}
                self.touch = (int(body["touch"]["after"]), int(body["touch"]["voucher"]))
            self.login_cookie = bool(body.get("login_cookie", self.login_cookie))
            if "touch_on_offset" in body:  # {"touch_on_offset": id}: an edit while the hub pages an instant
                self.touch_on_offset = int(body["touch_on_offset"])
        return {"ok": True}


def _error(message: str, code: int = 0, wrapped: bool = True) -> JSONResponse:
    status = {
        "ErrorCode": 500,
        "IsSuccess": False,
        "Errors": [{"FieldName": None, "Message": message, "DIndex": 0}],
        "SuccessEntitys": [],
        "SuccessMessages": [],
        "MsgCode": code,
    }
    body: Any = {"Result": {"ResponseStatus": status}}
    return JSONResponse([[body]] if wrapped else body)


def _cell(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "FDATE":
        text = str(value)
        return text + "T00:00:00" if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else text
    if key == "FMODIFYDATE":
        return value.isoformat(timespec="seconds") if value.microsecond == 0 else value.isoformat()
    if key == "FDocumentStatus":
        return STATUS.get(value, "A")
    if key == "FExtName":
        return "." + str(value).rpartition(".")[2]
    if key == "FFileId":
        return f"att-{value:06d}"
    if isinstance(value, Decimal):
        return float(value)
    return value


def _conditions(filter_string: str, fields: dict[str, Any]) -> list[Any]:
    """SQL conditions for the FilterString, or ValueError naming what is not understood."""
    out = []
    for part in (
        re.split(r"\s+AND\s+", filter_string.strip(), flags=re.IGNORECASE) if filter_string.strip() else []
    ):
        m = CONDITION.match(part)
        if not m:
            raise ValueError(f"过滤条件 {part!r} 无法解析")
        key, op, raw = m.group(1), m.group(2).upper(), m.group(3)
        if key == "FBillType" and fields is ATTACHMENT_FIELDS:
            if raw.strip("'") != "GL_VOUCHER":
                out.append(att.c.id < 0)  # no attachments of other bill types here
            continue
        column = fields.get(key)
        if column is None:
            raise ValueError(f"字段 {key} 不存在")
        if op == "IN":
            items = [i.strip().strip("'") for i in raw.strip("()").split(",") if i.strip()]
            if key == "FFileId":
                items = [i.removeprefix("att-") for i in items]
            out.append(column.in_([_typed(column, i) for i in items]))
            continue
        value: Any = raw.strip("'")
        if key == "FMODIFYDATE":
            from datetime import datetime

            value = datetime.fromisoformat(value)
        elif key == "FDocumentStatus":
            wanted = [k for k, s in STATUS.items() if s == value]
            out.append(column.in_(wanted))
            continue
        value = _typed(column, value)
        ops = {
            "=": column.__eq__,
            ">=": column.__ge__,
            "<=": column.__le__,
            ">": column.__gt__,
            "<": column.__lt__,
        }
        out.append(ops[op](value))
    return out


def countdown(touch: tuple[int, int] | None) -> tuple[int | None, tuple[int, int] | None]:
    """(the voucher to edit now, what is left to count down)."""
    if touch is None:
        return None, None
    after, voucher = touch
    return (voucher, None) if after <= 1 else (None, (after - 1, voucher))


def _typed(column: Any, text: Any) -> Any:
    """A literal of the FilterString as the column's type (a number column compared with a number)."""
    if isinstance(text, str) and column.type.python_type is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} 不是数字") from None
    return text


def make_app(
    data: Path, *, acct_id: str, user: str, app_id: str, app_secret: str, part_size: int, max_rows: int = 2000
) -> FastAPI:
    engine = create_engine(f"sqlite:///{data / 'erp.sqlite'}")
    root = data / "attachments"
    state = PeerState()
    app = FastAPI()
    app.state.peer = state

    # ExecuteBillQuery, AttachmentDownLoad, ...: the method part of the stub path
    add_call_counter(app, state, lambda path: path.rsplit(".", 3)[-3] if "kdsvc" in path else path)

    def session_ok(request: Request) -> bool:
        with state.lock:
            return request.cookies.get(SESSION_COOKIE, "") in state.sessions

    async def data_of(request: Request) -> dict[str, Any]:
        body = json.loads(await request.body())
        payload = body.get("data") if isinstance(body, dict) else None
        if payload is None and isinstance(body, dict) and isinstance(body.get("parameters"), list):
            payload = body["parameters"][0] if body["parameters"] else None
        if isinstance(payload, str):
            payload = json.loads(payload)
        if not isinstance(payload, dict):
            raise ValueError("data数据包不是对象")
        return payload

    @app.post(LOGIN)
    async def login(request: Request) -> Response:
        try:
            params = json.loads(await request.body())["parameters"]
            given_acct, given_user, given_app, given_secret = (str(p) for p in params[:4])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"LoginResultType": 0, "Message": "参数格式错误"})
        ok = (
            given_acct == acct_id
            and given_user == user
            and given_app == app_id
            and secrets.compare_digest(given_secret.encode(), app_secret.encode())
        )
        if not ok:
            with state.lock:
                state.refused_logins += 1
            return JSONResponse(
                {"LoginResultType": 0, "Message": "第三方系统登录授权验证失败", "KDSVCSessionId": None}
            )
        session = secrets.token_hex(16)
        with state.lock:
            state.sessions.add(session)
            state.logins += 1
        answer = JSONResponse(
            {
                "Message": None,
                "MessageCode": "CheckPasswordPolicy",
                "LoginResultType": 1,
                "Context": {"UserName": user, "DBid": acct_id, "LogId": "", "UseLanguages": []},
                "KDSVCSessionId": session,
                "IsSuccessByAPI": True,
            }
        )
        with state.lock:
            state.sessions_issued.append(session)
            if state.login_cookie:
                answer.set_cookie(SESSION_COOKIE, session, httponly=True)
        return answer

    @app.post(QUERY)
    async def query(request: Request) -> Response:
        if not session_ok(request):
            return _error("会话信息已丢失，请重新登录", SESSION_LOST)
        try:
            payload = await data_of(request)
            form = payload.get("FormId")
            fields = {"GL_VOUCHER": VOUCHER_FIELDS, "BOS_Attachment": ATTACHMENT_FIELDS}.get(str(form))
            if fields is None:
                return _error(f"业务对象 {form} 不存在")
            keys = [k.strip() for k in str(payload.get("FieldKeys", "")).split(",") if k.strip()]
            unknown = [k for k in keys if k not in fields]
            if not keys or unknown:
                return _error(f"字段 {unknown[0] if unknown else '(FieldKeys)'} 不存在")
            conditions = _conditions(str(payload.get("FilterString") or ""), fields)
            start, limit = int(payload.get("StartRow") or 0), int(payload.get("Limit") or 0)
            limit = min(limit or max_rows, max_rows)  # "Limit 不能超过2000": more is cut, not refused
        except (ValueError, TypeError) as exc:
            return _error(f"查询参数错误: {exc}")
        if fields is VOUCHER_FIELDS:
            stmt: Select[Any] = (
                select(*[fields[k] for k in keys])
                .select_from(line.join(v, v.c.id == line.c.voucher_id).join(co, co.c.id == v.c.company_id))
                .outerjoin(acct, acct.c.code == line.c.account_code)
                .order_by(v.c.updated_at, v.c.id, line.c.line_no)
            )
        else:
            stmt = select(*[fields[k] if fields[k] is not None else att.c.id for k in keys]).order_by(
                att.c.voucher_id, att.c.id
            )
        if conditions:
            stmt = stmt.where(and_(*conditions))
        if start:
            stmt = stmt.offset(start)
        if limit:
            stmt = stmt.limit(limit)
        with engine.connect() as conn:
            rows = [
                [_cell(k, value) for k, value in zip(keys, row, strict=True)] for row in conn.execute(stmt)
            ]
        if "FBillType" in keys:
            at = keys.index("FBillType")
            for row in rows:
                row[at] = "GL_VOUCHER"
        with state.lock:
            if state.disorder and len(rows) > 2:
                rows.reverse()
            touch, state.touch = countdown(state.touch) if fields is VOUCHER_FIELDS else (None, state.touch)
            aimed = state.touch_on_offset
        if fields is VOUCHER_FIELDS and start > 0 and aimed is not None:
            # Edit it while the hub pages its own instant by offset (the filter starts at its time).
            with engine.connect() as conn:
                at = conn.execute(select(v.c.updated_at).where(v.c.id == aimed)).scalar_one()
            if f"'{at:%Y-%m-%d %H:%M:%S}'" in str(payload.get("FilterString")):
                with state.lock:
                    touch, state.touch_on_offset = aimed, None
        if touch is not None:
            with engine.begin() as conn:  # saved again by a user: it moves to the end of the order
                latest = conn.execute(select(func.max(v.c.updated_at))).scalar_one()
                conn.execute(
                    update(v).where(v.c.id == touch).values(updated_at=latest + timedelta(seconds=1))
                )
        return JSONResponse(rows)

    @app.post(DOWNLOAD)
    async def download(request: Request) -> Response:
        if not session_ok(request):
            return _error("会话信息已丢失，请重新登录", SESSION_LOST, wrapped=False)
        try:
            payload = await data_of(request)
            file_id = str(payload["FileId"])
            start = int(payload.get("StartIndex") or 0)
            number = int(file_id.removeprefix("att-"))
        except (ValueError, KeyError, TypeError):
            return _error("data数据包中的参数FileId必传", wrapped=False)
        with engine.connect() as conn:
            found = conn.execute(
                select(att.c.file_name, att.c.storage_path).where(att.c.id == number)
            ).first()
        if found is None:
            return _error(f"附件 {file_id} 不存在", wrapped=False)
        try:
            content = (root / found.storage_path).read_bytes()
        except OSError:
            return _error(f"附件 {file_id} 的文件不存在", wrapped=False)
        with state.lock:
            if state.short_file == file_id:
                content = content[: len(content) // 2]
        part = content[start : start + part_size]
        last = start + part_size >= len(content)
        result = {
            "ResponseStatus": {"IsSuccess": True, "Errors": [], "MsgCode": 0},
            "FileName": found.file_name,
            "FileSize": len(content),
            "FilePart": base64.b64encode(part).decode(),
            "IsLast": last,
            "StartIndex": start + len(part),
        }
        return JSONResponse({"Result": result})

    def stats() -> dict[str, Any]:
        with state.lock:
            return {
                "calls": dict(state.calls),
                "logins": state.logins,
                "refused_logins": state.refused_logins,
                "sessions_issued": list(state.sessions_issued),
            }

    add_peer_controls(app, state.apply, stats)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.erp.kingdee_peer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with erp.sqlite and attachments/")
    parser.add_argument("--port", type=int, required=True, help="loopback port, 0 for any free one")
    parser.add_argument("--acct-id", required=True, help="账套ID")
    parser.add_argument("--user", required=True, help="the integration user (集成用户)")
    parser.add_argument("--app-id", required=True)
    parser.add_argument(
        "--secret-env", required=True, help="name of the environment variable with the AppSecret"
    )
    parser.add_argument(
        "--max-rows", type=int, default=2000, help="rows per ExecuteBillQuery at most (Limit)"
    )
    parser.add_argument(
        "--part-size", type=int, default=1024 * 1024, help="AttachmentDownLoad part size in bytes"
    )
    args = parser.parse_args(argv)
    secret = secret_and_data("kingdee peer", args.secret_env, args.data)
    if secret is None:
        return 2
    app = make_app(
        args.data,
        acct_id=args.acct_id,
        user=args.user,
        app_id=args.app_id,
        app_secret=secret,
        part_size=args.part_size,
        max_rows=args.max_rows,
    )
    return serve_on_loopback(app, args.port, "kingdee peer")


if __name__ == "__main__":
    sys.exit(main())
