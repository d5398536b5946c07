"""Feishu (飞书) server API for approvals (审批): token, instance codes, detail, files, user names.

Contract (open.feishu.cn, 服务端 API; the page names as there):
- 自建应用获取 tenant_access_token: `POST /open-apis/auth/v3/tenant_access_token/internal {"app_id",
  "app_secret"}` → `{"code":0,"tenant_access_token","expire"}` (7200 s); a wrong secret is code 10014 (app
  secret invalid), an unknown app id 10003 (invalid param);
- 获取单个审批实例详情: `GET /open-apis/approval/v4/instances/:instance_id` → `{"code":0,"data":{...}}` with the
  form as JSON text (`form`), the trail (`timeline`), `serial_number` (审批编号) and `status`; an unknown code
  is answered with code 1390003 (instance code not found) or 1390001 (param is invalid);
- 批量获取审批实例 ID: `GET /open-apis/approval/v4/instances?approval_code&start_time&end_time&page_size&
  page_token` → `data.instance_code_list`, `page_token`, `has_more` (no status filter);
- 获取单个用户信息: `GET /open-apis/contact/v3/users/:user_id?user_id_type=user_id` → `data.user.name`;
- attachmentV2 values are pre-signed download links, fetched without the token.
Every call carries `Authorization: Bearer <tenant_access_token>`; errors come as a 4xx status with
`{"code","msg"}`: 99991661/99991663/99991677 mean the token is missing, invalid or expired (fetched again
once); 99991400 (请求频率超限) and HTTP 429 are transient.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import time
from typing import Any
from urllib.parse import quote

import requests

from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.http import HttpClient

ACCEPTED = frozenset({400, 401, 403, 404})  # Feishu answers these with a JSON code the caller reads
BAD_CREDENTIALS = {10003, 10014}
STALE = {99991661, 99991663, 99991677}
RATE_LIMITED = 99991400
NOT_FOUND = {1390001, 1390003}
PAGE_SIZE = 100  # 批量获取审批实例 ID: page_size at most 100
TOKEN_MARGIN = 300  # seconds: a token this close to its end is renewed before use


class ApprovalNotFound(SourceError):
    """The instance code is unknown to Feishu (deleted, or another tenant's)."""


class FeishuApi:
    def __init__(
        self, source_id: str, base_url: str, app_id: str, app_secret: str, *, http: HttpClient | None = None
    ) -> None:
        self.source_id = source_id
        self.app_id = app_id
        self._secret = app_secret
        self.http = http or HttpClient(source_id, base_url)
        self._token: str | None = None
        self._token_until = 0.0
        self._names: dict[str, str] = {}

    def __repr__(self) -> str:  # never the secret or the token
        return f"FeishuApi({self.source_id}, {self.http.base_url}, app {self.app_id})"

    # -- token -------------------------------------------------------------------------------
    def token(self, *, renew: bool = False) -> str:
        if renew or self._token is None or time.monotonic() >= self._token_until:
            path = "/open-apis/auth/v3/tenant_access_token/internal"
            response = self.http.request(
                "POST",
                path,
                json={"app_id": self.app_id, "app_secret": self._secret},
                check=self._transient,
                accept_status=ACCEPTED,
            )
            code = _code(response)
            if code in BAD_CREDENTIALS:
                raise ConfigError(
                    self.source_id,
                    "connection.app_secret",
                    f"Feishu refused the app id and secret (code {code}): "
                    "check connection.app_id and connection.app_secret",
                )
            answer = self._answer(response, path)
            token = answer.get("tenant_access_token")
            if not isinstance(token, str) or not token:
                raise SourceError(f"{self.source_id}: {path}: the answer carries no tenant_access_token")
            self._token = token
            try:
                lifetime = int(answer.get("expire") or 7200)
            except (TypeError, ValueError):
                lifetime = 7200  # an odd lifetime is no reason to fail: the default is Feishu's own
            self._token_until = time.monotonic() + max(lifetime - TOKEN_MARGIN, lifetime / 2)
        assert self._token is not None
        return self._token

    def call(self, path: str, *, params: dict[str, Any] | None = None) -> requests.Response:
        """A GET with the token in its header; a stale token is fetched again once."""
        for renew in (False, True):
            response = self.http.request(
                "GET",
                path,
                params=params,
                headers={"Authorization": f"Bearer {self.token(renew=renew)}"},
                check=self._transient,
                accept_status=ACCEPTED,
            )
            if not renew and _code(response) in STALE:
                continue
            return response
        raise AssertionError("unreachable")

    # -- approvals ---------------------------------------------------------------------------
    def approval_detail(self, instance_code: str) -> tuple[dict[str, Any], bytes]:
        """The instance's `data` and the answer's bytes as received (kept in the package)."""
        path = f"/open-apis/approval/v4/instances/{quote(instance_code, safe='')}"
        where = f"/open-apis/approval/v4/instances (审批实例 {instance_code})"
        response = self.call(path)
        answer = self._answer(response, where, not_found=True)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"{self.source_id}: {where}: the answer has no data")
        if str(data.get("instance_code") or instance_code) != instance_code:
            raise SourceError(f"{self.source_id}: {where}: the answer is another instance")
        return data, response.content

    def file(self, url: str) -> tuple[bytes, str]:
        """An attachmentV2 link's bytes and media type, fetched without the token (the link is its own
        credential); a body shorter than its Content-Length is refused."""
        if not url.startswith(("https://", "http://")):
            raise SourceError(f"{self.source_id}: the attachment value is not an http(s) link")
        response = self.http.request("GET", url, absolute=True)
        content = response.content
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        if length is not None and length.isdigit() and not encoded and int(length) != len(content):
            raise SourceError(f"{self.source_id}: the file came short: {len(content)} of {length} bytes")
        return content, response.headers.get("Content-Type", "").split(";")[0].strip()

    def user_name(self, user_id: str) -> str:
        """The member's name; the user id itself when Feishu does not give it (a member who left)."""
        if not user_id:
            return ""
        if user_id not in self._names:
            path = f"/open-apis/contact/v3/users/{quote(user_id, safe='')}"
            response = self.call(path, params={"user_id_type": "user_id"})
            if response.status_code >= 400 or _code(response) != 0:
                self._names[user_id] = user_id
            else:
                user = (self._answer(response, "/open-apis/contact/v3/users").get("data") or {}).get("user")
                self._names[user_id] = str((user or {}).get("name") or user_id)
        return self._names[user_id]

    def instance_codes(self, approval_code: str, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Instance codes of one approval definition started in [start, end], paged."""
        path = "/open-apis/approval/v4/instances"
        out: list[str] = []
        page_token, seen = "", set()
        while True:
            params = {
                "approval_code": approval_code,
                "start_time": str(_millis(start)),
                "end_time": str(_millis(end)),
                "page_size": str(PAGE_SIZE),
            }
            if page_token:
                params["page_token"] = page_token
            data = self._answer(self.call(path, params=params), f"{path} ({approval_code})").get("data") or {}
            out.extend(str(c) for c in data.get("instance_code_list") or [])
            page_token = str(data.get("page_token") or "")
            if not data.get("has_more") or not page_token or page_token in seen:
                break
            seen.add(page_token)
        return list(dict.fromkeys(out))

    # -- answers -----------------------------------------------------------------------------
    def _transient(self, response: requests.Response) -> None:
        if _code(response) == RATE_LIMITED:
            raise TransientSourceError(
                f"{self.source_id}: Feishu code {RATE_LIMITED}: {_message(response)}", retry_after=1.0
            )

    def _answer(self, response: requests.Response, where: str, *, not_found: bool = False) -> dict[str, Any]:
        """An answer with code 0; any other code is a SourceError naming it (ApprovalNotFound for an
        unknown instance)."""
        try:
            answer = response.json()
        except ValueError:
            raise SourceError(f"{self.source_id}: {where}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise SourceError(f"{self.source_id}: {where}: the answer is not a JSON object")
        code = answer.get("code")
        if code != 0 or response.status_code >= 400:
            message = (
                f"{self.source_id}: {where}: HTTP {response.status_code} code {code}: {_message(response)}"
            )
            if not_found and code in NOT_FOUND:
                raise ApprovalNotFound(message)
            raise SourceError(message)
        return answer


def media_type(name: str, given: str) -> str:
    """The link's Content-Type, unless it says nothing (octet-stream): then the file name's suffix."""
    if given and given != "application/octet-stream":
        return given
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    known = {"ofd": "application/ofd", "pdf": "application/pdf", "xml": "application/xml"}
    return known.get(suffix) or mimetypes.types_map.get("." + suffix) or "application/octet-stream"


def _json(response: requests.Response) -> dict[str, Any]:
    if "json" not in response.headers.get("Content-Type", ""):
        return {}
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _code(response: requests.Response) -> int | None:
    code = _json(response).get("code")
    return code if isinstance(code, int) else None


def _message(response: requests.Response) -> str:
    return " ".join(str(_json(response).get("msg") or "").split())[:200]


def _millis(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)
