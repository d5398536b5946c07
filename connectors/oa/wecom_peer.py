"""A local HTTP peer that speaks WeCom's (企业微信) server API for approvals, for tests and the demo.

Why: the hub's WeCom connector must be exercised over real HTTP against the real contract (errcode/errmsg
with HTTP 200, access tokens that expire, cursor paging, raw media downloads) without a WeCom tenant.

Endpoints (as on qyapi.weixin.qq.com):
    GET  /cgi-bin/gettoken?corpid=&corpsecret=
    POST /cgi-bin/oa/getapprovalinfo?access_token=      {"starttime","endtime","new_cursor","size","filters"}
    POST /cgi-bin/oa/getapprovaldetail?access_token=    {"sp_no"}
    GET  /cgi-bin/media/get?access_token=&media_id=
Test-only endpoints:
    POST /_peer/faults   {"rate_limit_next": n, "server_error_next": n, "truncate_media": media_id,
                          "truncate_media_count": n (default 1), "expire_tokens": true}
    GET  /_peer/stats    {"calls": {endpoint: count}, "tokens_issued": n}

Data folder (written by the sample generator): approvals/<sp_no>.json holds the `info` object exactly as
getapprovaldetail returns it; media/<media_id> holds raw bytes and media/<media_id>.json
{"file_name", "content_type"}.

Error codes: 40001/40013/40014/41001/41002/41004/42001/45009/40007/47001 are WeCom's global codes. For the
approval calls WeCom answers 301025 "get approval param error" to bad parameters; the code it gives for an
unknown sp_no is not documented where we could check (301055 is "no approval auth"), so the peer answers
301025 there too. Secrets (corp secret, access tokens) travel in query strings, so uvicorn's access log is
off and nothing here logs a URL.

Run: python -m connectors.oa.wecom_peer --data DIR --port N --corp-id ID --secret-env VAR [--token-ttl S]
"""

from __future__ import annotations

import argparse
import base64
import binascii
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from lxml import etree

from connectors.oa.callback_crypto import CallbackCrypt, CallbackError, wecom_envelope
from connectors.oa.peer_kit import TruncatedResponse, secret_and_data, serve_on_loopback

__all__ = [
    "ERR_APPROVAL_PARAM",
    "ERR_FREQ_OUT_OF_LIMIT",
    "ERR_NO_APPROVAL",
    "approval_change_xml",
    "content_disposition",
    "main",
    "make_app",
    "send_approval_callback",
    "verify_url",
]

log = logging.getLogger(__name__)

ERR_INVALID_CREDENTIAL = 40001
ERR_INVALID_MEDIA_ID = 40007
ERR_INVALID_CORPID = 40013
ERR_INVALID_ACCESS_TOKEN = 40014
ERR_MISSING_ACCESS_TOKEN = 41001
ERR_MISSING_CORPID = 41002
ERR_MISSING_SECRET = 41004
ERR_ACCESS_TOKEN_EXPIRED = 42001
ERR_FREQ_OUT_OF_LIMIT = 45009
ERR_BAD_JSON = 47001
ERR_APPROVAL_PARAM = 301025
ERR_NO_APPROVAL = ERR_APPROVAL_PARAM  # see the module docstring
ERR_USER_NOT_FOUND = 60111

MAX_RANGE_SECONDS = 31 * 86400
MAX_PAGE_SIZE = 100
FILTER_KEYS = ("template_id", "sp_status", "creator", "department")
_SP_NO = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}")


def _error(errcode: int, errmsg: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg})  # WeCom answers errors with HTTP 200


def content_disposition(file_name: str) -> str:
    """attachment with an ASCII fallback name and the exact UTF-8 name in RFC 5987 form (Chinese names)."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


@dataclass(frozen=True)
class _Summary:
    """What getapprovalinfo filters and orders on, read once per file version."""

    apply_time: int
    sp_no: str
    template_id: str
    sp_status: str
    creator: str
    department: str


class _ApprovalStore:
    """approvals/<sp_no>.json read on demand, so files the generator adds while the peer runs show up."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[Path, tuple[tuple[int, int], _Summary | None]] = {}

    def summaries(self) -> list[_Summary]:
        found: list[_Summary] = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            stat = path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
            cached = self._cache.get(path)
            if cached is None or cached[0] != version:
                cached = (version, self._summarise(path))
                self._cache[path] = cached
            if cached[1] is not None:
                found.append(cached[1])
        return sorted(found, key=lambda s: (s.apply_time, s.sp_no))

    @staticmethod
    def _summarise(path: Path) -> _Summary | None:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            applyer = info.get("applyer") or {}
            return _Summary(
                apply_time=int(info["apply_time"]),
                sp_no=str(info.get("sp_no") or path.stem),
                template_id=str(info.get("template_id", "")),
                sp_status=str(info.get("sp_status", "")),
                creator=str(applyer.get("userid", "")),
                department=str(applyer.get("partyid", "")),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("skipping unreadable approval file %s", path.name)
            return None

    def detail(self, sp_no: str) -> dict[str, Any] | None:
        if not _SP_NO.fullmatch(sp_no):
            return None
        path = self.folder / f"{sp_no}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))


class _PeerState:
    """Tokens, injected faults and call counts, shared by the handler threads."""

    def __init__(self, corp_id: str, corp_secret: str, token_ttl: float, clock: Callable[[], float]) -> None:
        self.corp_id = corp_id
        self._secret = corp_secret.encode("utf-8")
        self.token_ttl = token_ttl
        self.clock = clock
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry on `clock`; expired ones kept to answer 42001
        self.current: str | None = None
        self.tokens_issued = 0
        self.calls: Counter[str] = Counter()
        self.rate_limit_next = 0
        self.server_error_next = 0
        self.truncate_media: Counter[str] = Counter()

    def secret_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8"), self._secret)

    def issue_token(self) -> tuple[str, int]:
        """Within its validity WeCom hands out the same token again; after expiry, a new one."""
        with self.lock:
            now = self.clock()
            if self.current is not None and self.tokens[self.current] > now:
                return self.current, max(1, math.ceil(self.tokens[self.current] - now))
            token = secrets.token_urlsafe(64)
            self.tokens[token] = now + self.token_ttl
            self.current = token
            self.tokens_issued += 1
            return token, max(1, math.ceil(self.token_ttl))

    def check_token(self, token: str | None) -> JSONResponse | None:
        if not token:
            return _error(ERR_MISSING_ACCESS_TOKEN, "access_token missing")
        with self.lock:
            expiry = self.tokens.get(token)
            if expiry is None:
                return _error(ERR_INVALID_ACCESS_TOKEN, "invalid access_token")
            if expiry <= self.clock():
                return _error(ERR_ACCESS_TOKEN_EXPIRED, "access_token expired")
        return None

    def gate(self, endpoint: str) -> Response | None:
        """Count the call and apply an injected fault, before any other processing (as an overloaded
        gateway would)."""
        with self.lock:
            self.calls[endpoint] += 1
            if self.server_error_next > 0:
                self.server_error_next -= 1
                return PlainTextResponse("Service Unavailable", status_code=503)
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return _error(ERR_FREQ_OUT_OF_LIMIT, "api freq out of limit")
        return None

    def apply_faults(self, faults: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            for name in ("rate_limit_next", "server_error_next"):
                if name in faults:
                    value = faults[name]
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{name} must be a non-negative integer")
                    setattr(self, name, value)
            media_id = faults.get("truncate_media")
            if media_id is not None:
                count = faults.get("truncate_media_count", 1)
                if not isinstance(media_id, str) or isinstance(count, bool) or not isinstance(count, int):
                    raise ValueError("truncate_media must be a media id and truncate_media_count an integer")
                self.truncate_media[media_id] = max(0, count)
            if faults.get("expire_tokens"):
                now = self.clock()
                self.tokens = dict.fromkeys(self.tokens, now)
                self.current = None
            return self.fault_view()

    def fault_view(self) -> dict[str, Any]:
        return {
            "rate_limit_next": self.rate_limit_next,
            "server_error_next": self.server_error_next,
            "truncate_media": {k: v for k, v in self.truncate_media.items() if v > 0},
        }

    def take_truncation(self, media_id: str) -> bool:
        with self.lock:
            if self.truncate_media[media_id] > 0:
                self.truncate_media[media_id] -= 1
                return True
            return False


def _unix_seconds(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _encode_cursor(summary: _Summary) -> str:
    raw = f"{summary.apply_time}:{summary.sp_no}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        apply_time, sp_no = raw.split(":", 1)
        return int(apply_time), sp_no
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid new_cursor") from None


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def make_app(
    data_dir: Path,
    *,
    corp_id: str,
    corp_secret: str,
    token_ttl: float = 7200,
    faults: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The peer as an ASGI app. `faults` takes the same keys as POST /_peer/faults; `clock` lets in-process
    tests expire tokens without sleeping."""
    if not corp_id or not corp_secret:
        raise ValueError("the WeCom peer needs a corp id and a corp secret")
    state = _PeerState(corp_id, corp_secret, token_ttl, clock)
    if faults:
        state.apply_faults(faults)
    approvals = _ApprovalStore(Path(data_dir) / "approvals")
    media_dir = Path(data_dir) / "media"
    app = FastAPI(title="WeCom approval peer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.peer = state

    @app.get("/cgi-bin/gettoken")
    async def gettoken(request: Request) -> Response:
        if fault := state.gate("gettoken"):
            return fault
        corpid = request.query_params.get("corpid", "")
        corpsecret = request.query_params.get("corpsecret", "")
        if not corpid:
            return _error(ERR_MISSING_CORPID, "corpid missing")
        if not hmac.compare_digest(corpid.encode("utf-8"), state.corp_id.encode("utf-8")):
            return _error(ERR_INVALID_CORPID, "invalid corpid")
        if not corpsecret:
            return _error(ERR_MISSING_SECRET, "corpsecret missing")
        if not state.secret_matches(corpsecret):
            return _error(ERR_INVALID_CREDENTIAL, "invalid credential")
        token, expires_in = state.issue_token()
        return JSONResponse({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in})

    @app.post("/cgi-bin/oa/getapprovalinfo")
    async def getapprovalinfo(request: Request) -> Response:
        if fault := state.gate("getapprovalinfo"):
            return fault
        if denied := state.check_token(request.query_params.get("access_token")):
            return denied
        body = await _json_body(request)
        if body is None:
            return _error(ERR_BAD_JSON, "data format error: the body is not a JSON object")
        return _list_approvals(approvals, body)

    @app.post("/cgi-bin/oa/getapprovaldetail")
    async def getapprovaldetail(request: Request) -> Response:
        if fault := state.gate("getapprovaldetail"):
            return fault
        if denied := state.check_token(request.query_params.get("access_token")):
            return denied
        body = await _json_body(request)
        if body is None:
            return _error(ERR_BAD_JSON, "data format error: the body is not a JSON object")
        sp_no = body.get("sp_no")
        if not isinstance(sp_no, str) or not sp_no:
            return _error(ERR_APPROVAL_PARAM, "get approval param error: sp_no missing")
        info = approvals.detail(sp_no)
        if info is None:
            return _error(ERR_NO_APPROVAL, "no approval with this sp_no")
        return JSONResponse({"errcode": 0, "errmsg": "ok", "info": info})

    @app.get("/cgi-bin/media/get")
    async def media_get(request: Request) -> Response:
        if fault := state.gate("media/get"):
            return fault
        if denied := state.check_token(request.query_params.get("access_token")):
            return denied
        media_id = request.query_params.get("media_id", "")
        path = media_dir / media_id
        meta_path = media_dir / f"{media_id}.json"
        if (
            not _MEDIA_ID.fullmatch(media_id)
            or media_id.endswith(".json")
            or not path.is_file()
            or not meta_path.is_file()
        ):
            return _error(ERR_INVALID_MEDIA_ID, "invalid media_id")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        content = path.read_bytes()
        headers = {
            "content-type": str(meta.get("content_type") or "application/octet-stream"),
            "content-disposition": content_disposition(str(meta.get("file_name") or media_id)),
        }
        if state.take_truncation(media_id):
            return TruncatedResponse(content, headers)
        return Response(content=content, headers=headers)

    @app.get("/cgi-bin/user/get")
    async def user_get(request: Request) -> Response:
        """读取成员: the name behind a userid (approvals name people by userid only)."""
        if fault := state.gate("user/get"):
            return fault
        if denied := state.check_token(request.query_params.get("access_token")):
            return denied
        users_file = Path(data_dir) / "users.json"
        users = json.loads(users_file.read_text(encoding="utf-8")) if users_file.is_file() else {}
        user = users.get(request.query_params.get("userid", ""))
        if not isinstance(user, dict):
            return _error(ERR_USER_NOT_FOUND, "userid not found")
        return JSONResponse({"errcode": 0, "errmsg": "ok", **user})

    @app.post("/_peer/faults")
    async def set_faults(request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            return JSONResponse(state.apply_faults(body))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/_peer/stats")
    async def stats() -> Response:
        with state.lock:
            return JSONResponse({"calls": dict(state.calls), "tokens_issued": state.tokens_issued})

    return app


def _list_approvals(approvals: _ApprovalStore, body: Mapping[str, Any]) -> JSONResponse:
    """getapprovalinfo: apply_time in [starttime, endtime] (at most 31 days), filters ANDed across keys and
    ORed within one key, ordered by (apply_time, sp_no), keyset cursor."""
    start, end = _unix_seconds(body.get("starttime")), _unix_seconds(body.get("endtime"))
    if start is None or end is None:
        return _error(
            ERR_APPROVAL_PARAM, "get approval param error: starttime and endtime must be unix seconds"
        )
    if end < start:
        return _error(ERR_APPROVAL_PARAM, "get approval param error: endtime is before starttime")
    if end - start > MAX_RANGE_SECONDS:
        return _error(ERR_APPROVAL_PARAM, "get approval param error: the time range exceeds 31 days")
    size = _unix_seconds(body.get("size", MAX_PAGE_SIZE))  # same rule: an int or a digit string
    if size is None or not 1 <= size <= MAX_PAGE_SIZE:
        return _error(ERR_APPROVAL_PARAM, f"get approval param error: size must be 1..{MAX_PAGE_SIZE}")
    wanted: dict[str, set[str]] = {}
    filters = body.get("filters") or []
    if not isinstance(filters, list):
        return _error(ERR_APPROVAL_PARAM, "get approval param error: filters must be a list")
    for item in filters:
        key = item.get("key") if isinstance(item, dict) else None
        if key not in FILTER_KEYS:
            return _error(
                ERR_APPROVAL_PARAM, f"get approval param error: filter key must be one of {FILTER_KEYS}"
            )
        wanted.setdefault(key, set()).add(str(item.get("value", "")))
    after: tuple[int, str] | None = None
    cursor = body.get("new_cursor") or ""
    if cursor:
        try:
            after = _decode_cursor(str(cursor))
        except ValueError:
            return _error(ERR_APPROVAL_PARAM, "get approval param error: invalid new_cursor")
    matches = [
        s
        for s in approvals.summaries()
        if start <= s.apply_time <= end
        and (after is None or (s.apply_time, s.sp_no) > after)
        and all(getattr(s, key) in values for key, values in wanted.items())
    ]
    page = matches[:size]
    next_cursor = _encode_cursor(page[-1]) if len(matches) > size else ""
    return JSONResponse(
        {"errcode": 0, "errmsg": "ok", "sp_no_list": [s.sp_no for s in page], "new_next_cursor": next_cursor}
    )


# --- callbacks WeCom sends to the hub ----------------------------------------------------------------

# sp_status -> StatuChangeEvent of the same transition (1 提单, 2 同意, 3 驳回, 6 撤销, 8 通过后撤销)
_STATUS_EVENT = {1: 1, 2: 2, 3: 3, 4: 6, 6: 8}


def approval_change_xml(
    *,
    corp_id: str,
    agent_id: str,
    sp_no: str,
    sp_status: int,
    sp_name: str,
    template_id: str,
    apply_time: int,
    applyer_userid: str,
    applyer_party: str = "",
    statu_change_event: int | None = None,
    create_time: int | None = None,
) -> str:
    """The decrypted XML of WeCom's sys_approval_change event (without SpRecord/Notifyer/Comments)."""
    event = statu_change_event if statu_change_event is not None else _STATUS_EVENT.get(sp_status)
    if event is None:
        raise ValueError(f"pass statu_change_event: sp_status {sp_status} has no single matching event")

    def add(parent: etree._Element, tag: str, value: str | int) -> etree._Element:
        child = etree.SubElement(parent, tag)
        child.text = str(value) if isinstance(value, int) else etree.CDATA(value)
        return child

    root = etree.Element("xml")
    add(root, "ToUserName", corp_id)
    add(root, "FromUserName", "sys")
    add(root, "CreateTime", int(time.time()) if create_time is None else create_time)
    add(root, "MsgType", "event")
    add(root, "Event", "sys_approval_change")
    add(root, "AgentID", int(agent_id) if agent_id.isdigit() else agent_id)
    info = etree.SubElement(root, "ApprovalInfo")
    add(info, "SpNo", int(sp_no) if sp_no.isdigit() else sp_no)
    add(info, "SpName", sp_name)
    add(info, "SpStatus", int(sp_status))
    add(info, "TemplateId", template_id)
    add(info, "ApplyTime", int(apply_time))
    applyer = etree.SubElement(info, "Applyer")
    add(applyer, "UserId", applyer_userid)
    add(applyer, "Party", applyer_party)
    add(info, "StatuChangeEvent", int(event))
    return etree.tostring(root, encoding="unicode")


def _fresh_timestamp_nonce() -> tuple[str, str]:
    return str(int(time.time())), str(secrets.randbelow(10**10))


def send_approval_callback(
    url: str,
    crypt: CallbackCrypt,
    *,
    corp_id: str,
    agent_id: str,
    sp_no: str,
    sp_status: int,
    sp_name: str,
    template_id: str,
    apply_time: int,
    applyer_userid: str,
    timeout: float = 5,
    applyer_party: str = "",
    statu_change_event: int | None = None,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST a sealed sys_approval_change event to `url` exactly as WeCom does (envelope body, signature in
    the query string). The caller checks the response; `session` keeps one connection for many events."""
    message = approval_change_xml(
        corp_id=corp_id,
        agent_id=agent_id,
        sp_no=sp_no,
        sp_status=sp_status,
        sp_name=sp_name,
        template_id=template_id,
        apply_time=apply_time,
        applyer_userid=applyer_userid,
        applyer_party=applyer_party,
        statu_change_event=statu_change_event,
    )
    timestamp, nonce = _fresh_timestamp_nonce()
    encrypt, signature = crypt.seal(message, timestamp=timestamp, nonce=nonce)
    return (session or requests).post(
        url,
        params={"msg_signature": signature, "timestamp": timestamp, "nonce": nonce},
        data=wecom_envelope(encrypt, to_user=corp_id, agent_id=agent_id),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=timeout,
    )


def verify_url(url: str, crypt: CallbackCrypt, *, timeout: float = 5) -> requests.Response:
    """WeCom's URL verification GET: the receiver must answer with exactly the decrypted echostr."""
    plaintext = str(secrets.randbelow(10**19))
    timestamp, nonce = _fresh_timestamp_nonce()
    echostr, signature = crypt.seal(plaintext, timestamp=timestamp, nonce=nonce)
    response = requests.get(
        url,
        params={"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": echostr},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise CallbackError("url verification failed", f"the receiver answered HTTP {response.status_code}")
    if response.content != plaintext.encode("ascii"):
        raise CallbackError("url verification failed", "the receiver did not echo the decrypted echostr")
    return response


# --- command line --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Bind first, then print the URL, then serve: the printed line is true the moment it appears, and
    --port 0 picks a free port."""
    parser = argparse.ArgumentParser(
        prog="python -m connectors.oa.wecom_peer", description="Local WeCom approval API peer."
    )
    parser.add_argument("--data", type=Path, required=True, help="data folder (approvals/, media/)")
    parser.add_argument("--port", type=int, required=True, help="loopback port, 0 for any free one")
    parser.add_argument("--corp-id", required=True)
    parser.add_argument(
        "--secret-env", required=True, help="name of the environment variable with the secret"
    )
    parser.add_argument("--token-ttl", type=float, default=7200, help="access token lifetime in seconds")
    args = parser.parse_args(argv)
    secret = secret_and_data("wecom peer", args.secret_env, args.data)
    if secret is None:
        return 2

    app = make_app(args.data, corp_id=args.corp_id, corp_secret=secret, token_ttl=args.token_ttl)
    return serve_on_loopback(app, args.port, "wecom peer")


if __name__ == "__main__":
    sys.exit(main())
