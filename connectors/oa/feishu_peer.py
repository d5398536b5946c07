"""A local HTTP peer that speaks Feishu's (飞书) server API for approvals, for tests and the demo.

Why: the hub's Feishu connector must be exercised over real HTTP against the real contract (4xx answers with a
JSON code, tenant access tokens that expire, page_token paging, pre-signed attachment links fetched without the
token) without a Feishu tenant.

Endpoints (the page names of open.feishu.cn):
    POST /open-apis/auth/v3/tenant_access_token/internal   自建应用获取 tenant_access_token
    GET  /open-apis/approval/v4/instances/{instance_code}  获取单个审批实例详情
    GET  /open-apis/approval/v4/instances                  批量获取审批实例 ID (approval_code, start/end_time)
    GET  /open-apis/contact/v3/users/{user_id}             获取单个用户信息
    GET  /_files/{file_id}?sig=                            an attachmentV2 link itself (no token)
Errors as Feishu gives them: HTTP 400 code 10014 (app secret invalid), 10003 (unknown app id), 1390003
(instance code not found), 1390001 (param is invalid); HTTP 400 code 99991663 for an invalid or expired token;
HTTP 400 code 99991400 for the rate limit; 404 code 41050 for an unknown user.
Test-only endpoints:
    POST /_peer/faults   {"rate_limit_next": n (code 99991400), "too_many_requests_next": n (HTTP 429),
                          "server_error_next": n (503), "truncate_file": file_id, "expire_tokens": true}
    GET  /_peer/stats    {"calls": {endpoint: count}, "tokens_issued": n, "downloads_with_token": n}

Data folder: instances/<instance_code>.json holds the detail `data`; in its `form` (JSON text) an attachmentV2
value lists "file:<file_id>", served as the link to /_files/<file_id> (signed with the peer's own key, the same
link every time, so the detail answer is the same bytes every time); files/<file_id> holds raw bytes and
files/<file_id>.json {"content_type"}; users.json maps user_id → {"name", ...}. Tokens travel in headers, so
uvicorn's access log is off and nothing here logs a URL or a header.

Run: python -m connectors.oa.feishu_peer --data DIR --port N --app-id ID --secret-env VAR [--token-ttl S]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from connectors.oa.callback_crypto import feishu_encrypt, feishu_signature
from connectors.oa.peer_kit import TruncatedResponse, add_peer_controls, secret_and_data, serve_on_loopback

__all__ = ["approval_event", "main", "make_app", "seal", "send_event", "url_verification"]

_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_PAGE_SIZE = 100


def _error(status: int, code: int, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


class _PeerState:
    """Tokens, link key, injected faults and call counts, shared by the handler threads."""

    def __init__(self, app_id: str, app_secret: str, token_ttl: float) -> None:
        self.app_id = app_id
        self._secret = app_secret.encode("utf-8")
        self.link_key = secrets.token_bytes(32)
        self.token_ttl = token_ttl
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}
        self.current: str | None = None
        self.tokens_issued = 0
        self.downloads_with_token = 0
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.truncate: Counter[str] = Counter()

    def credentials(self, app_id: object, app_secret: object) -> int:
        """0, or the code Feishu answers: 10003 for an unknown app id, 10014 for a wrong secret."""
        if not isinstance(app_id, str) or not hmac.compare_digest(app_id.encode(), self.app_id.encode()):
            return 10003
        if not isinstance(app_secret, str) or not hmac.compare_digest(app_secret.encode(), self._secret):
            return 10014
        return 0

    def issue_token(self) -> tuple[str, int]:
        """Within its validity Feishu hands out the same token again; after expiry, a new one."""
        with self.lock:
            now = time.monotonic()
            if self.current is not None and self.tokens[self.current] > now:
                return self.current, max(1, math.ceil(self.tokens[self.current] - now))
            token = "t-" + secrets.token_hex(20)
            self.tokens[token] = now + self.token_ttl
            self.current = token
            self.tokens_issued += 1
            return token, max(1, math.ceil(self.token_ttl))

    def token_ok(self, authorization: str | None) -> bool:
        token = (authorization or "").removeprefix("Bearer ").strip()
        with self.lock:
            return self.tokens.get(token, 0.0) > time.monotonic()

    def gate(self, endpoint: str, *, file_host: bool = False) -> Response | None:
        """Count the call and apply an injected fault first, as an overloaded gateway would."""
        with self.lock:
            self.calls[endpoint] += 1
            if self.faults["server_error_next"] > 0:
                self.faults["server_error_next"] -= 1
                return PlainTextResponse("Service Unavailable", status_code=503)
            if file_host:
                return None
            if self.faults["too_many_requests_next"] > 0:
                self.faults["too_many_requests_next"] -= 1
                return PlainTextResponse("Too Many Requests", status_code=429, headers={"Retry-After": "0"})
            if self.faults["rate_limit_next"] > 0:
                self.faults["rate_limit_next"] -= 1
                return _error(400, 99991400, "request trigger frequency limit")
        return None

    def apply(self, faults: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            for name in ("rate_limit_next", "too_many_requests_next", "server_error_next"):
                if name in faults:
                    value = faults[name]
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{name} must be a non-negative integer")
                    self.faults[name] = value
            if isinstance(faults.get("truncate_file"), str):
                self.truncate[faults["truncate_file"]] += 1
            if faults.get("expire_tokens"):
                self.tokens = dict.fromkeys(self.tokens, 0.0)
                self.current = None
            return dict(self.faults)

    def sign(self, file_id: str) -> str:
        return hmac.new(self.link_key, file_id.encode(), hashlib.sha256).hexdigest()


def _linked(data: dict[str, Any], base_url: str, state: _PeerState) -> dict[str, Any]:
    """The detail with every "file:<id>" of its form's attachmentV2 values as a signed link."""

    def walk(widgets: Any) -> Any:
        for w in widgets if isinstance(widgets, list) else []:
            if not isinstance(w, dict):
                continue
            if w.get("type") == "fieldList":
                for row in w.get("value") or []:
                    walk(row)
            elif w.get("type") == "attachmentV2" and isinstance(w.get("value"), list):
                w["value"] = [
                    f"{base_url}/_files/{v[5:]}?sig={state.sign(v[5:])}"
                    if isinstance(v, str) and v.startswith("file:")
                    else v
                    for v in w["value"]
                ]
        return widgets

    if isinstance(data.get("form"), str):
        data = {**data, "form": json.dumps(walk(json.loads(data["form"])), ensure_ascii=False)}
    return data


def make_app(data_dir: Path, *, app_id: str, app_secret: str, token_ttl: float = 7200) -> FastAPI:
    """The peer as an ASGI app."""
    if not app_id or not app_secret:
        raise ValueError("the Feishu peer needs an app id and an app secret")
    state = _PeerState(app_id, app_secret, token_ttl)
    data_dir = Path(data_dir)
    app = FastAPI(title="Feishu approval peer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.peer = state

    def instance(code: str) -> dict[str, Any] | None:
        path = data_dir / "instances" / f"{code}.json"
        if not _CODE.fullmatch(code) or not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None

    def denied(request: Request) -> Response | None:
        if not state.token_ok(request.headers.get("Authorization")):
            return _error(
                400,
                99991663,
                "Invalid access token for authorization. Please make a new request with token attached.",
            )
        return None

    @app.post("/open-apis/auth/v3/tenant_access_token/internal")
    async def tenant_access_token(request: Request) -> Response:
        if fault := state.gate("tenant_access_token"):
            return fault
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _error(400, 10003, "invalid param")
        code = state.credentials(body.get("app_id"), body.get("app_secret"))
        if code:
            return _error(400, code, "app secret invalid" if code == 10014 else "invalid param")
        token, expire = state.issue_token()
        return JSONResponse({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire})

    @app.get("/open-apis/approval/v4/instances/{instance_code}")
    async def instance_get(instance_code: str, request: Request) -> Response:
        if fault := state.gate("instances/get"):
            return fault
        if refusal := denied(request):
            return refusal
        data = instance(instance_code)
        if data is None:
            return _error(400, 1390003, "instance code not found")
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"code": 0, "msg": "success", "data": _linked(data, base, state)})

    @app.get("/open-apis/approval/v4/instances")
    async def instance_list(request: Request) -> Response:
        if fault := state.gate("instances/list"):
            return fault
        if refusal := denied(request):
            return refusal
        q = request.query_params
        code, start, end = q.get("approval_code", ""), q.get("start_time", ""), q.get("end_time", "")
        size, token = q.get("page_size", "100"), q.get("page_token", "0") or "0"
        if not code or not start.isdigit() or not end.isdigit() or not size.isdigit() or not token.isdigit():
            return _error(400, 1390001, "param is invalid")
        if not 1 <= int(size) <= MAX_PAGE_SIZE:
            return _error(400, 1390001, "param is invalid")
        found = []
        for path in sorted((data_dir / "instances").glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("approval_code") == code and int(start) <= int(data.get("start_time", -1)) <= int(
                end
            ):
                found.append((int(data["start_time"]), path.stem))
        codes = [c for _, c in sorted(found)]
        offset, size_n = int(token), int(size)
        more = offset + size_n < len(codes)
        page = {"instance_code_list": codes[offset : offset + size_n], "has_more": more}
        if more:
            page["page_token"] = str(offset + size_n)
        return JSONResponse({"code": 0, "msg": "success", "data": page})

    @app.get("/open-apis/contact/v3/users/{user_id}")
    async def user_get(user_id: str, request: Request) -> Response:
        if fault := state.gate("users/get"):
            return fault
        if refusal := denied(request):
            return refusal
        users_file = data_dir / "users.json"
        users = json.loads(users_file.read_text(encoding="utf-8")) if users_file.is_file() else {}
        user = users.get(user_id)
        if not isinstance(user, dict):
            return _error(404, 41050, "no user authority error")
        return JSONResponse({"code": 0, "msg": "success", "data": {"user": {"user_id": user_id, **user}}})

    @app.get("/_files/{file_id}")
    async def file_link(file_id: str, request: Request) -> Response:
        """The pre-signed link: no token is needed; one that arrives anyway is counted (it must not)."""
        if fault := state.gate("files", file_host=True):
            return fault
        if request.headers.get("Authorization"):
            with state.lock:
                state.downloads_with_token += 1
        sig = request.query_params.get("sig", "")
        if not hmac.compare_digest(state.sign(file_id).encode(), sig.encode("utf-8", "replace")):
            return PlainTextResponse("signature does not match", status_code=403)
        path, meta = data_dir / "files" / file_id, data_dir / "files" / f"{file_id}.json"
        if not _FILE.fullmatch(file_id) or file_id.endswith(".json") or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        kind = json.loads(meta.read_text(encoding="utf-8")).get("content_type") if meta.is_file() else None
        headers = {"content-type": str(kind or "application/octet-stream")}
        content = path.read_bytes()
        with state.lock:
            cut = state.truncate[file_id] > 0
            state.truncate[file_id] -= 1 if cut else 0
        return TruncatedResponse(content, headers) if cut else Response(content, headers=headers)

    def stats() -> dict[str, Any]:
        with state.lock:
            return {
                "calls": dict(state.calls),
                "tokens_issued": state.tokens_issued,
                "downloads_with_token": state.downloads_with_token,
            }

    add_peer_controls(app, state.apply, stats)
    return app


# --- events Feishu pushes to the hub ----------------------------------------------------------------------
def approval_event(
    *, instance_code: str, status: str, approval_code: str, token: str, app_id: str = "cli_a1b2c3d4e5f6"
) -> dict[str, Any]:
    """The decrypted JSON of a 审批实例状态变更 push (event v1, `approval_instance`)."""
    now = int(time.time() * 1000)
    return {
        "ts": f"{now / 1000:.7f}",
        "uuid": secrets.token_hex(16),
        "token": token,
        "type": "event_callback",
        "event": {
            "app_id": app_id,
            "tenant_key": "2d520d3b434f175e",
            "type": "approval_instance",
            "approval_code": approval_code,
            "instance_code": instance_code,
            "status": status,
            "operate_time": now,
            "instance_operate_time": str(now),
        },
    }


def url_verification(token: str, challenge: str) -> dict[str, Any]:
    """Feishu's check of a request URL: answered {"challenge"}."""
    return {"challenge": challenge, "token": token, "type": "url_verification"}


def seal(encrypt_key: str, event: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a push as Feishu sends it: {"encrypt"} and the X-Lark-* signature headers."""
    body = json.dumps(
        {"encrypt": feishu_encrypt(encrypt_key, json.dumps(event, ensure_ascii=False))}
    ).encode()
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    return {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": feishu_signature(timestamp, nonce, encrypt_key, body),
        "Content-Type": "application/json",
    }, body


def send_event(
    url: str, encrypt_key: str, event: Mapping[str, Any], *, timeout: float = 5
) -> requests.Response:
    """POST `event` sealed as Feishu does."""
    headers, body = seal(encrypt_key, event)
    return requests.post(url, data=body, headers=headers, timeout=timeout)


# --- command line --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.oa.feishu_peer", description="Local Feishu approval API peer."
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="data folder (instances/, files/, users.json)"
    )
    parser.add_argument("--port", type=int, required=True, help="loopback port, 0 for any free one")
    parser.add_argument("--app-id", required=True)
    parser.add_argument(
        "--secret-env", required=True, help="name of the environment variable with the app secret"
    )
    parser.add_argument(
        "--token-ttl", type=float, default=7200, help="tenant access token lifetime in seconds"
    )
    args = parser.parse_args(argv)
    secret = secret_and_data("feishu peer", args.secret_env, args.data)
    if secret is None:
        return 2
    app = make_app(args.data, app_id=args.app_id, app_secret=secret, token_ttl=args.token_ttl)
    return serve_on_loopback(app, args.port, "feishu peer")


if __name__ == "__main__":
    sys.exit(main())
