"""The shape every OA approval source has: an inbox of what the OA system said, read from a cursor.

A vendor module (wecom.py, dingtalk.py) says three things: which approval a kept message announces
(`_callback`: decrypt, check, read the event), how to fetch a finished approval as a record
(`_record`: detail, files, names), and which approvals its list API says are finished
(`finished_between`, for `archive-hub oa backfill`). Everything else is here and the same for every OA
system: the closed look-back read of the inbox, one record per approval however often it was announced,
refusals that keep what was received, approvals passed over (not finished) and those withdrawn after they
were archived (noted once), quarantine retry by key, and the approval facts committed with the packages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from archive_sink.durability import replace_file
from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.oa.approval_inbox import ApprovalInbox, InboxEntry, approval_inbox_dir
from connectors.oa.callback_crypto import CallbackCrypt
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from archive_hub.sources import SourceConfig
    from canonical_model.record import ArchiveRecord

log = logging.getLogger(__name__)

# An inbox entry is named by its receive time before its rename makes it visible: with receivers on several
# hosts (or a clock step) an older name can appear after a newer one was read, so the look-back must cover it.
MIN_LOOKBACK_SECONDS = 60
DETAIL_NAME = "审批单.json"
FINISHED, PENDING, PASSED, REVOKED = "finished", "pending", "passed", "revoked"  # what a detail says


class ApprovalInboxStream:
    name = "approvals"
    primary_key = ("approval_no",)
    vendor = "OA"
    listing = "list API"  # the vendor's call behind finished_between, named in the inbox entries it adds

    def __init__(
        self,
        source_id: str,
        api: Any,
        crypt: Any,
        inbox: ApprovalInbox,
        *,
        work_dir: Path,
        quarantine_dir: Path,
        system: str | None = None,
        templates: Sequence[str] = (),
        timezone: str = "Asia/Shanghai",
        catalog_url: str | None = None,
    ) -> None:
        self.source_id = source_id
        self.api = api  # the vendor's API client (WeComApi, DingTalkApi): token, detail, files, names, list
        self.crypt = crypt  # the vendor's callback keys (CallbackCrypt, Feishu's): every message re-checked
        self.inbox = inbox
        self.work_dir = Path(work_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.system = system or self.vendor.lower()  # the source system's name: "wecom", "dingtalk"
        self.templates = set(templates)
        self.tz = ZoneInfo(timezone)
        self.passed_over: dict[str, str] = {}  # approval number → why, by the last read
        self.revoked: dict[str, str] = {}  # approval number → what the OA system said, by the last read
        self.catalog_url = catalog_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source_id})"

    # -- what a vendor module provides --------------------------------------------------------------
    def _callback(self, entry: InboxEntry) -> tuple[str | None, str | None]:
        """(approval number, None) of a message about a finished approval; (None, reason) of an unusable
        one; (None, None) when the message is not one to archive (still running, rejected, another event)."""
        raise NotImplementedError

    not_found: type[Exception] = LookupError  # the API client's "no such approval" (a SourceError)
    template_word = "template"  # what the vendor calls a form template, in pass-over reasons

    def _state(self, detail: dict[str, Any]) -> tuple[str, str]:
        """(state, the vendor's word for it) from the detail; state is FINISHED, PENDING (not yet),
        PASSED (rejected, cancelled: never archived) or REVOKED (withdrawn: noted if it was archived)."""
        raise NotImplementedError

    def _template(self, detail: dict[str, Any]) -> str:
        """The form template (WeCom template id, DingTalk process code, Feishu approval code)."""
        raise NotImplementedError

    def _fields(self, detail: dict[str, Any], key: str) -> dict[str, Any]:
        """The detail flattened for the mapping (approval_data of the vendor module)."""
        raise NotImplementedError

    def _fetch(self, key: str, file: dict[str, str]) -> tuple[bytes, str, str]:
        """One file of the form: (bytes, name, media type)."""
        raise NotImplementedError

    # -- one approval ----------------------------------------------------------------------------
    def _record(self, key: str, received: dt.datetime, announced: bytes = b"") -> SourceRecord | None:
        """The finished approval as a record, a refusal, or None when it is not (or no longer) finished.
        `announced`: the inbox message that named it, kept if the OA system cannot give the approval."""
        try:
            detail, raw = self.api.approval_detail(key)
        except TransientSourceError:
            raise  # the run fails and keeps its cursor; the next run asks again
        except SourceError as exc:
            unknown = f"{self.vendor} does not know it: " if isinstance(exc, self.not_found) else ""
            return self._refused(key, received, f"{self.noun} {key}: {unknown}{exc}", announced)
        state, said = self._state(detail)
        if state in (PASSED, REVOKED):  # changed since the message: not an accounting record
            self.pass_over(key, f"now {said}", revoked=said if state == REVOKED else None)
            return None
        if state == PENDING:
            # The message said finished, the detail does not (yet): kept in quarantine, so a retry asks again
            # rather than the cursor moving past an approval that will be finished.
            reason = f"the callback said it is finished, {self.vendor}'s detail says {said}"
            return self._refused(key, received, f"{self.noun} {key}: {reason}", raw)
        template = self._template(detail)
        if self.templates and template and template not in self.templates:
            self.pass_over(key, f"{self.template_word} {template} not configured")
            return None
        return self._assembled(
            key, received, raw, lambda: self._fields(detail, key), lambda f: self._fetch(key, f)
        )

    def check_api(self) -> None:
        """Raise ConfigError naming the setting when the OA system refuses the credentials."""
        self.api.token(renew=True)

    def finished_between(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Approval numbers the OA system lists as finished, applied for in [start, end] (aware times): what
        `archive-hub oa backfill` adds to the inbox when callbacks were missed."""
        raise NotImplementedError

    # -- Stream protocol -------------------------------------------------------------------------
    def check(self) -> None:
        for folder in (self.inbox.folder, self.work_dir, self.quarantine_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    self.source_id, "ARCHIVE_HUB_HOME", f"cannot create {folder}: {exc}"
                ) from None
        self.check_api()

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        since = cursor.changed_at - lookback if cursor else None
        self.passed_over, self.revoked = {}, {}
        latest: dict[str, tuple[dt.datetime, InboxEntry | None, str | None]] = {}
        for entry in self.inbox.entries(since):
            sp_no, refusal = self._announced(entry)
            if sp_no is None and refusal is None:
                continue  # not a finished approval: nothing to archive
            key = sp_no or f"inbox:{entry.path.name}"
            latest[key] = (entry.received_at, entry, refusal)  # entries come oldest first
        for key in latest:  # an earlier 审批中 message does not make a finished approval "passed over"
            self.passed_over.pop(key, None)
        keys = sorted(latest, key=lambda k: (latest[k][0], k))
        for offset in range(0, len(keys), batch_size):
            batch = []
            for key in keys[offset : offset + batch_size]:
                received, entry, refusal = latest[key]
                if refusal is not None:
                    batch.append(
                        self._refused(key, received, refusal, entry.path.read_bytes() if entry else b"")
                    )
                    continue
                record = self._record(key, received, entry.path.read_bytes() if entry else b"")
                if record is not None:
                    batch.append(record)
            if batch:
                yield batch
        if self.revoked:
            from archive_hub.approvals import note_revoked

            for code in note_revoked(self.catalog_url, self.source_id, self.revoked):
                log.warning(
                    "%s: %s was withdrawn after approval (通过后撤销); noted for reconciliation",
                    self.source_id,
                    code,
                )
        if self.passed_over:
            log.info(
                "%s: %d approvals passed over (not finished): %s",
                self.source_id,
                len(self.passed_over),
                ", ".join(f"{k} {v}" for k, v in list(self.passed_over.items())[:20]),
            )

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        """The approvals as the OA system has them now (quarantine retry), stamped with their last inbox time."""
        received = {}
        self.passed_over, self.revoked = {}, {}  # this retry's own, not the last read's
        for entry in self.inbox.entries():
            sp_no, _ = self._announced(entry)
            if sp_no:
                received[sp_no] = entry.received_at
        self.passed_over, self.revoked = {}, {}  # what the inbox said before; the records say what is now
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        out = []
        for key in keys:
            if key.startswith("inbox:"):
                continue  # an unreadable message stays what it was; the receiver refuses its like now
            record = self._record(key, received.get(key, now))
            if record is not None:
                out.append(record)
        return out

    def on_archived(self, session: Session, items: list[tuple[ArchiveRecord, str, int]]) -> None:
        """The approvals' facts for reconciliation, committed with the packages."""
        from archive_hub.approvals import record_archived

        record_archived(session, self.source_id, items)

    # -- inbox messages --------------------------------------------------------------------------
    def _announced(self, entry: InboxEntry) -> tuple[str | None, str | None]:
        where = f"inbox message {entry.path.name}"
        if entry.kind == "poll":
            number = str(entry.content.get("sp_no") or "")
            return (number, None) if number else (None, f"{where}: no approval number")
        if entry.kind != "callback":
            return None, f"{where}: {entry.content.get('error') or 'unknown kind ' + repr(entry.kind)}"
        return self._callback(entry)

    def pass_over(self, number: str, why: str, *, revoked: str | None = None) -> None:
        """Not archived now: not finished, not configured, or withdrawn (`revoked`: after approval)."""
        self.passed_over[number] = why
        if revoked:
            self.revoked[number] = revoked

    noun = "审批实例"  # what the vendor calls one approval, in refusal reasons

    def _assembled(
        self,
        key: str,
        received: dt.datetime,
        raw: bytes,
        fields: Callable[[], dict[str, Any]],
        fetch: Callable[[dict[str, str]], tuple[bytes, str, str]],
    ) -> SourceRecord:
        """A finished approval as the record the mapping reads: `fields()` (with its "files"), each file
        fetched by `fetch(file) -> (bytes, name, media type)` into a content-addressed copy, and the detail
        answer `raw` byte for byte as 审批单.json. A file that cannot be fetched whole, or a detail not in
        the vendor's shape, refuses the approval with the detail kept."""
        folder = self.work_dir / key
        try:
            data = fields()
            files = []
            for n, f in enumerate(data.pop("files"), 1):
                try:
                    content, name, kind = fetch(f)
                except SourceError as exc:
                    label = f.get("file_id") or f.get("name") or ""
                    raise SourceError(f"{f['control']}: file {n} ({label[:24]}): {exc}") from None
                path = folder / hashlib.sha256(content).hexdigest()
                replace_file(path, content)
                files.append({"name": name, "media_type": kind, "uri": str(path), "size": len(content)})
        except SourceError as exc:
            return self._refused(key, received, f"{self.noun} {key}: {exc}", raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = f"detail not in {self.vendor}'s shape: {type(exc).__name__}: {exc}"
            return self._refused(key, received, f"{self.noun} {key}: {reason}", raw)
        detail_path = folder / DETAIL_NAME
        replace_file(detail_path, raw)
        detail = {
            "name": DETAIL_NAME,
            "media_type": "application/json",
            "uri": str(detail_path),
            "size": len(raw),
        }
        data["attachments"] = [detail, *files]
        data["changed_at"] = received.isoformat()
        return SourceRecord(self.name, key, received, data)

    def _refused(self, key: str, received: dt.datetime, reason: str, original: bytes) -> SourceRecord:
        """Keep what was received and hand the map step one line saying why."""
        safe = key.replace("/", "_").replace(":", "_")
        kept = self.quarantine_dir / f"{safe}-{hashlib.sha256(original).hexdigest()[:16]}"
        replace_file(kept, original)
        reason = " ".join(reason.split())[:1000]
        log.warning("%s: refused %s: %s", self.source_id, key, reason)
        return SourceRecord(
            self.name,
            key,
            received,
            {"sp_no": key, "error": reason, "_refused": f"{reason} (original kept at {kept})"},
        )


# -- configuration every OA source reads the same way -------------------------------------------------------
def checked_connection(
    config: SourceConfig, known: set[str], required: Sequence[str], urls: Mapping[str, str]
) -> dict[str, Any]:
    """The connection settings, refused at once naming the setting: unknown keys, missing ones, URLs that
    are not http(s), a look-back too short for an inbox, a time zone nobody knows."""
    from archive_hub.sources import refuse_unknown_settings

    conn = config.connection
    refuse_unknown_settings(config, known)
    for key in required:
        if not conn.get(key):
            raise ConfigError(config.id, f"connection.{key}", "is required")
    for key, url in urls.items():
        if not url.startswith(("https://", "http://")):
            raise ConfigError(config.id, f"connection.{key}", "must be an http(s):// URL")
    if config.lookback_seconds < MIN_LOOKBACK_SECONDS:
        raise ConfigError(
            config.id, "lookback_seconds", f"must be at least {MIN_LOOKBACK_SECONDS} for an approval inbox"
        )
    tz = str(conn.get("timezone", "Asia/Shanghai"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(config.id, "connection.timezone", f"unknown time zone {tz!r}") from None
    return conn


def callback_crypt_of(config: SourceConfig, receive_id_key: str, key_name: str) -> CallbackCrypt:
    """The source's callback crypto: connection.callback.{token, aes_key}, the receive id from
    connection.<receive_id_key> (WeCom's corp id, DingTalk's app key)."""
    conn = config.connection
    callback = conn.get("callback") or {}
    if not conn.get(receive_id_key):
        raise ConfigError(config.id, f"connection.{receive_id_key}", "is required")
    for key in ("token", "aes_key"):
        if not callback.get(key):
            raise ConfigError(config.id, f"connection.callback.{key}", "is required (the receiver checks it)")
    try:
        return CallbackCrypt(str(callback["token"]), str(callback["aes_key"]), str(conn[receive_id_key]))
    except ValueError:
        raise ConfigError(
            config.id, "connection.callback.aes_key", f"must be the 43-character {key_name}"
        ) from None


def inbox_stream_settings(config: SourceConfig) -> dict[str, Any]:
    """Where an OA source keeps its inbox, downloads and refusals, and what it reports to (the catalog)."""
    from archive_hub.settings import Settings

    settings = Settings.from_env()
    return {
        "inbox": ApprovalInbox(approval_inbox_dir(settings.home, config.id)),
        "work_dir": settings.home / "oa" / config.id,
        "quarantine_dir": settings.home / "quarantine" / config.id,
        "system": config.system,
        "timezone": str(config.connection.get("timezone", "Asia/Shanghai")),
        "catalog_url": settings.catalog_url,
    }


def approval_fields(
    *,
    applicant: str,
    applicant_id: str,
    finished: dt.datetime,
    form: dict[str, str],
    amounts: list[tuple[bool, str]],
    trail: list[dict[str, Any]],
    files: list[dict[str, str]],
) -> dict[str, Any]:
    """What every vendor's approval gives the mapping alike: the dates of the books (the day it was finished,
    in the source's time zone), the amount (the form's own total before a table row's), 事由, a 摘要 that
    carries the trail, and the agents (经办 the applicant, 审批 each approver who agreed)."""
    reason = next((v for k, v in form.items() if "事由" in k or "说明" in k), "")
    approvers = "; ".join(
        f"{t['name']} {t['status']} {t['time'][:16].replace('T', ' ') if t['time'] else ''}"
        + (f" ({t['speech']})" if t["speech"] else "")
        for t in trail
    )
    summary = [f"事由: {reason}" if reason else ""]
    summary += [f"{k}: {v}" for k, v in form.items() if v and "事由" not in k]
    summary += [f"审批流程: {approvers}" if approvers else ""]
    return {
        "finished_at": finished.isoformat(),
        "finished_date": finished.date().isoformat(),
        "fiscal_year": finished.year,
        "period": finished.month,
        "amount": min(amounts, key=lambda a: a[0])[1] if amounts else None,
        "currency": "CNY",  # WeCom's Money control and DingTalk's MoneyField carry yuan
        "reason": reason,
        "summary": "; ".join(p for p in summary if p)[:2000],
        "form": form,
        "trail": trail,
        "agents": [{"role": "经办", "name": applicant, "code": applicant_id}]
        + [{"role": "审批", "name": t["name"], "code": t["userid"]} for t in trail if t["agreed"]],
        "files": files,
    }
