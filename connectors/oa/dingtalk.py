"""DingTalk (钉钉) OA approvals (OA审批): a finished 审批实例 becomes one 件 of 原始凭证, form, trail and files.

The OA user does nothing. DingTalk pushes 审批实例开始、结束、终止、删除 (`bpms_instance_change`, 事件订阅 by HTTP
推送) to the hub's callback receiver, which checks the signature and keeps the request in the approval inbox
(approval_inbox.py). This stream reads the inbox from its cursor, checks and decrypts each message again
(the inbox is evidence), and for every instance that is now finished and agreed (type finish, result agree)
fetches 获取单个审批实例详情 and everything attached to it: each file of its DDAttachment fields
(下载审批附件), each image of its DDPhotoField fields (the form text keeps "N张图片"), and each file and
image attached to an operationRecord, a 评论 (ADD_REMARK) or an approver's remark (下载审批附件 with
withCommentAttatchment true). Those are named after who attached them when: "评论附件 (<name> <time>)",
"审批意见附件 (<name> <time>)". The package holds the detail answer byte for byte as DingTalk sent it and
each file as downloaded; names come from 查询用户详情. The record's key is the processInstanceId; its
document number is the businessId (审批编号).

A photo is a URL in form content, so it is fetched only from `connection.photo_hosts` (default
static.dingtalk.com), without the token, never following a redirect, size-capped, and only if it is an image.
One on any other host refuses the instance naming the host: the hub neither calls an address a form
supplied nor archives the instance without the photo. (Unverified against a live organisation: which hosts
DingTalk serves photos from beyond static.dingtalk.com, and that a comment's file asked for without
withCommentAttatchment is refused; see dingtalk_api.py.)

Same shape as wecom.py: a message that cannot be decrypted, an instance DingTalk no longer knows, or a file
or photo that cannot be downloaded whole is refused (kept under quarantine/<source>/, quarantined with the
reason); instances still running, refused, withdrawn (terminate) or deleted are passed over (counted in the
log); a transient failure that outlasts the retries fails the run, so the cursor stays.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.oa.approval_inbox import InboxEntry
from connectors.oa.approval_stream import (
    FINISHED,
    PASSED,
    PENDING,
    REVOKED,
    ApprovalInboxStream,
    approval_fields,
    callback_crypt_of,
    checked_connection,
    inbox_stream_settings,
)
from connectors.oa.callback_crypto import MAX_ENVELOPE_BYTES, CallbackCrypt, CallbackError
from connectors.oa.dingtalk_api import DEFAULT_PHOTO_HOSTS, ApprovalNotFound, DingTalkApi

if TYPE_CHECKING:
    from archive_hub.sources import SourceConfig

EVENT = "bpms_instance_change"
CHECK_URL = "check_url"  # DingTalk's own check of the request URL: answered, never kept
# The event's `type` (and `result` for finish), as a status the log and the record name.
EVENT_STATUS = {"start": "审批中", "terminate": "已撤销", "delete": "已删除"}
RESULT_STATUS = {"agree": "已通过", "refuse": "已拒绝"}
# The detail's status (RUNNING, TERMINATED, COMPLETED) with its result (agree, refuse).
STATUS = {"RUNNING": "审批中", "TERMINATED": "已撤销", "COMPLETED": "已完成"}
WITHDRAWN = {"TERMINATED"}  # 撤销: if it was archived already, the hub notes it (never deletes it)
# operationRecords: the task operations that make the approval trail (start, finish, comments and cc are not).
TRAIL_TYPES = {
    "EXECUTE_TASK_NORMAL",
    "EXECUTE_TASK_AGENT",
    "APPEND_TASK_BEFORE",
    "APPEND_TASK_AFTER",
    "REDIRECT_TASK",
    "REDIRECT_PROCESS",
    "TERMINATE_PROCESS_INSTANCE",
}
TYPE_STATUS = {
    "REDIRECT_TASK": "已转交",
    "APPEND_TASK_BEFORE": "已加签",
    "APPEND_TASK_AFTER": "已加签",
    "REDIRECT_PROCESS": "已退回",
    "TERMINATE_PROCESS_INSTANCE": "已撤销",
}
STEP_RESULT = {"AGREE": "已同意", "REFUSE": "已拒绝", "NONE": "未处理"}
COMMENT = "ADD_REMARK"  # a 评论: its files are 评论附件; those of an approver's step are 审批意见附件
CONNECTION_KEYS = {
    "base_url",
    "oapi_url",
    "app_key",
    "app_secret",
    "callback",
    "templates",
    "photo_hosts",
    "timezone",
    "timeout",
}
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
DEFAULT_OAPI_URL = "https://oapi.dingtalk.com"


class DingTalkApprovalStream(ApprovalInboxStream):
    primary_key = ("sp_no",)
    vendor = "DingTalk"
    not_found = ApprovalNotFound
    template_word = "process code"
    listing = "instanceIds/query"

    def finished_between(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Instances of the configured process codes started in [start, end] that are finished and agreed.
        instanceIds/query needs a process code and filters on status only (a refused instance is COMPLETED
        too), so each listed instance's detail decides; one DingTalk cannot give is kept, to be refused with
        its reason by the sync."""
        if not self.templates:
            raise ConfigError(
                self.source_id,
                "connection.templates",
                "DingTalk lists instances by process code only: name the process codes (PROC-...) to backfill",
            )
        found: list[str] = []
        for code in sorted(self.templates):
            for instance_id in self.api.instance_ids(start, end, code, ["COMPLETED"]):
                try:
                    result, _ = self.api.approval_detail(instance_id)
                except TransientSourceError:
                    raise
                except SourceError:
                    found.append(instance_id)
                    continue
                if result.get("status") == "COMPLETED" and result.get("result") == "agree":
                    found.append(instance_id)
        return list(dict.fromkeys(found))

    def _callback(self, entry: InboxEntry) -> tuple[str | None, str | None]:
        """bpms_instance_change: the signature checked again, the message decrypted and read."""
        where = f"inbox message {entry.path.name}"
        try:
            params = {k: str(v) for k, v in entry.content.items() if k != "body_b64"}
            event = decrypt_event(self.crypt, params, entry.body)
        except CallbackError as exc:
            return None, f"{where}: {exc.reason}"
        if event.get("EventType") != EVENT:
            return None, None
        instance_id = str(event.get("processInstanceId") or "").strip()
        if not instance_id:
            return None, f"{where}: {EVENT} without processInstanceId"
        kind, result = str(event.get("type") or ""), str(event.get("result") or "")
        if kind != "finish" or result != "agree":
            status = RESULT_STATUS.get(result, result) if kind == "finish" else EVENT_STATUS.get(kind, kind)
            revoked = status if kind in ("terminate", "delete") else None
            self.pass_over(instance_id, status or "unknown", revoked=revoked)
            return None, None
        code = str(event.get("processCode") or "").strip()
        if self.templates and code not in self.templates:
            self.pass_over(instance_id, f"process code {code} not configured")
            return None, None
        return instance_id, None

    # -- one approval: the base's _record asks these ----------------------------------------------
    def _state(self, detail: dict[str, Any]) -> tuple[str, str]:
        status, outcome = detail.get("status"), detail.get("result")
        if status in WITHDRAWN:
            return REVOKED, STATUS[status]
        if status == "COMPLETED":
            said = RESULT_STATUS.get(str(outcome), str(outcome))
            return (FINISHED if outcome == "agree" else PASSED), said
        return PENDING, STATUS.get(str(status), str(status))

    def _template(self, detail: dict[str, Any]) -> str:
        return str(detail.get("processCode") or "")

    def _fields(self, detail: dict[str, Any], key: str) -> dict[str, Any]:
        return approval_data(detail, self.api.user_name, self.tz, instance_id=key)

    def _fetch(self, key: str, file: dict[str, str]) -> tuple[bytes, str, str]:
        if file.get("url"):  # a DDPhotoField's or a comment's image: a URL, not a file of DingTalk's space
            return self.api.photo(file["url"], file["name"])
        content, name, kind = self.api.file(key, file)
        # A comment's file is named after where it was attached, so the package shows who added it when.
        return content, f"{file['control']} {name}" if file.get("comment") else name, kind


# -- the detail as the mapping reads it ---------------------------------------------------------------
def approval_data(
    result: dict[str, Any], name_of: Callable[[str], str], tz: dt.tzinfo, *, instance_id: str
) -> dict[str, Any]:
    """Flatten a 获取单个审批实例详情 `result` into the keys wecom.approval_data gives (so the mappings stay
    alike), plus document_no (businessId, 审批编号). sp_no is the processInstanceId, which the result itself
    does not carry."""

    def when(text: Any) -> dt.datetime:
        moment = dt.datetime.fromisoformat(str(text))  # "2025-03-10T09:30Z": UTC, to the minute
        return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(tz)

    applicant_id = str(result["originatorUserId"])
    applicant = name_of(applicant_id)
    trail = []
    steps: dict[str, int] = {}
    remarked: list[dict[str, str]] = []  # files and images of comments and approvers' remarks
    for n, record in enumerate(result.get("operationRecords") or [], 1):
        remarked += _remark_files(record, name_of, when)
        if record.get("type") not in TRAIL_TYPES:
            continue
        uid = str(record["userId"])
        step = steps.setdefault(str(record.get("activityId") or f"#{n}"), len(steps) + 1)
        outcome = str(record.get("result") or "NONE")
        at = when(record["date"]) if record.get("date") else None
        trail.append(
            {
                "step": step,
                "userid": uid,
                "name": name_of(uid),
                "status": TYPE_STATUS.get(record["type"]) or STEP_RESULT.get(outcome, outcome),
                "agreed": outcome == "AGREE",
                "time": at.isoformat() if at else None,
                "speech": str(record.get("remark") or ""),
            }
        )
    approved = [dt.datetime.fromisoformat(t["time"]) for t in trail if t["agreed"] and t["time"]]
    created = when(result["createTime"])
    finished = when(result["finishTime"]) if result.get("finishTime") else max(approved, default=created)
    form: dict[str, str] = {}
    files: list[dict[str, str]] = []
    amounts: list[tuple[bool, str]] = []  # (inside a table, value): the form's own total wins over a row's
    _walk(result.get("formComponentValues") or [], "", form, files, amounts)
    files += remarked
    title = str(result.get("title") or "")
    status = STATUS.get(str(result.get("status")), str(result.get("status")))
    if result.get("status") == "COMPLETED":
        status = RESULT_STATUS.get(str(result.get("result")), status)
    return {
        "sp_no": instance_id,
        # DingTalk titles an instance "<发起人>提交的<模板名>"; the template's name is what WeCom's sp_name is.
        "sp_name": title.removeprefix(f"{applicant}提交的") or "审批",
        "template_id": str(result.get("processCode") or ""),
        "status": status,
        "applicant": applicant,
        "applicant_userid": applicant_id,
        "applicant_party": str(result.get("originatorDeptId") or ""),
        "apply_time": created.isoformat(),
        **approval_fields(
            applicant=applicant,
            applicant_id=applicant_id,
            finished=finished,
            form=form,
            amounts=amounts,
            trail=trail,
            files=files,
        ),
        "document_no": str(result.get("businessId") or ""),
    }


def _walk(
    components: list[dict[str, Any]],
    prefix: str,
    form: dict[str, str],
    files: list[dict[str, Any]],
    amounts: list[tuple[bool, str]],
) -> None:
    """formComponentValues (or a TableField row's cells): text by name, files and photos, amounts."""
    for component in components:
        kind = str(component.get("componentType") or "")
        title = prefix + str(component.get("name") or component.get("id") or kind)
        value = component.get("value")
        if kind == "TableField":
            for row_no, row in enumerate(_loads(value) or [], 1):
                cells = [
                    {
                        "componentType": str(
                            c.get("componentType") or re.split(r"[-_]", str(c.get("key") or ""))[0]
                        ),
                        "name": c.get("label") or c.get("key"),
                        "value": c.get("value"),
                    }
                    for c in (row.get("rowValue") or [] if isinstance(row, dict) else [])
                    if isinstance(c, dict)
                ]
                _walk(cells, f"{title}[{row_no}].", form, files, amounts)
            continue
        if kind == "DDAttachment":
            listed = [f for f in _loads(value) or [] if isinstance(f, dict) and f.get("fileId")]
            files.extend(_space_file(f, title) for f in listed)
            form[title] = f"{len(listed)}个文件"
            continue
        if kind == "DDPhotoField":
            photos = _photos(_loads(value) if value else [], title)
            files.extend(photos)
            form[title] = f"{len(photos)}张图片"
            continue
        if kind == "MoneyField":
            amounts.append((bool(prefix), str(value or "")))
        form[title] = _text(kind, value)


def _space_file(f: dict[str, Any], control: str, *, comment: bool = False) -> dict[str, str]:
    """A file in DingTalk's approval space (a DDAttachment's, or a comment's when `comment`), for 下载审批附件."""
    return {
        "file_id": str(f["fileId"]),
        "control": control,
        "fileId": str(f["fileId"]),
        "fileName": str(f.get("fileName") or ""),
        "fileSize": str(f.get("fileSize") or ""),
        "fileType": str(f.get("fileType") or ""),
        **({"comment": "true"} if comment else {}),
    }


def _photos(urls: Any, control: str) -> list[dict[str, str]]:
    """Images by URL, named after where they were attached ("<control> 1", its suffix from its bytes). A value
    that is not a list of URLs is not DingTalk's shape: ValueError refuses the instance, none is skipped."""
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ValueError(f"{control}: the images are not a list of URLs")
    listed = [u.strip() for u in urls if u.strip()]
    return [
        {"control": control, "url": url, "name": f"{control} {n}" if len(listed) > 1 else control}
        for n, url in enumerate(listed, 1)
    ]


def _remark_files(
    record: dict[str, Any], name_of: Callable[[str], str], when: Callable[[Any], dt.datetime]
) -> list[dict[str, str]]:
    """The files (attachments) and images of one operationRecord, named after who attached them when."""
    files = [f for f in record.get("attachments") or [] if isinstance(f, dict) and f.get("fileId")]
    images = record.get("images") or []
    if not files and not images:
        return []
    uid = str(record.get("userId") or "")
    at = when(record["date"]).strftime("%Y-%m-%d %H:%M") if record.get("date") else ""
    word = "评论附件" if record.get("type") == COMMENT else "审批意见附件"
    control = f"{word} ({' '.join(p for p in (name_of(uid) if uid else '', at) if p)})"
    return [_space_file(f, control, comment=True) for f in files] + _photos(images, control)


def _text(kind: str, value: Any) -> str:
    """A field as text: lists DingTalk sends as JSON text are joined."""
    if value is None:
        return ""
    items = _loads(value) if kind in ("DDMultiSelectField", "DDDateRangeField") else None
    if isinstance(items, list):
        if kind == "DDDateRangeField":  # [start, end, duration]
            return " ~ ".join(str(i) for i in items[:2])
        return "、".join(str(i) for i in items)
    return str(value)[:500]


def _loads(value: Any) -> Any:
    """A value DingTalk sends as JSON text (tables, attachments, multi-selects); None if it is not JSON."""
    if not isinstance(value, str) or not value.strip():
        return value if isinstance(value, list) else None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


# -- configuration ----------------------------------------------------------------------------------
def stream_from_config(config: SourceConfig) -> DingTalkApprovalStream:
    """`kind: oa.dingtalk` (see config/sources/dingtalk_approvals.yaml)."""
    from connectors.http import HttpClient

    oapi_url = str(config.connection.get("oapi_url") or DEFAULT_OAPI_URL)
    conn = checked_connection(
        config,
        CONNECTION_KEYS,
        ("base_url", "app_key", "app_secret"),
        {"base_url": str(config.connection.get("base_url", "")), "oapi_url": oapi_url},
    )
    http = HttpClient(config.id, str(conn["base_url"]), timeout=float(conn.get("timeout", 20)))
    api = DingTalkApi(
        config.id,
        str(conn["base_url"]),
        oapi_url,
        str(conn["app_key"]),
        str(conn["app_secret"]),
        http=http,
        photo_hosts=photo_hosts(config),
    )
    return DingTalkApprovalStream(
        config.id,
        api,
        callback_crypt(config),
        templates=process_codes(config),
        **inbox_stream_settings(config),
    )


def process_codes(config: SourceConfig) -> list[str]:
    """`templates`: a list of process codes, or one text of them separated by commas (so an environment
    variable can carry them)."""
    return _listed(config, "templates", "process codes")


def _listed(config: SourceConfig, key: str, what: str) -> list[str]:
    """A connection setting that is a list, or one text of items separated by commas."""
    value = config.connection.get(key) or []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(config.id, f"connection.{key}", f"must be a list of {what}")
    return [str(t).strip() for t in items if str(t).strip()]


def photo_hosts(config: SourceConfig) -> list[str]:
    """`photo_hosts`: the hosts photos are fetched from, a list or one text separated by commas; unset or
    empty, DingTalk's own (DEFAULT_PHOTO_HOSTS). Host names only: no scheme, port, path or wildcard."""
    hosts = _listed(config, "photo_hosts", "host names") or list(DEFAULT_PHOTO_HOSTS)
    for host in hosts:
        if not _HOST.fullmatch(host.lower()):
            raise ConfigError(
                config.id,
                "connection.photo_hosts",
                f"{host[:60]!r} is not a host name (e.g. static.dingtalk.com)",
            )
    return [h.lower() for h in hosts]


def callback_crypt(config: SourceConfig) -> CallbackCrypt:
    """The callback crypto of a source: Token, aes_key and the app key as receive id (事件订阅 of an
    企业内部应用; DingTalk's own library calls it the ownerKey)."""
    return callback_crypt_of(config, "app_key", "aes_key")


# -- callbacks ----------------------------------------------------------------------------------------
def envelope_encrypt(body: bytes) -> str:
    """The `encrypt` text of a DingTalk push body `{"encrypt": "..."}`, read with json.loads only."""
    if len(body) > MAX_ENVELOPE_BYTES:
        raise CallbackError("not a JSON envelope", f"the body is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[… a megabyte deep
        raise CallbackError("not a JSON envelope", "the body is not JSON") from None
    encrypt = envelope.get("encrypt") if isinstance(envelope, dict) else None
    if not isinstance(encrypt, str) or not encrypt.strip():
        raise CallbackError("no encrypt field", 'the body has no non-empty "encrypt" text')
    return encrypt.strip()


def decrypt_event(crypt: CallbackCrypt, params: dict[str, str], body: bytes) -> dict[str, Any]:
    """Signature (query `signature`, or `msg_signature`), then decryption, then the event JSON."""
    plain = crypt.verify_and_decrypt(
        params.get("signature") or params.get("msg_signature") or "",
        params.get("timestamp") or params.get("timeStamp") or "",
        params.get("nonce") or "",
        envelope_encrypt(body),
    )
    try:
        event = json.loads(plain)
    except (ValueError, RecursionError):
        raise CallbackError("not a DingTalk event", "the decrypted message is not JSON") from None
    if not isinstance(event, dict):
        raise CallbackError("not a DingTalk event", "the decrypted message is not a JSON object")
    return event


def sealed_answer(crypt: CallbackCrypt, message: str = "success") -> dict[str, str]:
    """What DingTalk expects back: `message` encrypted, signed, with a fresh timeStamp and nonce."""
    timestamp, nonce = str(int(time.time() * 1000)), secrets.token_hex(8)
    encrypt, signature = crypt.seal(message, timestamp=timestamp, nonce=nonce)
    return {"msg_signature": signature, "timeStamp": timestamp, "nonce": nonce, "encrypt": encrypt}


class DingTalkCallbacks:
    """DingTalk's 事件订阅 (HTTP推送) rules: a JSON body {"encrypt"}, the signature over (token, timestamp,
    nonce, encrypt) in the query, AES with the aes_key and the app key as receive id; the answer is the
    encrypted "success" as JSON. `check_url` is DingTalk's check of the URL: answered, not kept."""

    signature_params = ("signature", "msg_signature", "timestamp", "timeStamp", "nonce")

    def __init__(self, crypt: CallbackCrypt) -> None:
        self.crypt = crypt

    def verify_url(self, params: dict[str, str]) -> str:
        raise CallbackError("not a DingTalk request", "DingTalk checks its URL with a POST (check_url)")

    def accept(self, params: dict[str, str], body: bytes) -> bool:
        return decrypt_event(self.crypt, params, body).get("EventType") != CHECK_URL

    def answer(self) -> tuple[bytes, str]:
        return json.dumps(sealed_answer(self.crypt)).encode("ascii"), "application/json"


def callback_handler(config: SourceConfig) -> DingTalkCallbacks:
    return DingTalkCallbacks(callback_crypt(config))
