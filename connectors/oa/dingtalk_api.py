"""DingTalk (钉钉) server API for OA approvals (OA审批): token, instance ids, detail, files, user names.

Contract (open.dingtalk.com, 服务端API; the page names as there):
- 获取企业内部应用的accessToken: `POST /v1.0/oauth2/accessToken {"appKey","appSecret"}` → `{"accessToken",
  "expireIn"}` (7200 s); a wrong key or secret is HTTP 400 `{"code":"invalidClientIdOrSecret"}`;
- 获取单个审批实例详情: `GET /v1.0/workflow/processInstances?processInstanceId=` → `{"success","result"}` with
  the form (formComponentValues), the trail (operationRecords) and businessId (审批编号); an unknown id is
  HTTP 400 `processInstanceNotExist` (or `processInstanceIdError` for a malformed one);
- 下载审批附件: `POST /v1.0/workflow/processInstances/spaces/files/urls/download` → `result.downloadUri`, a
  pre-signed link valid 15 minutes, fetched without the token header (it is another host's URL). The body's
  `withCommentAttatchment` (DingTalk's spelling; "是否包含评论中的附件，默认忽略评论中附件") is true for a file of
  an operationRecords[].attachments (评论 / 审批意见), false for a DDAttachment field's;
- photos (DDPhotoField values, operationRecords[].images) are plain image URLs in the detail: fetched
  without the token, only from `photo_hosts`, never following a redirect, at most MAX_PHOTO_BYTES, and
  only when the bytes (or, for formats not sniffed, the Content-Type) say image;
- 获取审批实例ID列表: `POST /v1.0/workflow/processes/instanceIds/query`, by process code and start time (at
  most 120 days a call, maxResults ≤ 20, `nextToken` paging, `statuses`);
- 查询用户详情 (oapi): `POST /topapi/v2/user/get?access_token= {"userid"}` → errcode 0 with `result.name`, or
  60121 (找不到该用户) for a member who left.
v1.0 calls carry the token in the `x-acs-dingtalk-access-token` header and answer errors with a 4xx status and
`{"code","message"}`: 401/403 `InvalidAuthentication` means the token is stale (fetched again once); 429 and
`Forbidden.AccessDenied.QpsLimitForApi` / `…QpsLimitForAppkeyAndApi` (调用频次与限流) are transient. oapi answers
HTTP 200 with errcode: 40014/42001 stale token, 90018/90002/-1 transient.

Confirmed from DingTalk's own SDK models (dingtalkworkflow_1_0: GetProcessInstanceResponseBody,
GrantProcessInstanceForDownloadFileRequest) and the 下载审批附件 page: operationRecords[] carry
`attachments: [{fileId, fileName, fileSize (text), fileType, spaceId}]` and `images: [url]`, and the
download body takes `withCommentAttatchment`. Not verified against a live organisation: that a comment's
file asked for without the flag is refused (noPermission, as the peer does), and which hosts serve photos
(static.dingtalk.com in every public sample seen; img.alicdn.com in one, so not trusted by default).
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import requests

from archive_sink.formats import sniff
from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.http import HttpClient, TooLarge, read_at_most

TOKEN_HEADER = "x-acs-dingtalk-access-token"
ACCEPTED = frozenset({400, 401, 403, 404})  # v1.0 answers these with a JSON code the caller reads
STALE = {"InvalidAuthentication"}
TRANSIENT = {"Forbidden.AccessDenied.QpsLimitForApi", "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}
NOT_FOUND = {"processInstanceNotExist", "processInstanceIdError", "processInstNotExist"}
OAPI_STALE = {40014, 42001}
OAPI_TRANSIENT = {-1, 90002, 90018}
OAPI_USER_NOT_FOUND = 60121
MAX_WINDOW = dt.timedelta(days=120)  # instanceIds/query refuses longer ranges
PAGE_SIZE = 20  # instanceIds/query's maximum
TOKEN_MARGIN = 300  # seconds: a token this close to its end is renewed before use
MEDIA_TYPES = {"ofd": "application/ofd", "pdf": "application/pdf", "xml": "application/xml"}
DEFAULT_PHOTO_HOSTS = ("static.dingtalk.com",)  # where DDPhotoField images live (connection.photo_hosts)
MAX_PHOTO_BYTES = 20 * 1024 * 1024  # a phone photo is a few MB; more is not a photo of a receipt
IMAGE_SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/bmp": ".bmp"}


class ApprovalNotFound(SourceError):
    """The instance id is unknown to DingTalk (deleted, or another organisation's)."""


class DingTalkApi:
    def __init__(
        self,
        source_id: str,
        base_url: str,
        oapi_url: str,
        app_key: str,
        app_secret: str,
        *,
        http: HttpClient | None = None,
        oapi_http: HttpClient | None = None,
        photo_hosts: Collection[str] = DEFAULT_PHOTO_HOSTS,
        photo_max_bytes: int = MAX_PHOTO_BYTES,
    ) -> None:
        self.source_id = source_id
        self.app_key = app_key
        self._secret = app_secret
        self.http = http or HttpClient(source_id, base_url)
        # oapi is another host with the same retry rules; one session keeps the connections.
        self.oapi = oapi_http or self._client(oapi_url, self.http.session)
        # Photos: URLs out of form content, so a session of their own that never follows a redirect (an
        # allowed host must not hand the fetch on to another) and reads the body only up to the cap.
        self.photo_hosts = frozenset(h.lower() for h in photo_hosts)
        self.photo_max_bytes = photo_max_bytes
        self.photos = self._client("", _PhotoSession())
        self._token: str | None = None
        self._token_until = 0.0
        self._names: dict[str, str] = {}

    def __repr__(self) -> str:  # never the secret or the token
        return f"DingTalkApi({self.source_id}, {self.http.base_url}, app {self.app_key})"

    def _client(self, base_url: str, session: requests.Session) -> HttpClient:
        """Another host (or kind of URL) with the same retry rules as the v1.0 host."""
        return HttpClient(
            self.source_id,
            base_url,
            timeout=self.http.timeout,
            attempts=self.http.attempts,
            backoff=self.http.backoff,
            session=session,
            sleep=self.http.sleep,
        )

    # -- token -------------------------------------------------------------------------------
    def token(self, *, renew: bool = False) -> str:
        if renew or self._token is None or time.monotonic() >= self._token_until:
            path = "/v1.0/oauth2/accessToken"
            response = self.http.request(
                "POST",
                path,
                json={"appKey": self.app_key, "appSecret": self._secret},
                check=self._transient,
                accept_status=ACCEPTED,
            )
            if response.status_code == 400 and _code(response) == "invalidClientIdOrSecret":
                raise ConfigError(
                    self.source_id,
                    "connection.app_secret",
                    "DingTalk refused the app key and secret (invalidClientIdOrSecret): "
                    "check connection.app_key and connection.app_secret",
                )
            answer = self._answer(response, path, success_field=False)
            token = answer.get("accessToken")
            if not isinstance(token, str) or not token:
                raise SourceError(f"{self.source_id}: {path}: the answer carries no accessToken")
            self._token = token
            lifetime = int(answer.get("expireIn", 7200))
            self._token_until = time.monotonic() + max(lifetime - TOKEN_MARGIN, lifetime / 2)
        assert self._token is not None
        return self._token

    def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> requests.Response:
        """A v1.0 call with the token in its header; a stale token is fetched again once."""
        for renew in (False, True):
            response = self.http.request(
                method,
                path,
                params=params,
                json=json,
                headers={TOKEN_HEADER: self.token(renew=renew)},
                check=self._transient,
                accept_status=ACCEPTED,
            )
            if not renew and response.status_code in (401, 403) and _code(response) in STALE:
                continue
            return response
        raise AssertionError("unreachable")

    def oapi_call(self, path: str, body: dict[str, Any]) -> requests.Response:
        """A POST to the older oapi host: token in the query (never named in errors), errcode answers."""
        for renew in (False, True):
            response = self.oapi.request(
                "POST",
                path,
                params={"access_token": self.token(renew=renew)},
                json=body,
                check=self._oapi_transient,
            )
            if not renew and _errcode(response) in OAPI_STALE:
                continue
            return response
        raise AssertionError("unreachable")

    # -- approvals ---------------------------------------------------------------------------
    def approval_detail(self, instance_id: str) -> tuple[dict[str, Any], bytes]:
        """The instance's `result` and the answer's bytes as received (kept in the package)."""
        path = "/v1.0/workflow/processInstances"
        response = self.call("GET", path, params={"processInstanceId": instance_id})
        answer = self._answer(response, f"{path} (审批实例 {instance_id})", not_found=True)
        result = answer.get("result")
        if not isinstance(result, dict):
            raise SourceError(f"{self.source_id}: {path}: the answer has no result for {instance_id}")
        others = {
            str(t.get("processInstanceId"))
            for t in result.get("tasks") or []
            if isinstance(t, dict) and t.get("processInstanceId")
        }
        if others - {instance_id}:
            raise SourceError(f"{self.source_id}: {path}: the answer is not instance {instance_id}")
        return result, response.content

    def file(self, instance_id: str, file: dict[str, Any]) -> tuple[bytes, str, str]:
        """A file of a DDAttachment field, or of a comment when `file["comment"]` is set: (bytes, file name,
        media type). The link is asked for, then fetched without the token; a link that expired before use
        is asked for again once. A body that is not `fileSize` bytes long is refused."""
        file_id = str(file["fileId"])
        path = "/v1.0/workflow/processInstances/spaces/files/urls/download"
        where = f"{path} (file {file_id[:24]})"
        comment = bool(file.get("comment"))
        body = {"processInstanceId": instance_id, "fileId": file_id, "withCommentAttatchment": comment}
        for again in (False, True):
            answer = self._answer(self.call("POST", path, json=body), where)
            uri = (answer.get("result") or {}).get("downloadUri")
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise SourceError(f"{self.source_id}: {where}: the answer carries no http(s) downloadUri")
            response = self.http.request(
                "GET", uri, absolute=True, accept_status=() if again else frozenset({403})
            )
            if response.status_code != 403:
                break
        content = response.content
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        if length is not None and length.isdigit() and not encoded and int(length) != len(content):
            raise SourceError(
                f"{self.source_id}: {where}: the file came short: {len(content)} of {length} bytes"
            )
        size = str(file.get("fileSize", "")).strip()
        if size.isdigit() and int(size) != len(content):
            raise SourceError(
                f"{self.source_id}: {where}: the file is {len(content)} bytes, the form says {size} (fileSize)"
            )
        return content, file_name(file), _media_type(response, str(file.get("fileType") or ""))

    def photo(self, url: str, name: str) -> tuple[bytes, str, str]:
        """An image a form or a comment links to: (bytes, `name` with the image's suffix, media type). Only
        from `photo_hosts` (anything else is refused naming the host, before any request), without the
        token, no redirect followed, at most `photo_max_bytes`, and an image by its bytes or its type."""
        host = photo_host(url, self.photo_hosts)
        where = f"photo on {host}"
        body: list[bytes] = []

        def read_capped(response: requests.Response) -> None:
            body.clear()
            if response.is_redirect:
                return
            try:
                body.append(read_at_most(response, self.photo_max_bytes, 64 * 1024))
            except TooLarge as exc:
                raise SourceError(f"{self.source_id}: {where}: {exc}") from None
            except requests.RequestException:  # cut off mid-body: tried again like any dropped transfer
                raise TransientSourceError(f"{self.source_id}: {where}: the photo came short") from None

        response = self.photos.request(
            "GET", url, absolute=True, check=read_capped, headers={"Accept-Encoding": "identity"}
        )
        if response.is_redirect:
            raise SourceError(
                f"{self.source_id}: {where}: HTTP {response.status_code}, a redirect (not followed: photos "
                "are fetched from connection.photo_hosts only)"
            )
        content = b"".join(body)
        kind = _image_type(response, content)
        if kind is None:
            declared = response.headers.get("Content-Type", "").split(";")[0].strip() or "no Content-Type"
            raise SourceError(f"{self.source_id}: {where}: not an image ({declared}, {len(content)} bytes)")
        suffix = IMAGE_SUFFIXES.get(kind) or mimetypes.guess_extension(kind) or ""
        return content, name + suffix, kind

    def user_name(self, userid: str) -> str:
        """The member's name (姓名); the userid itself when DingTalk does not know it (a member who left)."""
        if userid not in self._names:
            path = "/topapi/v2/user/get"
            response = self.oapi_call(path, {"userid": userid})
            if _errcode(response) == OAPI_USER_NOT_FOUND:
                self._names[userid] = userid
            else:
                result = self._oapi_answer(response, path).get("result") or {}
                self._names[userid] = str(result.get("name") or userid)
        return self._names[userid]

    def instance_ids(
        self, start: dt.datetime, end: dt.datetime, process_code: str, statuses: list[str]
    ) -> list[str]:
        """Instance ids of one process code started in [start, end], in windows of at most 120 days, paged."""
        path = "/v1.0/workflow/processes/instanceIds/query"
        out: list[str] = []
        lo = start
        while lo <= end:
            hi = min(end, lo + MAX_WINDOW - dt.timedelta(milliseconds=1))
            next_token: int | str = 0
            seen: set[str] = set()
            while True:
                body = {
                    "processCode": process_code,
                    "startTime": _millis(lo),
                    "endTime": _millis(hi),
                    "nextToken": next_token,
                    "maxResults": PAGE_SIZE,
                    "statuses": statuses,
                }
                answer = self._answer(self.call("POST", path, json=body), f"{path} ({process_code})")
                result = answer.get("result") or {}
                out.extend(str(i) for i in result.get("list") or [])
                token = str(result.get("nextToken") or "")
                if not token or token in seen:  # no more pages (or a peer that repeats itself)
                    break
                seen.add(token)
                next_token = int(token) if token.isdigit() else token
            lo = hi + dt.timedelta(milliseconds=1)
        return list(dict.fromkeys(out))

    # -- answers -----------------------------------------------------------------------------
    def _transient(self, response: requests.Response) -> None:
        if response.status_code in ACCEPTED and _code(response) in TRANSIENT:
            raise TransientSourceError(
                f"{self.source_id}: DingTalk {_code(response)}: {_message(response)}", retry_after=1.0
            )

    def _oapi_transient(self, response: requests.Response) -> None:
        code = _errcode(response)
        if code in OAPI_TRANSIENT:
            raise TransientSourceError(
                f"{self.source_id}: DingTalk errcode {code}: {_message(response)}", retry_after=1.0
            )

    def _answer(
        self,
        response: requests.Response,
        where: str,
        *,
        not_found: bool = False,
        success_field: bool = True,
    ) -> dict[str, Any]:
        """A v1.0 answer: HTTP 200 with success true (the detail page shows it as the string "true")."""
        try:
            answer = response.json()
        except ValueError:
            raise SourceError(f"{self.source_id}: {where}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise SourceError(f"{self.source_id}: {where}: the answer is not a JSON object")
        if response.status_code >= 400:
            code = _code(response)
            message = f"{self.source_id}: {where}: HTTP {response.status_code} {code}: {_message(response)}"
            if not_found and code in NOT_FOUND:
                raise ApprovalNotFound(message)
            raise SourceError(message)
        if success_field and answer.get("success") not in (True, "true"):
            raise SourceError(f"{self.source_id}: {where}: success is {answer.get('success')!r}")
        return answer

    def _oapi_answer(self, response: requests.Response, where: str) -> dict[str, Any]:
        try:
            answer = response.json()
        except ValueError:
            raise SourceError(f"{self.source_id}: {where}: the answer is not JSON") from None
        code = answer.get("errcode", 0) if isinstance(answer, dict) else None
        if code != 0:
            raise SourceError(f"{self.source_id}: {where}: DingTalk errcode {code}: {_message(response)}")
        return answer


def file_name(file: dict[str, Any]) -> str:
    """fileName with fileType as its suffix (下载审批附件: the link's own name is not the file's)."""
    name = str(file.get("fileName") or file.get("fileId") or "file").replace("\\", "/").rsplit("/", 1)[-1]
    kind = str(file.get("fileType") or "").strip().lstrip(".")
    if kind and not name.lower().endswith("." + kind.lower()):
        name = f"{name}.{kind}"
    return name


def photo_host(url: str, allowed: Collection[str]) -> str:
    """The host of a photo URL, or SourceError naming it when it is not one to fetch from: a URL in form
    content could point anywhere (an internal service, a cloud metadata address), so only `allowed` hosts."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # a port that is not a number raises ValueError here
    except ValueError:
        raise SourceError(f"the photo URL is not a URL: {url[:80]!r}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise SourceError(f"the photo URL is not http(s): {url[:80]!r}")
    if "@" in parts.netloc:
        raise SourceError(f"the photo URL carries user info (host {host})")
    if host not in allowed:
        trusted = ", ".join(sorted(allowed)) or "none"
        raise SourceError(
            f"the photo's host {host} is not in connection.photo_hosts ({trusted}): not fetched; "
            "add it there if it is DingTalk's"
        )
    return host


class _PhotoSession(requests.Session):
    """Never follows a redirect, and leaves the body unread for the caller's capped read."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        return super().request(method, url, *args, **kwargs)


def _image_type(response: requests.Response, content: bytes) -> str | None:
    """The media type of an image: from its bytes; for an image format not told from bytes here (WebP,
    HEIC ...), the Content-Type if it says image/ and the bytes are no other known format. None: no image."""
    declared = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    found = sniff(content) if content else None
    if found is not None:
        images = sorted(t for t in found.media_types if t.startswith("image/"))
        return (declared if declared in images else images[0]) if images else None
    return declared if content and declared.startswith("image/") else None


def _media_type(response: requests.Response, file_type: str) -> str:
    """The link's Content-Type, unless it says nothing (octet-stream): then the form's fileType."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    if kind and kind != "application/octet-stream":
        return kind
    suffix = file_type.strip().lstrip(".").lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.types_map.get("." + suffix) or "application/octet-stream"


def _json(response: requests.Response) -> dict[str, Any]:
    if "json" not in response.headers.get("Content-Type", ""):
        return {}
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _code(response: requests.Response) -> str:
    return str(_json(response).get("code") or "")


def _errcode(response: requests.Response) -> int | None:
    code = _json(response).get("errcode")
    return code if isinstance(code, int) else None


def _message(response: requests.Response) -> str:
    answer = _json(response)
    return " ".join(str(answer.get("message") or answer.get("errmsg") or "").split())[:200]


def _millis(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)
