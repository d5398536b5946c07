"""Feishu (飞书) approvals (审批): an approved 审批实例 becomes one 件 of 原始凭证, form, trail and files.

The OA user does nothing. Feishu pushes 审批实例状态变更 (`approval_instance`, 事件订阅 with an Encrypt Key) to
the hub's callback receiver, which checks X-Lark-Signature and the Verification Token and keeps the request
(body and signature headers) in the approval inbox. This stream reads the inbox from its cursor, checks and
decrypts each message again (the inbox is evidence), and for every instance now APPROVED fetches 获取单个审批
实例详情 and every file of its attachmentV2 fields (pre-signed links). The package holds the detail answer
byte for byte as Feishu sent it and each file as downloaded; names come from 获取单个用户信息. The record's key
is the instance_code; its document number the serial_number (审批编号).

Same shape as dingtalk.py: an altered message, an instance Feishu does not know, or a file that cannot be had
whole is refused (kept under quarantine/<source>/); PENDING, REJECTED and CANCELED instances are passed over;
DELETED and REVERTED (撤销, after approval) are passed over and noted as withdrawn.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.oa.approval_inbox import InboxEntry
from connectors.oa.approval_stream import (
    FINISHED,
    PASSED,
    PENDING,
    REVOKED,
    ApprovalInboxStream,
    approval_fields,
    checked_connection,
    inbox_stream_settings,
)
from connectors.oa.callback_crypto import (
    MAX_ENVELOPE_BYTES,
    CallbackError,
    feishu_decrypt,
    feishu_signature,
)
from connectors.oa.feishu_api import ApprovalNotFound, FeishuApi, media_type

if TYPE_CHECKING:
    from archive_hub.sources import SourceConfig

EVENT = "approval_instance"  # 审批实例状态变更 (event v1, `event.type`)
URL_VERIFICATION = "url_verification"  # Feishu's check of the request URL: answered, never kept
SIGNATURE_HEADERS = ("x-lark-request-timestamp", "x-lark-request-nonce", "x-lark-signature")
STATUS = {
    "PENDING": "审批中",
    "APPROVED": "已通过",
    "REJECTED": "已拒绝",
    "CANCELED": "已撤回",
    "DELETED": "已删除",
    "REVERTED": "已撤销",
    "OVERTIME_CLOSE": "超时关闭",
    "OVERTIME_RECOVER": "超时恢复",
}
WITHDRAWN = {"DELETED", "REVERTED"}  # gone after it may have been archived: noted, never deleted
# timeline entries that make the approval trail (START, CC, comments are not steps).
TRAIL_TYPES = {
    "PASS": "已同意",
    "AUTO_PASS": "已同意",
    "REJECT": "已拒绝",
    "AUTO_REJECT": "已拒绝",
    "TRANSFER": "已转交",
    "ROLLBACK": "已退回",
    "ROLLBACK_SELECTED": "已退回",
    "ADD_APPROVER_BEFORE": "已加签",
    "ADD_APPROVER": "已加签",
    "ADD_APPROVER_AFTER": "已加签",
}
AGREED = {"PASS", "AUTO_PASS"}
CONNECTION_KEYS = {
    "base_url",
    "app_id",
    "app_secret",
    "encrypt_key",
    "verification_token",
    "templates",
    "timezone",
    "timeout",
}


class FeishuCallbackKeys:
    """What checks a Feishu push: the Encrypt Key (signature and AES) and the Verification Token. Never
    shown: repr names neither."""

    def __init__(self, encrypt_key: str, verification_token: str) -> None:
        self._key = encrypt_key
        self._token = verification_token

    def __repr__(self) -> str:
        return "FeishuCallbackKeys(***)"

    def open(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Signature (when Feishu sent one; required for everything but url_verification), decryption, the
        verification token. CallbackError with a fixed reason when any fails."""
        signature = str(headers.get("x-lark-signature") or "")
        if signature:
            expected = feishu_signature(
                str(headers.get("x-lark-request-timestamp") or ""),
                str(headers.get("x-lark-request-nonce") or ""),
                self._key,
                body,
            )
            if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
                raise CallbackError("signature mismatch", "X-Lark-Signature does not match the body")
        try:
            event = _decrypted(self._key, body)
            header = event.get("header") if isinstance(event.get("header"), dict) else {}
            token = str(event.get("token") or header.get("token") or "")
            if not hmac.compare_digest(token.encode("utf-8", "replace"), self._token.encode("utf-8")):
                raise CallbackError("verification token mismatch", "the event's token is not the app's")
        except CallbackError:
            if not signature:  # one reason for every failure: an unsigned caller learns nothing (no oracle)
                raise CallbackError("unsigned request", "only a url_verification may come unsigned") from None
            raise
        if not signature and event.get("type") != URL_VERIFICATION:
            raise CallbackError("unsigned request", "only a url_verification may come unsigned")
        return event


def _decrypted(encrypt_key: str, body: bytes) -> dict[str, Any]:
    if len(body) > MAX_ENVELOPE_BYTES:
        raise CallbackError("not a JSON envelope", f"the body is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[… a megabyte deep
        raise CallbackError("not a JSON envelope", "the body is not JSON") from None
    encrypt = envelope.get("encrypt") if isinstance(envelope, dict) else None
    if not isinstance(encrypt, str) or not encrypt.strip():
        raise CallbackError("no encrypt field", 'the body has no non-empty "encrypt" text')
    try:
        event = json.loads(feishu_decrypt(encrypt_key, encrypt.strip()))
    except (ValueError, RecursionError):
        raise CallbackError("not a Feishu event", "the decrypted message is not JSON") from None
    if not isinstance(event, dict):
        raise CallbackError("not a Feishu event", "the decrypted message is not a JSON object")
    return event


class FeishuApprovalStream(ApprovalInboxStream):
    primary_key = ("sp_no",)
    vendor = "Feishu"
    not_found = ApprovalNotFound
    template_word = "approval code"
    listing = "approval/v4/instances"

    def __init__(
        self, source_id: str, api: FeishuApi, keys: FeishuCallbackKeys, *args: Any, **kw: Any
    ) -> None:
        # For Feishu the base's `crypt` is the Encrypt Key and the Verification Token.
        super().__init__(source_id, api, keys, *args, **kw)
        self.keys = keys

    def finished_between(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Instances of the configured approval codes started in [start, end] that are APPROVED. The list
        has no status filter, so each listed instance's detail decides; one Feishu cannot give is kept, to be
        refused with its reason by the sync."""
        if not self.templates:
            raise ConfigError(
                self.source_id,
                "connection.templates",
                "Feishu lists instances by approval code only: name the approval codes to backfill",
            )
        found: list[str] = []
        for code in sorted(self.templates):
            for instance_code in self.api.instance_codes(code, start, end):
                try:
                    data, _ = self.api.approval_detail(instance_code)
                except TransientSourceError:
                    raise
                except SourceError:
                    found.append(instance_code)
                    continue
                if data.get("status") == "APPROVED":
                    found.append(instance_code)
        return list(dict.fromkeys(found))

    def _callback(self, entry: InboxEntry) -> tuple[str | None, str | None]:
        """approval_instance: the signature and token checked again, the message decrypted and read."""
        where = f"inbox message {entry.path.name}"
        try:
            headers = {k: str(v) for k, v in entry.content.items() if k in SIGNATURE_HEADERS}
            message = self.keys.open(headers, entry.body)
        except CallbackError as exc:
            return None, f"{where}: {exc.reason}"
        event = message.get("event")
        if not isinstance(event, dict) or event.get("type") != EVENT:
            return None, None  # url_verification, another event, or the v2 schema: nothing to archive
        code = str(event.get("instance_code") or "").strip()
        if not code:
            return None, f"{where}: {EVENT} without instance_code"
        status = str(event.get("status") or "")
        if status != "APPROVED":
            revoked = STATUS.get(status, status) if status in WITHDRAWN else None
            self.pass_over(code, STATUS.get(status, status) or "unknown", revoked=revoked)
            return None, None
        approval = str(event.get("approval_code") or "").strip()
        if self.templates and approval and approval not in self.templates:  # no code: the detail decides
            self.pass_over(code, f"approval code {approval} not configured")
            return None, None
        return code, None

    # -- one approval: the base's _record asks these ----------------------------------------------
    def _state(self, detail: dict[str, Any]) -> tuple[str, str]:
        status = str(detail.get("status") or "")
        said = STATUS.get(status, status)
        if status == "APPROVED":
            return FINISHED, said
        if status in WITHDRAWN:
            return REVOKED, said
        return (PASSED if status in ("REJECTED", "CANCELED") else PENDING), said

    def _template(self, detail: dict[str, Any]) -> str:
        return str(detail.get("approval_code") or "")

    def _fields(self, detail: dict[str, Any], key: str) -> dict[str, Any]:
        return approval_data(detail, self.api.user_name, self.tz, instance_code=key)

    def _fetch(self, key: str, file: dict[str, str]) -> tuple[bytes, str, str]:
        content, given = self.api.file(file["url"])
        return content, file["name"], media_type(file["name"], given)


# -- the detail as the mapping reads it ---------------------------------------------------------------
def approval_data(
    data: dict[str, Any], name_of: Callable[[str], str], tz: dt.tzinfo, *, instance_code: str
) -> dict[str, Any]:
    """Flatten a 获取单个审批实例详情 `data` into the keys the WeCom and DingTalk connectors give (so the
    mappings stay alike), plus document_no (serial_number, 审批编号)."""

    def when(millis: Any) -> dt.datetime:
        return dt.datetime.fromtimestamp(int(millis) / 1000, dt.UTC).astimezone(tz)

    applicant_id = str(data.get("user_id") or data.get("open_id") or "")
    applicant = name_of(applicant_id)
    trail = []
    for entry in data.get("timeline") or []:
        kind = str(entry.get("type") or "")
        if kind not in TRAIL_TYPES:
            continue
        uid = str(entry.get("user_id") or entry.get("open_id") or "")
        at = when(entry["create_time"]) if entry.get("create_time") else None
        trail.append(
            {
                "step": len(trail) + 1,
                "userid": uid,
                "name": name_of(uid) if uid else "系统",
                "status": TRAIL_TYPES[kind],
                "agreed": kind in AGREED,
                "time": at.isoformat() if at else None,
                "speech": str(entry.get("comment") or ""),
            }
        )
    created = when(data["start_time"])
    approved = [dt.datetime.fromisoformat(t["time"]) for t in trail if t["agreed"] and t["time"]]
    end = data.get("end_time")
    finished = when(end) if end and str(end) != "0" else max(approved, default=created)
    form: dict[str, str] = {}
    files: list[dict[str, str]] = []
    amounts: list[tuple[bool, str]] = []
    currencies: list[str] = []
    widgets = json.loads(data["form"]) if isinstance(data.get("form"), str) else data.get("form") or []
    _walk(widgets, "", form, files, amounts, currencies)
    status = str(data.get("status") or "")
    fields = approval_fields(
        applicant=applicant,
        applicant_id=applicant_id,
        finished=finished,
        form=form,
        amounts=amounts,
        trail=trail,
        files=files,
    )
    if currencies:
        fields["currency"] = currencies[0]  # the amount widget says its currency (CNY unless set)
    return {
        "sp_no": instance_code,
        "sp_name": str(data.get("approval_name") or "审批"),
        "template_id": str(data.get("approval_code") or ""),
        "status": STATUS.get(status, status),
        "applicant": applicant,
        "applicant_userid": applicant_id,
        "applicant_party": str(data.get("department_id") or ""),
        "apply_time": created.isoformat(),
        **fields,
        "document_no": str(data.get("serial_number") or ""),
    }


def _walk(
    widgets: list[dict[str, Any]],
    prefix: str,
    form: dict[str, str],
    files: list[dict[str, str]],
    amounts: list[tuple[bool, str]],
    currencies: list[str],
) -> None:
    """The form's widgets (or a fieldList row's): text by name, files, amounts."""
    for widget in widgets:
        if not isinstance(widget, dict):
            continue
        kind = str(widget.get("type") or "")
        title = prefix + str(widget.get("name") or widget.get("id") or kind)
        value = widget.get("value")
        if kind == "fieldList":
            for row_no, row in enumerate(value if isinstance(value, list) else [], 1):
                cells = row if isinstance(row, list) else []
                _walk(cells, f"{title}[{row_no}].", form, files, amounts, currencies)
            continue
        if kind in ("attachmentV2", "attachment"):
            urls = [str(u) for u in (value if isinstance(value, list) else []) if u]
            names = [n.strip() for n in str(widget.get("ext") or "").split(",")]
            if len(names) != len(urls):  # a name with a comma in it: the link's own last path part
                names = [
                    unquote(urlsplit(u).path.rsplit("/", 1)[-1]) or f"file{i}" for i, u in enumerate(urls, 1)
                ]
            files.extend({"url": u, "name": n, "control": title} for u, n in zip(urls, names, strict=True))
            form[title] = f"{len(urls)}个文件"
            continue
        if kind in ("image", "imageV2"):  # signed links: counted, never stored in metadata
            form[title] = f"{len(value) if isinstance(value, list) else 0}张图片"
            continue
        if kind == "amount":
            text = _number(value)
            amounts.append((bool(prefix), text))
            ext = widget.get("ext")
            currency = ext.get("currency") if isinstance(ext, dict) else ext
            if isinstance(currency, str) and currency.strip() and not prefix:
                currencies.append(currency.strip().upper())
            form[title] = text
            continue
        form[title] = _text(value)


def _number(value: Any) -> str:
    """An amount as Feishu sends it (a JSON number) in the two-decimal text the mappings read."""
    if value is None or value == "":
        return ""
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return str(value)[:500]


# -- configuration ----------------------------------------------------------------------------------
def stream_from_config(config: SourceConfig) -> FeishuApprovalStream:
    """`kind: oa.feishu` (see config/sources/feishu_approvals.yaml)."""
    from connectors.http import HttpClient

    conn = checked_connection(
        config,
        CONNECTION_KEYS,
        ("base_url", "app_id", "app_secret"),
        {"base_url": str(config.connection.get("base_url", ""))},
    )
    http = HttpClient(config.id, str(conn["base_url"]), timeout=float(conn.get("timeout", 20)))
    api = FeishuApi(config.id, str(conn["base_url"]), str(conn["app_id"]), str(conn["app_secret"]), http=http)
    return FeishuApprovalStream(
        config.id,
        api,
        callback_keys(config),
        templates=approval_codes(config),
        **inbox_stream_settings(config),
    )


def approval_codes(config: SourceConfig) -> list[str]:
    """`templates`: approval codes, a list or one comma-separated text (an environment variable)."""
    value = config.connection.get("templates") or []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(config.id, "connection.templates", "must be a list of approval codes")
    return [str(t).strip() for t in items if str(t).strip()]


def callback_keys(config: SourceConfig) -> FeishuCallbackKeys:
    """connection.encrypt_key and connection.verification_token, both required (the receiver checks them)."""
    conn = config.connection
    for key in ("encrypt_key", "verification_token"):
        if not conn.get(key):
            raise ConfigError(config.id, f"connection.{key}", "is required (the receiver checks it)")
    return FeishuCallbackKeys(str(conn["encrypt_key"]), str(conn["verification_token"]))


# -- callbacks ----------------------------------------------------------------------------------------
class FeishuCallbacks:
    """Feishu's 事件订阅 rules: a JSON body {"encrypt"} (AES-256-CBC, key sha256(Encrypt Key)), signed in the
    X-Lark-* headers, with the Verification Token inside. url_verification is answered {"challenge"} and
    not kept; every other accepted push is answered `{}`. The receiver makes one handler per request, so
    the challenge `accept` read is the one `answer` gives back."""

    signature_params: tuple[str, ...] = ()
    signature_headers = SIGNATURE_HEADERS

    def __init__(self, keys: FeishuCallbackKeys) -> None:
        self.keys = keys
        self._challenge: str | None = None

    def verify_url(self, params: dict[str, str]) -> str:
        raise CallbackError("not a Feishu request", "Feishu checks its URL with a POST (url_verification)")

    def accept(self, params: dict[str, str], body: bytes) -> bool:
        event = self.keys.open(params, body)
        if event.get("type") == URL_VERIFICATION:
            self._challenge = str(event.get("challenge") or "")
            return False
        return True

    def answer(self) -> tuple[bytes, str]:
        answer = {"challenge": self._challenge} if self._challenge is not None else {}
        return json.dumps(answer).encode("utf-8"), "application/json"


def callback_handler(config: SourceConfig) -> FeishuCallbacks:
    return FeishuCallbacks(callback_keys(config))
