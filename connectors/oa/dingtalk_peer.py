"""A local HTTP peer that speaks DingTalk's (钉钉) server API for OA approvals, for tests and the demo.

Why: the hub's DingTalk connector must be exercised over real HTTP against the real contract (4xx answers with
a JSON code on api.dingtalk.com, errcode answers on oapi.dingtalk.com, access tokens that expire, nextToken
paging, pre-signed download links that expire) without a DingTalk organisation. Both hosts are served on one
port, so a test points DINGTALK_API_URL and DINGTALK_OAPI_URL at the same URL.

Endpoints (the page names of open.dingtalk.com):
    POST /v1.0/oauth2/accessToken                                  获取企业内部应用的accessToken
    GET  /v1.0/workflow/processInstances?processInstanceId=        获取单个审批实例详情
    POST /v1.0/workflow/processInstances/spaces/files/urls/download 下载审批附件 (→ a link to /_oss/<fileId>);
                                                                   a comment's file (operationRecords[].attachments)
                                                                   only with "withCommentAttatchment": true
    POST /v1.0/workflow/processes/instanceIds/query                获取审批实例ID列表
    POST /topapi/v2/user/get?access_token=                         查询用户详情
    GET  /_oss/<fileId>?Expires=&Signature=                        the pre-signed link itself (no token)
    GET  /_photos/<name>                                           a DDPhotoField's (or a comment's) image
v1.0 calls take the token in the header x-acs-dingtalk-access-token. Errors as DingTalk gives them: HTTP 400
invalidClientIdOrSecret, processInstanceNotExist, processInstNotExist, noPermission (a fileId that is not in
the instance's form), invalidProcessCode, invalidMaxResults, invalidEndTime (over 120 days) ...; HTTP 401
InvalidAuthentication for a stale or unknown token; oapi: errcode 40014/42001 (token), 60121 (找不到该用户).
Test-only endpoints:
    POST /_peer/faults   {"rate_limit_next": n (403 Forbidden.AccessDenied.QpsLimitForApi; oapi 90018),
                          "too_many_requests_next": n (HTTP 429), "server_error_next": n (503),
                          "truncate_file": fileId, "truncate_file_count": n (default 1),
                          "expire_links_next": n (links issued already expired), "expire_tokens": true,
                          "photo_host": host (photo URLs in details name this host instead of the peer's;
                          "" again: the peer's), "redirect_photos": host (/_photos answers 302 to the same
                          photo on that host; "": served)}
    GET  /_peer/stats    {"calls": {endpoint: count}, "tokens_issued": n, "downloads_with_token": n}

Data folder: instances/<processInstanceId>.json holds the detail `result` exactly as the API returns it (with
processCode, which the list call filters on); files/<fileId> holds raw bytes and files/<fileId>.json
{"file_name", "content_type"}; photos/<name> holds an image and photos/<name>.json {"content_type"};
users.json maps userid → {"name", ...}. A photo URL in an instance file is written under PHOTO_BASE
(https://dingtalk-peer.invalid/_photos/<name>), which the detail answer turns into this peer's own URL (the
data is written before the peer has a port). Tokens and link signatures travel in headers and query strings,
so uvicorn's access log is off and nothing here logs a URL.

Run: python -m connectors.oa.dingtalk_peer --data DIR --port N --app-key K --secret-env VAR [--token-ttl S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from connectors.oa.callback_crypto import CallbackCrypt, CallbackError
from connectors.oa.peer_kit import TruncatedResponse, add_peer_controls, secret_and_data, serve_on_loopback

__all__ = [
    "PHOTO_BASE",
    "approval_event",
    "main",
    "make_app",
    "open_answer",
    "send_approval_event",
    "send_check_url",
    "send_event",
]

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-acs-dingtalk-access-token"
QPS_LIMIT = "Forbidden.AccessDenied.QpsLimitForApi"
OAPI_QPS_LIMIT = 90018
OAPI_INVALID_TOKEN = 40014
OAPI_TOKEN_EXPIRED = 42001
OAPI_USER_NOT_FOUND = 60121
MAX_RANGE_MS = 120 * 86400 * 1000
MAX_PAGE_SIZE = 20
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FILE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}")
PHOTO_BASE = "https://dingtalk-peer.invalid"  # photo URLs in the data folder: answered as the peer's own


def _error(status: int, code: str, message: str) -> JSONResponse:
    """A v1.0 error: the status and {"code","message","requestid"}."""
    return JSONResponse(
        {"code": code, "message": message, "requestid": secrets.token_hex(8)}, status_code=status
    )


def _oapi_error(errcode: int, errmsg: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg, "request_id": secrets.token_hex(8)})


def _millis(text: object) -> int | None:
    """createTime "2025-03-10T09:30Z" as Unix milliseconds."""
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _comment_file_ids(result: Mapping[str, Any]) -> set[str]:
    """Every fileId attached to an operationRecord (a comment's, an approver's remark's)."""
    return {
        str(f["fileId"])
        for r in result.get("operationRecords") or []
        if isinstance(r, dict)
        for f in r.get("attachments") or []
        if isinstance(f, dict) and f.get("fileId")
    }


def _file_ids(result: Mapping[str, Any]) -> set[str]:
    """Every fileId of the instance's DDAttachment fields, tables included (values are JSON text)."""
    found: set[str] = set()

    def walk(components: Any) -> None:
        for c in components if isinstance(components, list) else []:
            if not isinstance(c, dict):
                continue
            kind = str(c.get("componentType") or str(c.get("key") or "").split("-")[0])
            value = c.get("value")
            try:
                parsed = json.loads(value) if isinstance(value, str) and value[:1] == "[" else None
            except ValueError:
                parsed = None
            if kind == "DDAttachment" and isinstance(parsed, list):
                found.update(str(f.get("fileId")) for f in parsed if isinstance(f, dict) and f.get("fileId"))
            elif kind == "TableField" and isinstance(parsed, list):
                for row in parsed:
                    walk(row.get("rowValue") if isinstance(row, dict) else None)

    walk(result.get("formComponentValues"))
    return found


class _InstanceStore:
    """instances/<id>.json read on demand, so files a generator adds while the peer runs show up."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, instance_id: str) -> dict[str, Any] | None:
        if not _ID.fullmatch(instance_id):
            return None
        path = self.folder / f"{instance_id}.json"
        if not path.is_file():
            return None
        result = json.loads(path.read_text(encoding="utf-8"))
        return result if isinstance(result, dict) else None

    def summaries(self) -> list[tuple[int, str, str, str]]:
        """(createTime ms, id, processCode, status) of every readable instance, in list order."""
        found = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
                created = _millis(result["createTime"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("skipping unreadable instance file %s", path.name)
                continue
            if created is not None:
                found.append(
                    (created, path.stem, str(result.get("processCode", "")), str(result.get("status")))
                )
        return sorted(found)


class _PeerState:
    """Tokens, link key, injected faults and call counts, shared by the handler threads."""

    def __init__(
        self, app_key: str, app_secret: str, token_ttl: float, link_ttl: int, clock: Callable[[], float]
    ) -> None:
        self.app_key = app_key
        self._secret = app_secret.encode("utf-8")
        self._link_key = secrets.token_bytes(32)
        self.token_ttl = token_ttl
        self.link_ttl = link_ttl
        self.clock = clock
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry on `clock`; expired ones kept to answer 401
        self.current: str | None = None
        self.tokens_issued = 0
        self.downloads_with_token = 0
        self.calls: Counter[str] = Counter()
        self.rate_limit_next = 0
        self.too_many_requests_next = 0
        self.server_error_next = 0
        self.expire_links_next = 0
        self.truncate_file: Counter[str] = Counter()
        self.photo_host = ""  # photo URLs name this host instead of the peer's
        self.redirect_photos = ""  # /_photos answers 302 to this host

    def credentials_match(self, app_key: object, app_secret: object) -> bool:
        if not isinstance(app_key, str) or not isinstance(app_secret, str):
            return False
        key_ok = hmac.compare_digest(app_key.encode("utf-8"), self.app_key.encode("utf-8"))
        return hmac.compare_digest(app_secret.encode("utf-8"), self._secret) and key_ok

    def issue_token(self) -> tuple[str, int]:
        """Within its validity DingTalk hands out the same token again; after expiry, a new one."""
        with self.lock:
            now = self.clock()
            if self.current is not None and self.tokens[self.current] > now:
                return self.current, max(1, math.ceil(self.tokens[self.current] - now))
            token = secrets.token_hex(16)
            self.tokens[token] = now + self.token_ttl
            self.current = token
            self.tokens_issued += 1
            return token, max(1, math.ceil(self.token_ttl))

    def token_state(self, token: str | None) -> str:
        """ "ok", "missing", "unknown" or "expired"."""
        if not token:
            return "missing"
        with self.lock:
            expiry = self.tokens.get(token)
            if expiry is None:
                return "unknown"
            return "ok" if expiry > self.clock() else "expired"

    def gate(self, endpoint: str, kind: str) -> Response | None:
        """Count the call and apply an injected fault first, as an overloaded gateway would. `kind`: "api",
        "oapi" or "oss" (the file host: only server errors reach it)."""
        with self.lock:
            self.calls[endpoint] += 1
            if self.server_error_next > 0:
                self.server_error_next -= 1
                return PlainTextResponse("Service Unavailable", status_code=503)
            if kind == "oss":
                return None
            if self.too_many_requests_next > 0:
                self.too_many_requests_next -= 1
                return PlainTextResponse("Too Many Requests", status_code=429, headers={"Retry-After": "0"})
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                if kind == "oapi":
                    return _oapi_error(OAPI_QPS_LIMIT, "应用调用该接口的频率超过限制")
                return _error(403, QPS_LIMIT, "接口调用过于频繁")
        return None

    def apply_faults(self, faults: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            for name in (
                "rate_limit_next",
                "too_many_requests_next",
                "server_error_next",
                "expire_links_next",
            ):
                if name in faults:
                    value = faults[name]
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{name} must be a non-negative integer")
                    setattr(self, name, value)
            file_id = faults.get("truncate_file")
            if file_id is not None:
                count = faults.get("truncate_file_count", 1)
                if not isinstance(file_id, str) or isinstance(count, bool) or not isinstance(count, int):
                    raise ValueError("truncate_file must be a fileId and truncate_file_count an integer")
                self.truncate_file[file_id] = max(0, count)
            for name in ("photo_host", "redirect_photos"):
                if name in faults:
                    host = faults[name]
                    if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9.-]{0,253}", host):
                        raise ValueError(f"{name} must be a host name, or empty")
                    setattr(self, name, host)
            if faults.get("expire_tokens"):
                now = self.clock()
                self.tokens = dict.fromkeys(self.tokens, now)
                self.current = None
            return {
                "rate_limit_next": self.rate_limit_next,
                "too_many_requests_next": self.too_many_requests_next,
                "server_error_next": self.server_error_next,
                "expire_links_next": self.expire_links_next,
                "truncate_file": {k: v for k, v in self.truncate_file.items() if v > 0},
                "photo_host": self.photo_host,
                "redirect_photos": self.redirect_photos,
            }

    def take_truncation(self, file_id: str) -> bool:
        with self.lock:
            if self.truncate_file[file_id] > 0:
                self.truncate_file[file_id] -= 1
                return True
            return False

    # -- pre-signed links ------------------------------------------------------------------------
    def link_query(self, file_id: str) -> str:
        with self.lock:
            expired = self.expire_links_next > 0
            self.expire_links_next -= 1 if expired else 0
        expires = int(time.time()) + (-1 if expired else self.link_ttl)
        return f"Expires={expires}&Signature={self._sign(file_id, expires)}"

    def link_refusal(self, file_id: str, expires: str, signature: str) -> str | None:
        """None for a good link; else the OSS-style error code."""
        if not expires.isdigit() or not hmac.compare_digest(
            self._sign(file_id, int(expires)).encode(), signature.encode("utf-8", "replace")
        ):
            return "SignatureDoesNotMatch"
        return "AccessDenied" if int(expires) < time.time() else None

    def _sign(self, file_id: str, expires: int) -> str:
        return hmac.new(self._link_key, f"{file_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _oss_error(code: str, message: str) -> Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status_code=403, media_type="application/xml")


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def make_app(
    data_dir: Path,
    *,
    app_key: str,
    app_secret: str,
    token_ttl: float = 7200,
    link_ttl: int = 900,
    faults: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The peer as an ASGI app. `faults` takes the keys of POST /_peer/faults; `link_ttl` is the life of a
    download link (下载审批附件: 15 minutes); `clock` lets in-process tests expire tokens without sleeping."""
    if not app_key or not app_secret:
        raise ValueError("the DingTalk peer needs an app key and an app secret")
    state = _PeerState(app_key, app_secret, token_ttl, link_ttl, clock)
    if faults:
        state.apply_faults(faults)
    instances = _InstanceStore(Path(data_dir) / "instances")
    files_dir = Path(data_dir) / "files"
    photos_dir = Path(data_dir) / "photos"
    app = FastAPI(title="DingTalk approval peer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.peer = state

    def on_host(request: Request, host: str) -> str:
        """This peer's base URL, or the same scheme and port on `host`."""
        base = str(request.base_url).rstrip("/")
        if not host:
            return base
        parts = urlsplit(base)
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

    def denied(request: Request) -> Response | None:
        if state.token_state(request.headers.get(TOKEN_HEADER)) != "ok":
            return _error(401, "InvalidAuthentication", "不合法的access_token")
        return None

    @app.post("/v1.0/oauth2/accessToken")
    async def access_token(request: Request) -> Response:
        if fault := state.gate("accessToken", "api"):
            return fault
        body = await _json_body(request)
        if body is None:
            return _error(400, "invalidParameter", "the body is not a JSON object")
        if not state.credentials_match(body.get("appKey"), body.get("appSecret")):
            return _error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token, expire_in = state.issue_token()
        return JSONResponse({"accessToken": token, "expireIn": expire_in})

    @app.get("/v1.0/workflow/processInstances")
    async def process_instance(request: Request) -> Response:
        if fault := state.gate("processInstances", "api"):
            return fault
        if refusal := denied(request):
            return refusal
        instance_id = request.query_params.get("processInstanceId", "")
        if not instance_id:
            return _error(400, "invalidParameter", "获取单个审批实例详情参数错误")
        result = instances.get(instance_id)
        if result is None:
            return _error(400, "processInstanceNotExist", "审批实例不存在")
        answer = JSONResponse({"success": True, "result": result}).body
        photos = on_host(request, state.photo_host)
        return Response(answer.replace(PHOTO_BASE.encode(), photos.encode()), media_type="application/json")

    @app.post("/v1.0/workflow/processInstances/spaces/files/urls/download")
    async def download_url(request: Request) -> Response:
        if fault := state.gate("files/urls/download", "api"):
            return fault
        if refusal := denied(request):
            return refusal
        body = await _json_body(request)
        if body is None:
            return _error(400, "invalidParameter", "下载审批附件参数错误")
        instance_id, file_id = body.get("processInstanceId"), body.get("fileId")
        if not isinstance(instance_id, str) or not instance_id:
            return _error(400, "invalidProcessInstanceId", "实例id不能为空")
        if not isinstance(file_id, str) or not file_id:
            return _error(400, "invalidFileId", "审批附件fileId不能为空")
        result = instances.get(instance_id)
        if result is None:
            return _error(400, "processInstNotExist", "审批实例不存在")
        # 是否包含评论中的附件, 默认忽略评论中附件: a comment's file is asked for with the flag, or refused.
        with_comments = body.get("withCommentAttatchment") is True
        if file_id not in _file_ids(result) | (_comment_file_ids(result) if with_comments else set()):
            return _error(400, "noPermission", "无访问权限")
        if (
            not _FILE_ID.fullmatch(file_id)
            or file_id.endswith(".json")
            or not (files_dir / file_id).is_file()
        ):
            return _error(
                400,
                "hsfIntegrationErrorCspaceDentryServiceGenerateDownloadPresignedUrl",
                "产生文件下载的链接失败",
            )
        uri = (
            f"{str(request.base_url).rstrip('/')}/_oss/{quote(file_id, safe='')}?{state.link_query(file_id)}"
        )
        return JSONResponse(
            {"success": True, "result": {"spaceId": 3996960664, "fileId": file_id, "downloadUri": uri}}
        )

    def file_host(endpoint: str, request: Request) -> Response | None:
        """A file host's call: an injected server error first; no token is needed, and one that arrives
        anyway is counted (it must not)."""
        if fault := state.gate(endpoint, "oss"):
            return fault
        if request.headers.get(TOKEN_HEADER):
            with state.lock:
                state.downloads_with_token += 1
        return None

    def stored(folder: Path, name: str) -> tuple[bytes, dict[str, str]] | None:
        """<folder>/<name> with the headers of <name>.json's content_type; None for no such file."""
        path, meta_path = folder / name, folder / f"{name}.json"
        if not _FILE_ID.fullmatch(name) or name.endswith(".json") or not path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        return path.read_bytes(), {
            "content-type": str(meta.get("content_type") or "application/octet-stream")
        }

    @app.get("/_oss/{file_id}")
    async def oss_object(file_id: str, request: Request) -> Response:
        """The pre-signed link itself."""
        if fault := file_host("oss", request):
            return fault
        refusal = state.link_refusal(
            file_id, request.query_params.get("Expires", ""), request.query_params.get("Signature", "")
        )
        if refusal == "AccessDenied":
            return _oss_error(refusal, "Request has expired.")
        if refusal:
            return _oss_error(refusal, "The request signature we calculated does not match.")
        found = stored(files_dir, file_id)
        if found is None:
            return Response(status_code=404)
        content, headers = found
        if state.take_truncation(file_id):
            return TruncatedResponse(content, headers)
        return Response(content=content, headers=headers)

    @app.get("/_photos/{name}")
    async def photo(name: str, request: Request) -> Response:
        """An image a form or a comment links to: a plain URL, not signed."""
        if fault := file_host("photos", request):
            return fault
        if state.redirect_photos:
            return Response(
                status_code=302,
                headers={"location": f"{on_host(request, state.redirect_photos)}/_photos/{quote(name)}"},
            )
        found = stored(photos_dir, name)
        if found is None:
            return Response(status_code=404)
        return Response(content=found[0], headers=found[1])

    @app.post("/v1.0/workflow/processes/instanceIds/query")
    async def instance_ids(request: Request) -> Response:
        if fault := state.gate("instanceIds/query", "api"):
            return fault
        if refusal := denied(request):
            return refusal
        body = await _json_body(request)
        if body is None:
            return _error(400, "invalidParameter", "the body is not a JSON object")
        return _list_instances(instances, body)

    @app.post("/topapi/v2/user/get")
    async def user_get(request: Request) -> Response:
        """查询用户详情: the name behind a userid (approvals name people by userid only)."""
        if fault := state.gate("user/get", "oapi"):
            return fault
        token = state.token_state(request.query_params.get("access_token"))
        if token == "expired":
            return _oapi_error(OAPI_TOKEN_EXPIRED, "access_token超时")
        if token != "ok":
            return _oapi_error(OAPI_INVALID_TOKEN, "不合法的access_token")
        body = await _json_body(request) or {}
        users_file = Path(data_dir) / "users.json"
        users = json.loads(users_file.read_text(encoding="utf-8")) if users_file.is_file() else {}
        userid = body.get("userid")
        user = users.get(userid) if isinstance(userid, str) else None
        if not isinstance(user, dict):
            return _oapi_error(OAPI_USER_NOT_FOUND, "找不到该用户")
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "result": {"userid": userid, **user},
                "request_id": secrets.token_hex(8),
            }
        )

    def stats() -> dict[str, Any]:
        with state.lock:
            return {
                "calls": dict(state.calls),
                "tokens_issued": state.tokens_issued,
                "downloads_with_token": state.downloads_with_token,
            }

    add_peer_controls(app, state.apply_faults, stats)
    return app


def _list_instances(instances: _InstanceStore, body: Mapping[str, Any]) -> JSONResponse:
    """instanceIds/query: one process code, createTime in [startTime, endTime] (≤ 120 days), statuses ORed,
    ordered by (createTime, id); nextToken is the offset of the next page, absent on the last."""
    code = body.get("processCode")
    if not isinstance(code, str) or not code:
        return _error(400, "invalidProcessCode", "审批模板processCode不能为空")
    start = body.get("startTime")
    if isinstance(start, bool) or not isinstance(start, int):
        return _error(400, "invalidInstanceListIdsStartTime", "获取审批实例ID列表，审批实例开始时间不能为空")
    end = body.get("endTime", int(time.time() * 1000))
    if isinstance(end, bool) or not isinstance(end, int) or end < start or end - start > MAX_RANGE_MS:
        return _error(
            400, "invalidEndTime", "审批实例结束时间不能小于开始时间；且查询时间范围不能超过120天。"
        )
    token = body.get("nextToken")
    offset = int(token) if isinstance(token, str) and token.isdigit() else token
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return _error(400, "invalidNextToken", "获取审批实例ID列表，分页查询的游标不能为空")
    size = body.get("maxResults")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
        return _error(400, "invalidMaxResults", "获取审批实例ID列表，分页参数非法，每页大小，最多传20。")
    statuses = body.get("statuses") or []
    if not isinstance(statuses, list):
        return _error(400, "invalidParameter", "statuses must be a list")
    matches = [
        instance_id
        for created, instance_id, process_code, status in instances.summaries()
        if process_code == code and start <= created <= end and (not statuses or status in statuses)
    ]
    page = matches[offset : offset + size]
    result: dict[str, Any] = {"list": page}
    if offset + size < len(matches):
        result["nextToken"] = str(offset + size)
    return JSONResponse({"success": True, "result": result})


# --- events DingTalk pushes to the hub ------------------------------------------------------------------


def approval_event(
    *,
    process_instance_id: str,
    type: str,
    result: str,
    process_code: str,
    business_id: str,
    corp_id: str = "ding5a1f7e3c9d2b4e60",
    title: str = "报销",
    staff_id: str = "",
    create_time: int | None = None,
    finish_time: int | None = None,
) -> dict[str, Any]:
    """The decrypted JSON of a bpms_instance_change HTTP push (审批实例开始、结束、终止、删除): times in ms; no
    `result` for a terminate, as DingTalk sends it."""
    now = int(time.time() * 1000)
    event: dict[str, Any] = {
        "EventType": "bpms_instance_change",
        "EventTime": now,
        "CorpId": corp_id,
        "BizId": str(now),
        "eventId": secrets.token_hex(16),
        "processInstanceId": process_instance_id,
        "createTime": create_time if create_time is not None else now - 3_600_000,
        "processCode": process_code,
        "businessId": business_id,
        "type": type,
        "title": title,
        "staffId": staff_id,
        "url": "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm",
    }
    if type == "finish":
        event["finishTime"] = finish_time if finish_time is not None else now
    if type != "terminate" and result:
        event["result"] = result
    return event


def open_answer(crypt: CallbackCrypt, answer: Mapping[str, Any]) -> str:
    """The text inside a receiver's answer {msg_signature, timeStamp, nonce, encrypt}; signature first."""
    try:
        return crypt.verify_and_decrypt(
            str(answer["msg_signature"]),
            str(answer["timeStamp"]),
            str(answer["nonce"]),
            str(answer["encrypt"]),
        )
    except KeyError as exc:
        raise CallbackError("bad answer", f"the answer has no {exc.args[0]}") from None


def send_event(
    url: str,
    crypt: CallbackCrypt,
    event: Mapping[str, Any],
    *,
    timeout: float = 5,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST `event` sealed as DingTalk does (JSON {"encrypt"}, signature, timestamp and nonce in the query). A
    200 answer must be the encrypted "success" (DingTalk retries otherwise): CallbackError when it is not."""
    timestamp, nonce = str(int(time.time() * 1000)), secrets.token_hex(4)
    encrypt, signature = crypt.seal(json.dumps(event, ensure_ascii=False), timestamp=timestamp, nonce=nonce)
    response = (session or requests).post(
        url,
        params={"signature": signature, "timestamp": timestamp, "nonce": nonce},
        json={"encrypt": encrypt},
        timeout=timeout,
    )
    if response.status_code == 200:
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise CallbackError("bad answer", "the receiver's answer is not JSON") from None
        if not isinstance(answer, dict) or open_answer(crypt, answer) != "success":
            raise CallbackError("bad answer", "the receiver's answer is not the encrypted success")
    return response


def send_approval_event(
    url: str,
    crypt: CallbackCrypt,
    *,
    app_key: str,
    process_instance_id: str,
    type: str,
    result: str,
    process_code: str,
    business_id: str,
    session: requests.Session | None = None,
    timeout: float = 5,
) -> requests.Response:
    """A bpms_instance_change push for one instance, sealed for `app_key` (the receive id of an 企业内部应用's
    事件订阅); see send_event for the answer check."""
    if app_key != crypt.receive_id:
        raise ValueError("the crypt is not the app key's: its receive id differs")
    event = approval_event(
        process_instance_id=process_instance_id,
        type=type,
        result=result,
        process_code=process_code,
        business_id=business_id,
    )
    return send_event(url, crypt, event, timeout=timeout, session=session)


def send_check_url(url: str, crypt: CallbackCrypt, *, timeout: float = 5) -> requests.Response:
    """DingTalk's check of a request URL: a sealed {"EventType":"check_url"} that must be answered with the
    encrypted "success"."""
    return send_event(url, crypt, {"EventType": "check_url"}, timeout=timeout)


# --- command line --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Bind first, then print the URL, then serve: the printed line is true the moment it appears, and
    --port 0 picks a free port."""
    parser = argparse.ArgumentParser(
        prog="python -m connectors.oa.dingtalk_peer", description="Local DingTalk approval API peer."
    )
    parser.add_argument("--data", type=Path, required=True, help="data folder (instances/, files/)")
    parser.add_argument("--port", type=int, required=True, help="loopback port, 0 for any free one")
    parser.add_argument("--app-key", required=True)
    parser.add_argument(
        "--secret-env", required=True, help="name of the environment variable with the app secret"
    )
    parser.add_argument("--token-ttl", type=float, default=7200, help="access token lifetime in seconds")
    parser.add_argument("--link-ttl", type=int, default=900, help="download link lifetime in seconds")
    args = parser.parse_args(argv)
    secret = secret_and_data("dingtalk peer", args.secret_env, args.data)
    if secret is None:
        return 2

    app = make_app(
        args.data, app_key=args.app_key, app_secret=secret, token_ttl=args.token_ttl, link_ttl=args.link_ttl
    )
    return serve_on_loopback(app, args.port, "dingtalk peer")


if __name__ == "__main__":
    sys.exit(main())
