"""Kingdee 金蝶云星空 (K/3 Cloud) WebAPI: session login, the error envelope and 凭证附件.

What the declarative REST source (connectors/erp/rest.py) cannot say in YAML lives here:

- Login: `AuthService.LoginByAppSecret` with `parameters` [账套ID, 用户名, AppID, AppSecret, 语言 2052]
  (第三方系统登录授权). The answer's `LoginResultType` is 1 on success; the session travels as the cookie
  `kdservice-sessionid` (`KDSVCSessionId` in the answer).
- `ExecuteBillQuery` answers bare 2-D arrays; an error comes back as HTTP 200 with
  `[[{"Result": {"ResponseStatus": {"IsSuccess": false, "MsgCode": n, "Errors": [...]}}}]]`.
  MsgCode 1 means the session is lost (会话信息已丢失): the stream logs in again, once.
- Attachments: `BOS_Attachment` rows of the voucher (FBillType 'GL_VOUCHER', FInterID = 凭证内码) name
  each file's FFileId; `AttachmentDownLoad` returns it in base64 parts (`FilePart`, `IsLast`,
  `StartIndex` of the next part), each file checked against its FAttachmentSize.

The endpoint paths, field keys and envelope come from Kingdee's published WebAPI and public SDKs; check
them against the account set (账套) you connect to. One integrator reports `BOS_Attachment` is not
queryable on their version: set `attachments: false` there and the vouchers are archived without files.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlsplit

import requests

from archive_hub.settings import redact_text
from archive_sink.durability import replace_file
from connectors.erp.rest import Endpoint, RestVoucherStream, SessionExpired, json_answer
from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.http import HttpClient
from connectors.stream import SourceRecord

STUB = "/Kingdee.BOS.WebApi.ServicesStub."
LOGIN = STUB + "AuthService.LoginByAppSecret.common.kdsvc"
QUERY = STUB + "DynamicFormService.ExecuteBillQuery.common.kdsvc"
DOWNLOAD = STUB + "DynamicFormService.AttachmentDownLoad.common.kdsvc"
SESSION_COOKIE = "kdservice-sessionid"
SESSION_LOST = 1  # MsgCode: 会话信息已丢失，请重新登录
ATTACHMENT_FIELDS = ("FInterID", "FAttachmentName", "FFileId", "FAttachmentSize", "FExtName")
ATTACHMENT_PAGE = 2000  # ExecuteBillQuery's Limit "不能超过2000"
MAX_FILE = 200 * 1024 * 1024  # a voucher attachment larger than this is refused, not buffered
AUTH_SETTINGS = ("acct_id", "user_name", "app_id", "app_secret")


class KingdeeVendor:
    def __init__(self, source_id: str, auth: dict[str, Any]) -> None:
        missing = [name for name in AUTH_SETTINGS if not str(auth.get(name) or "")]
        if missing:
            raise ConfigError(
                source_id, f"connection.auth.{missing[0]}", "is empty (set the environment variable it names)"
            )
        self.source_id = source_id
        self._auth = {name: str(auth[name]) for name in AUTH_SETTINGS}
        self.lcid = int(auth.get("lcid", 2052))
        self.logins = 0

    def __repr__(self) -> str:
        return f"KingdeeVendor({self.source_id}, acct {self._auth['acct_id']})"

    def login(self, http: HttpClient) -> None:
        a = self._auth
        parameters = [a["acct_id"], a["user_name"], a["app_id"], a["app_secret"], self.lcid]
        answer = http.request("POST", LOGIN, json={"parameters": parameters})
        body = json_answer(answer, f"{self.source_id}: login")
        result = body.get("LoginResultType") if isinstance(body, dict) else None
        if result != 1:
            said = redact_text(str(body.get("Message") or "")) if isinstance(body, dict) else None
            raise ConfigError(
                self.source_id,
                "connection.auth.app_secret",
                f"Kingdee refused the login to 账套 {a['acct_id']} as {a['user_name']} "
                f"(LoginResultType {result}: {str(said or 'no message')[:160]}); check acct_id, user_name, "
                "app_id and app_secret",
            )
        session = answer.cookies.get(SESSION_COOKIE) or body.get("KDSVCSessionId")
        if not session:
            raise SourceError(f"{self.source_id}: login: Kingdee answered without a session id")
        if SESSION_COOKIE not in answer.cookies:
            # The session lives in the cookie jar, beside whatever else the server (or a load balancer in
            # front of a cluster) set at login: an explicit Cookie header would shut those out.
            host = urlsplit(http.base_url).hostname or ""
            http.session.cookies.set(SESSION_COOKIE, str(session), domain=host, path="/")
        self.logins += 1

    def auth(self) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {}

    def unwrap(self, response: requests.Response, what: str) -> Any:
        if response.status_code == 401:
            raise SessionExpired("HTTP 401")
        body = json_answer(response, f"{self.source_id}: {what}")
        status = _status(body)
        if status is None:
            return body
        if status.get("IsSuccess"):
            return body
        errors = redact_text(
            "; ".join(str(e.get("Message", "")) for e in status.get("Errors") or [] if isinstance(e, dict))
        )
        code = status.get("MsgCode")
        if code == SESSION_LOST:
            raise SessionExpired(errors or "会话信息已丢失")
        if status.get("ErrorCode") in (500, 503) and "超时" in errors:
            raise TransientSourceError(f"{self.source_id}: {what}: Kingdee: {errors[:300]}")
        raise SourceError(f"{self.source_id}: {what}: Kingdee MsgCode {code}: {errors[:300] or 'no message'}")

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    # -- 附件 ------------------------------------------------------------------------------------------------
    def attachments(self, stream: RestVoucherStream, records: list[SourceRecord]) -> None:
        by_id = {r.key: r for r in records}
        ids = ",".join(f"'{key}'" for key in by_id)  # FInterID is text in BOS_Attachment; keys are checked
        query = Endpoint.model_validate(
            {
                "method": "POST",
                "path": QUERY,
                "json": {
                    "data": {
                        "FormId": "BOS_Attachment",
                        "FieldKeys": ",".join(ATTACHMENT_FIELDS),
                        "FilterString": f"FBillType = 'GL_VOUCHER' AND FInterID IN ({ids})",
                        "OrderString": "FInterID ASC, FID ASC",
                        "StartRow": "{offset}",
                        "Limit": ATTACHMENT_PAGE,
                    }
                },
                "as_text": ["data"],
            }
        )
        rows: list[Any] = []
        while True:  # a page at most ATTACHMENT_PAGE rows (Kingdee caps Limit), until a short one
            page = stream.call(query, {"offset": len(rows)}, f"attachments of {len(records)} vouchers")
            if not isinstance(page, list):
                raise SourceError(f"{self.source_id}: attachments: expected rows, got {type(page).__name__}")
            rows += page
            if len(page) < ATTACHMENT_PAGE:
                break
        for record in records:
            record.data["attachments"] = []
            record.attachments = record.data["attachments"]
        for row in rows:
            if not isinstance(row, list) or len(row) != len(ATTACHMENT_FIELDS):
                raise SourceError(
                    f"{self.source_id}: attachments: a row is not {len(ATTACHMENT_FIELDS)} cells"
                )
            voucher, name, file_id, size, _ext = row
            record = by_id.get(str(voucher))
            if record is None:
                continue  # not asked for: the filter is the vendor's, not trusted
            record.attachments.append(self._fetched(stream, record.key, str(name), str(file_id), size))

    def _fetched(
        self, stream: RestVoucherStream, voucher: str, name: str, file_id: str, size: Any
    ) -> dict[str, Any]:
        """The file in parts, joined and checked against its size; a short or broken file is refused for this
        voucher only (its `uri` says why, and the archive step quarantines the voucher)."""
        what = f"voucher {voucher}: attachment {name!r}"
        expected = int(size) if str(size).isdigit() else None
        parts: list[bytes] = []
        start, total = 0, 0
        while True:
            call = Endpoint.model_validate(
                {
                    "method": "POST",
                    "path": DOWNLOAD,
                    "json": {"data": {"FileId": file_id, "StartIndex": start}},
                    "as_text": ["data"],
                }
            )
            try:
                answer = stream.call(call, {}, what)
                result = answer["Result"]
                part = base64.b64decode(result["FilePart"] or "", validate=True)
                last = result["IsLast"]
                following = int(result.get("StartIndex") or start + len(part))
            except SourceError as exc:
                return _refused(name, str(exc))
            except (KeyError, TypeError, ValueError) as exc:
                return _refused(name, f"{what}: AttachmentDownLoad answer not in Kingdee's shape ({exc})")
            parts.append(part)
            total += len(part)
            if total > min(MAX_FILE, expected if expected is not None else MAX_FILE):
                return _refused(name, f"{what}: more bytes than the {expected or MAX_FILE} it should hold")
            if last is True:
                break
            if last is not False or not part or following <= start:
                return _refused(name, f"{what}: AttachmentDownLoad stopped without IsLast or did not advance")
            start = following
        content = b"".join(parts)
        path = stream.work_dir / voucher / hashlib.sha256(content).hexdigest()
        replace_file(path, content)
        # `size` is what Kingdee says the file holds: the archive step compares it with the bytes received.
        return {
            "file_name": name,
            "mime_type": _media_type(name),
            "uri": str(path),
            "size": expected if expected is not None else len(content),
        }


def vendor(source_id: str, auth: dict[str, Any]) -> KingdeeVendor:
    return KingdeeVendor(source_id, auth)


def _refused(name: str, reason: str) -> dict[str, Any]:
    return {"file_name": name, "mime_type": _media_type(name), "uri": f"refused:{reason}", "size": None}


def _status(body: Any) -> dict[str, Any] | None:
    """The ResponseStatus of an error envelope, bare or wrapped in [[...]] as ExecuteBillQuery wraps it."""
    while isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("Result"), dict):
        status = body["Result"].get("ResponseStatus")
        return status if isinstance(status, dict) else None
    return None


MEDIA_TYPES = {
    "pdf": "application/pdf",
    "ofd": "application/ofd",
    "xml": "application/xml",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "tif": "image/tiff",
    "tiff": "image/tiff",
}


def _media_type(name: str) -> str:
    return MEDIA_TYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream")
