"""WeCom (企业微信) approvals: a finished 审批单 becomes one 件 of 原始凭证, form, trail and files.

The OA user does nothing. WeCom calls the hub's callback receiver when an approval changes state; the
receiver checks the signature and keeps the message in the approval inbox (approval_inbox.py). This
stream reads the inbox from its cursor, decrypts each message again (the inbox is evidence, the
signature is checked on every read), and for every approval that is now 已通过 (or 已支付) fetches the
detail and every file of the form (发票, 附件) from the WeCom API. The package holds the detail answer
byte for byte as WeCom sent it and each file as downloaded; names come from `user/get`.

A message that cannot be decrypted, an approval WeCom no longer knows, or a file that cannot be
downloaded whole is refused: its bytes are kept under quarantine/<source>/ and the map step quarantines
it with the reason; the other approvals go on. Approvals still running, rejected or withdrawn are not
accounting records and are passed over (counted in the log). A transient failure (rate limit, 5xx,
timeout) that outlasts the retries fails the run, so the cursor stays and the next run fetches again.

`on_archived` records each approval's facts (`oa_approval`) for `archive-hub oa reconcile`, which pairs
approvals with the vouchers that booked them (审批单 ↔ 记账凭证).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from defusedxml import ElementTree as SafeET

from connectors.oa.approval_inbox import InboxEntry
from connectors.oa.approval_stream import (
    FINISHED as FINISHED_STATE,
)
from connectors.oa.approval_stream import (
    PASSED,
    PENDING,
    REVOKED,
    ApprovalInboxStream,
    approval_fields,
    callback_crypt_of,
    checked_connection,
    inbox_stream_settings,
)
from connectors.oa.callback_crypto import CallbackCrypt, CallbackError, wecom_envelope_encrypt
from connectors.oa.wecom_api import ApprovalNotFound, WeComApi

if TYPE_CHECKING:
    from archive_hub.sources import SourceConfig


STATUS = {1: "审批中", 2: "已通过", 3: "已驳回", 4: "已撤销", 6: "通过后撤销", 7: "已删除", 10: "已支付"}
FINISHED = {2, 10}  # an approval that has run its course: the form is a 原始凭证 now
WITHDRAWN = {3, 4, 6, 7}  # 驳回, 撤销, 通过后撤销, 删除: not an accounting record
REVOKED_AFTER_APPROVAL = 6  # 通过后撤销: if it was archived already, the hub notes it (never deletes it)
# A step's decision (sp_record.details.sp_status) has its own codes, not the approval's.
STEP_STATUS = {
    1: "审批中",
    2: "已同意",
    3: "已驳回",
    4: "已转审",
    11: "已退回",
    12: "已加签",
    13: "已同意并加签",
}
AGREED = {2, 13}
CONNECTION_KEYS = {"base_url", "corp_id", "secret", "callback", "templates", "timezone", "timeout"}


class WeComApprovalStream(ApprovalInboxStream):
    primary_key = ("sp_no",)
    vendor = "WeCom"
    noun = "审批单"
    not_found = ApprovalNotFound
    listing = "getapprovalinfo"

    def finished_between(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """已通过 and 已支付 approvals applied for in [start, end], of the configured templates (getapprovalinfo
        filters on one status, and one value of a key, a call)."""
        numbers: list[str] = []
        for status in sorted(FINISHED):
            for template in sorted(self.templates) or [None]:
                extra = [{"key": "template_id", "value": template}] if template else []
                numbers += self.api.approval_numbers(
                    start, end, [{"key": "sp_status", "value": str(status)}, *extra]
                )
        return list(dict.fromkeys(numbers))

    def _callback(self, entry: InboxEntry) -> tuple[str | None, str | None]:
        """WeCom's sys_approval_change: the signature checked again, the message decrypted and read."""
        where = f"inbox message {entry.path.name}"
        c = entry.content
        try:
            encrypt = wecom_envelope_encrypt(entry.body)
            plain = self.crypt.verify_and_decrypt(c["msg_signature"], c["timestamp"], c["nonce"], encrypt)
            event = SafeET.fromstring(plain.encode("utf-8"))
        except (CallbackError, KeyError, SafeET.ParseError, ValueError) as exc:
            return None, f"{where}: {getattr(exc, 'reason', None) or type(exc).__name__ + ': ' + str(exc)}"
        if event.findtext("Event") != "sys_approval_change":
            return None, None
        sp_no = (event.findtext("ApprovalInfo/SpNo") or "").strip()
        status = (event.findtext("ApprovalInfo/SpStatus") or "").strip()
        if not sp_no:
            return None, f"{where}: sys_approval_change without SpNo"
        if not status.isdigit() or int(status) not in FINISHED:
            code = int(status) if status.isdigit() else -1
            revoked = STATUS[REVOKED_AFTER_APPROVAL] if code == REVOKED_AFTER_APPROVAL else None
            self.pass_over(sp_no, STATUS.get(code, status), revoked=revoked)
            return None, None
        template = (event.findtext("ApprovalInfo/TemplateId") or "").strip()
        if self.templates and template not in self.templates:
            self.pass_over(sp_no, f"template {template} not configured")
            return None, None
        return sp_no, None

    # -- one approval: the base's _record asks these ----------------------------------------------
    def _state(self, detail: dict[str, Any]) -> tuple[str, str]:
        status = detail.get("sp_status")
        said = STATUS.get(status, str(status)) if isinstance(status, int) else str(status)
        if status in FINISHED:
            return FINISHED_STATE, said
        if status in WITHDRAWN:
            return (REVOKED if status == REVOKED_AFTER_APPROVAL else PASSED), said
        return PENDING, said

    def _template(self, detail: dict[str, Any]) -> str:
        return str(detail.get("template_id") or "")

    def _fields(self, detail: dict[str, Any], key: str) -> dict[str, Any]:
        return approval_data(detail, self.api.user_name, self.tz)

    def _fetch(self, key: str, file: dict[str, str]) -> tuple[bytes, str, str]:
        return self.api.media(file["file_id"])


# -- the detail as the mapping reads it ---------------------------------------------------------------
def approval_data(info: dict[str, Any], name_of: Callable[[str], str], tz: dt.tzinfo) -> dict[str, Any]:
    """Flatten a getapprovaldetail `info`: applicant, trail, form fields by title, amount, files."""

    def when(seconds: Any) -> dt.datetime:
        return dt.datetime.fromtimestamp(int(seconds), tz)

    applicant_id = str(info["applyer"]["userid"])
    applicant = name_of(applicant_id)
    trail = []
    for step_no, step in enumerate(info.get("sp_record") or [], 1):
        for d in step.get("details") or []:
            uid = str(d["approver"]["userid"])
            at = when(d["sptime"]) if d.get("sptime") else None
            trail.append(
                {
                    "step": step_no,
                    "userid": uid,
                    "name": name_of(uid),
                    "status": STEP_STATUS.get(d.get("sp_status"), str(d.get("sp_status"))),
                    "agreed": d.get("sp_status") in AGREED,
                    "time": at.isoformat() if at else None,
                    "speech": d.get("speech") or "",
                }
            )
    approved = [dt.datetime.fromisoformat(t["time"]) for t in trail if t["agreed"] and t["time"]]
    finished = max(approved) if approved else when(info["apply_time"])
    form: dict[str, str] = {}
    files: list[dict[str, str]] = []
    amounts: list[tuple[bool, str]] = []  # (inside a table, value): the form's own total wins over a row's
    _walk(info.get("apply_data", {}).get("contents") or [], "", form, files, amounts, tz)
    return {
        "sp_no": str(info["sp_no"]),
        "sp_name": str(info.get("sp_name") or "审批"),
        "template_id": str(info.get("template_id") or ""),
        "status": STATUS.get(info.get("sp_status"), str(info.get("sp_status"))),
        "applicant": applicant,
        "applicant_userid": applicant_id,
        "applicant_party": str(info["applyer"].get("partyid") or ""),
        "apply_time": when(info["apply_time"]).isoformat(),
        **approval_fields(
            applicant=applicant,
            applicant_id=applicant_id,
            finished=finished,
            form=form,
            amounts=amounts,
            trail=trail,
            files=files,
        ),
    }


def _walk(
    contents: list[dict[str, Any]],
    prefix: str,
    form: dict[str, str],
    files: list[dict[str, str]],
    amounts: list[tuple[bool, str]],
    tz: dt.tzinfo,
) -> None:
    for control in contents:
        kind = control.get("control", "")
        title = next((t.get("text", "") for t in control.get("title") or [] if t.get("lang") == "zh_CN"), "")
        title = prefix + (title or control.get("id", kind))
        value = control.get("value") or {}
        if kind == "Table":
            for row_no, row in enumerate(value.get("children") or [], 1):
                _walk(row.get("list") or [], f"{title}[{row_no}].", form, files, amounts, tz)
            continue
        if kind == "File":
            ids = [str(f["file_id"]) for f in value.get("files") or []]
            files.extend({"file_id": i, "control": title} for i in ids)
            form[title] = f"{len(ids)}个文件"
            continue
        if kind == "Money":
            amounts.append((bool(prefix), str(value.get("new_money", ""))))
        form[title] = _text(kind, value, tz)


def _text(kind: str, value: dict[str, Any], tz: dt.tzinfo) -> str:
    if kind in ("Text", "Textarea"):
        return str(value.get("text", ""))
    if kind == "Number":
        return str(value.get("new_number", ""))
    if kind == "Money":
        return str(value.get("new_money", ""))
    if kind == "Date":
        d = value.get("date") or {}
        stamp = d.get("s_timestamp")
        if not stamp:
            return ""
        moment = dt.datetime.fromtimestamp(int(stamp), tz)
        return moment.date().isoformat() if d.get("type") == "day" else moment.isoformat(timespec="minutes")
    if kind == "Selector":
        options = (value.get("selector") or {}).get("options") or []
        return "、".join(v.get("text", "") for o in options for v in o.get("value") or [])
    if kind == "Contact":
        return "、".join(str(m.get("name") or m.get("userid", "")) for m in value.get("members") or [])
    return json.dumps(value, ensure_ascii=False, sort_keys=True)[:500]


def stream_from_config(config: SourceConfig) -> WeComApprovalStream:
    """`kind: oa.wecom` (see config/sources/wecom_approvals.yaml)."""
    from connectors.http import HttpClient

    conn = checked_connection(
        config,
        CONNECTION_KEYS,
        ("base_url", "corp_id", "secret"),
        {"base_url": str(config.connection.get("base_url", ""))},
    )
    http = HttpClient(config.id, str(conn["base_url"]), timeout=float(conn.get("timeout", 20)))
    return WeComApprovalStream(
        config.id,
        WeComApi(config.id, str(conn["base_url"]), str(conn["corp_id"]), str(conn["secret"]), http=http),
        callback_crypt(config),
        templates=[str(t) for t in conn.get("templates") or []],
        **inbox_stream_settings(config),
    )


def callback_crypt(config: SourceConfig) -> CallbackCrypt:
    """The callback crypto of a source: Token, EncodingAESKey and the corp id as receive id."""
    return callback_crypt_of(config, "corp_id", "EncodingAESKey")


class WeComCallbacks:
    """WeCom's 接收事件服务器 rules: the XML envelope, msg_signature over (token, timestamp, nonce, Encrypt),
    AES with the EncodingAESKey and the corp id as receive id; "success" as the answer."""

    signature_params = ("msg_signature", "timestamp", "nonce")

    def __init__(self, crypt: CallbackCrypt) -> None:
        self.crypt = crypt

    def verify_url(self, params: dict[str, str]) -> str:
        return self.crypt.verify_and_decrypt(
            *(params.get(k, "") for k in self.signature_params), params.get("echostr", "")
        )

    def accept(self, params: dict[str, str], body: bytes) -> bool:
        encrypt = wecom_envelope_encrypt(body)
        self.crypt.verify_and_decrypt(*(params.get(k, "") for k in self.signature_params), encrypt)
        return True

    def answer(self) -> tuple[bytes, str]:
        return b"success", "text/plain"


def callback_handler(config: SourceConfig) -> WeComCallbacks:
    return WeComCallbacks(callback_crypt(config))
