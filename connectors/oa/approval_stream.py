"""The shape every OA approval source has: an inbox of what the OA system said, read from a cursor.

A vendor module (wecom.py, dingtalk.py) says two things: which approval a kept message announces
(`_callback`: decrypt, check, read the event) and how to fetch a finished approval as a record
(`_record`: detail, files, names). Everything else is here and the same for every OA system: the
closed look-back read of the inbox, one record per approval however often it was announced, refusals
that keep what was received, approvals passed over (not finished) and those withdrawn after they were
archived (noted once), quarantine retry by key, and the approval facts committed with the packages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from archive_sink.durability import replace_file
from connectors.errors import ConfigError
from connectors.oa.approval_inbox import ApprovalInbox, InboxEntry
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from canonical_model.record import ArchiveRecord

log = logging.getLogger(__name__)

# An inbox entry is named by its receive time before its rename makes it visible: with receivers on several
# hosts (or a clock step) an older name can appear after a newer one was read, so the look-back must cover it.
MIN_LOOKBACK_SECONDS = 60
DETAIL_NAME = "审批单.json"


class ApprovalInboxStream:
    name = "approvals"
    primary_key = ("approval_no",)
    vendor = "OA"

    def __init__(
        self,
        source_id: str,
        inbox: ApprovalInbox,
        *,
        work_dir: Path,
        quarantine_dir: Path,
        system: str,
        templates: Sequence[str] = (),
        timezone: str = "Asia/Shanghai",
        catalog_url: str | None = None,
    ) -> None:
        self.source_id = source_id
        self.inbox = inbox
        self.work_dir = Path(work_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.system = system
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

    def _record(self, key: str, received: dt.datetime, announced: bytes = b"") -> SourceRecord | None:
        """The finished approval as a record, a refusal, or None when it is not (or no longer) finished.
        `announced`: the inbox message that named it, kept if the OA system cannot give the approval."""
        raise NotImplementedError

    def check_api(self) -> None:
        """Raise ConfigError naming the setting when the OA system refuses the credentials."""
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
        for entry in self.inbox.entries():
            sp_no, _ = self._announced(entry)
            if sp_no:
                received[sp_no] = entry.received_at
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
