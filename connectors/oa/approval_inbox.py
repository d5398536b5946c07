"""The approval inbox: what OA systems told the hub, kept as received, one file per message.

An OA system announces a finished approval by a callback (WeCom's `sys_approval_change`, DingTalk's
`bpms_instance_change`); the callback receiver checks its signature, and only then writes the request
*as received* (signature parameters and body, byte for byte) into this folder, atomically (temp file,
fsync, rename), and answers at once: the vendor retries a slow or failing receiver, and the archive run
that fetches the form and its files may be busy. `archive-hub oa backfill` adds entries found by polling
the vendor's list API (callbacks missed while the receiver was down).

The stream reads the folder from its cursor (the receive time, in the file name, exact to the
nanosecond). Nothing is ever deleted here: the inbox is the evidence of what the OA system said when.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive_sink.durability import fsync_dir, replace_file

SUFFIX = ".json"
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class InboxEntry:
    path: Path
    received_at: dt.datetime  # naive UTC, from the file name
    kind: str  # "callback" (signature, body) or "poll" (sp_no found by listing)
    content: dict[str, Any]

    @property
    def body(self) -> bytes:
        return base64.b64decode(self.content.get("body_b64", ""))


class ApprovalInbox:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def put_callback(self, params: dict[str, str], body: bytes) -> Path:
        """Keep a callback whose signature was checked: its signature parameters and its body as received."""
        kept = {k: str(v)[:500] for k, v in params.items() if k not in ("kind", "received_at", "body_b64")}
        return self._put("callback", {**kept, "body_b64": base64.b64encode(body).decode("ascii")})

    def put_refused(self, params: dict[str, str], body: bytes, reason: str) -> Path:
        """Keep a refused request (bad signature, not decryptable) as received, with the reason."""
        return self._put(
            "refused",
            {
                "reason": reason,
                "params": {k: str(v)[:500] for k, v in params.items()},
                "body_b64": base64.b64encode(body).decode("ascii"),
            },
        )

    def put_polled(self, sp_no: str, how: str) -> Path:
        return self._put("poll", {"sp_no": sp_no, "found_by": how})

    def entries(self, since: dt.datetime | None = None) -> list[InboxEntry]:
        """Entries received at or after `since` (closed), oldest first; unreadable files are named."""
        if not self.folder.is_dir():
            return []
        out = []
        for name in sorted(os.listdir(self.folder)):
            if name.startswith(".") or not name.endswith(SUFFIX):
                continue
            stamp = name.split("-", 1)[0]
            if not stamp.isdigit():
                continue
            received = _EPOCH + dt.timedelta(microseconds=int(stamp) // 1000)
            if since is not None and received < since:
                continue
            path = self.folder / name
            try:
                content = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                content = {"kind": "unreadable", "error": f"{type(exc).__name__}: {exc}"}
            out.append(InboxEntry(path, received, str(content.get("kind", "unknown")), content))
        return out

    def _put(self, kind: str, content: dict[str, Any]) -> Path:
        stamp = time.time_ns()
        data = json.dumps(
            {
                "kind": kind,
                "received_at": (_EPOCH + dt.timedelta(microseconds=stamp // 1000)).isoformat() + "Z",
                **content,
            },
            ensure_ascii=False,
            sort_keys=True,
        ).encode()
        path = self.folder / f"{stamp:020d}-{hashlib.sha256(data).hexdigest()[:16]}{SUFFIX}"
        replace_file(path, data)  # temp file, fsync, rename
        fsync_dir(self.folder)  # the vendor is told "success" only once the entry survives a crash
        return path


def approval_inbox_dir(home: Path, source_id: str) -> Path:
    """Where the receiver keeps an OA source's messages: <ARCHIVE_HUB_HOME>/oa_inbox/<source>/."""
    return home / "oa_inbox" / source_id
