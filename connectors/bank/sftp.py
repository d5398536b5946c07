"""SFTP drop for bank statement files: new remote files are fetched into the local inbox first.

Banks (and host-to-host gateways) often leave statements in an SFTP folder instead of pushing them.
`SftpDrop` wraps the inbox stream: each `check`/`read` first lists the remote folder and downloads
every settled file that is not in the inbox yet (to a hidden `.part` file, size-checked, then
renamed, so the inbox never sees half a file), then the inbox logic proceeds unchanged: the same
SHA-256 keys, refusals, duplicate skips and catalog entries.

Configuration (`connection.sftp` in the source YAML):
    host, port (22), username, password (write `${ENV_NAME}`: it is read from the environment),
    path (remote folder, default "."), known_hosts (file; default ~/.ssh/known_hosts: the server's
    host key is always verified).
The password is never logged, never put in an error message and never written anywhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.bank.inbox import PARTIAL_SUFFIXES, BankInboxStream
from connectors.errors import ConfigError, TransientSourceError
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from canonical_model.record import ArchiveRecord

log = logging.getLogger(__name__)

SFTP_KEYS = {"host", "port", "username", "password", "path", "known_hosts", "timeout_seconds"}
STATE_FILE = "sftp-fetched.json"


class SftpDrop:
    """A bank inbox stream fed from an SFTP folder."""

    def __init__(
        self,
        inner: BankInboxStream,
        *,
        host: str,
        port: int,
        username: str,
        password: str | None,
        path: str,
        known_hosts: str | None = None,
        timeout: float = 30,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.primary_key = inner.primary_key
        self.system = inner.system
        self.host, self.port, self.username = host, port, username
        self._password = password
        self.path = path
        self.known_hosts = known_hosts
        self.timeout = timeout
        self.fetched: list[str] = []  # names downloaded by the last fetch

    def __repr__(self) -> str:  # never the password
        return f"SftpDrop({self.inner.source_id}, sftp://{self.username}@{self.host}:{self.port}/{self.path})"

    @classmethod
    def from_config(cls, inner: BankInboxStream, source_id: str, conf: Any) -> SftpDrop:
        if not isinstance(conf, dict):
            raise ConfigError(
                source_id, "connection.sftp", "must be a mapping (host, username, password, path)"
            )
        unknown = sorted(set(conf) - SFTP_KEYS)
        if unknown:
            raise ConfigError(
                source_id,
                f"connection.sftp.{unknown[0]}",
                f"unknown setting (known: {', '.join(sorted(SFTP_KEYS))})",
            )
        for key in ("host", "username"):
            if not conf.get(key):
                raise ConfigError(source_id, f"connection.sftp.{key}", "is required")
        numbers: dict[str, float] = {}
        for key, default in (("port", 22), ("timeout_seconds", 30)):
            try:
                numbers[key] = float(conf.get(key, default))
            except (TypeError, ValueError):
                raise ConfigError(source_id, f"connection.sftp.{key}", "must be a number") from None
        port, timeout = int(numbers["port"]), numbers["timeout_seconds"]
        known = conf.get("known_hosts")
        if known and not Path(known).is_file():
            raise ConfigError(source_id, "connection.sftp.known_hosts", f"{known} is not a file")
        return cls(
            inner,
            host=str(conf["host"]),
            port=port,
            username=str(conf["username"]),
            password=str(conf["password"]) if conf.get("password") else None,
            path=str(conf.get("path") or "."),
            known_hosts=str(known) if known else None,
            timeout=timeout,
        )

    # -- Stream protocol: fetch, then the inbox does the rest ------------------------------------
    def check(self) -> None:
        self.inner.check()
        self.fetch()

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        self.fetch()
        yield from self.inner.read(cursor, lookback=lookback, batch_size=batch_size)

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        return self.inner.read_keys(keys)

    def on_archived(self, session: Session, items: list[tuple[ArchiveRecord, str, int]]) -> None:
        self.inner.on_archived(session, items)

    # -- the SFTP part ---------------------------------------------------------------------------
    def fetch(self) -> list[str]:
        """Download new settled remote files into the inbox; returns their names."""
        self.fetched = asyncio.run(self._fetch())
        if self.fetched:
            log.info("%s: fetched %d file(s) from %r", self.inner.source_id, len(self.fetched), self)
        return self.fetched

    async def _fetch(self) -> list[str]:
        import asyncssh

        sid = self.inner.source_id
        where = f"{self.username}@{self.host}:{self.port}"
        options: dict[str, Any] = {
            "username": self.username,
            "password": self._password,
            "client_keys": None,
            "agent_path": None,
            "connect_timeout": self.timeout,
        }
        if self.known_hosts:
            options["known_hosts"] = self.known_hosts
        try:
            async with (
                asyncssh.connect(self.host, self.port, **options) as conn,
                conn.start_sftp_client() as sftp,
            ):
                return await self._download_new(sftp)
        except asyncssh.PermissionDenied:
            raise ConfigError(sid, "connection.sftp.password", f"SFTP login refused for {where}") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise ConfigError(
                sid,
                "connection.sftp.known_hosts",
                f"host key of {self.host}:{self.port} not trusted: {exc.reason}",
            ) from None
        except asyncssh.SFTPNoSuchFile:
            raise ConfigError(sid, "connection.sftp.path", f"no folder {self.path!r} on {where}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            raise TransientSourceError(f"{sid}: SFTP {where} failed: {reason}") from None

    async def _download_new(self, sftp: Any) -> list[str]:
        import asyncssh

        inbox = self.inner.inbox
        inbox.mkdir(parents=True, exist_ok=True)
        state_path = self.inner.work_dir / STATE_FILE
        state: dict[str, list[float]] = json.loads(state_path.read_text()) if state_path.is_file() else {}
        settled_before = dt.datetime.now(dt.UTC).timestamp() - self.inner.settle.total_seconds()
        fetched = []
        for entry in sorted(await sftp.readdir(self.path), key=lambda e: e.filename):
            name = entry.filename
            attrs = entry.attrs
            if name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES) or "/" in name:
                continue
            if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                continue
            size, mtime = int(attrs.size or 0), float(attrs.mtime or 0)
            if self.inner.settle and mtime > settled_before:
                continue  # perhaps still being uploaded by the bank
            local = inbox / name
            if state.get(name) == [size, mtime] and local.is_file():
                continue  # fetched before and still here
            tmp = inbox / f".{name}.sftp.part"
            # preserve: the remote mtime (already settled there); the rename gives a fresh ctime for the cursor
            await sftp.get(posixpath.join(self.path, name), str(tmp), preserve=True)
            got = tmp.stat().st_size
            if got != size:
                tmp.unlink(missing_ok=True)
                log.warning(
                    "%s: %s: got %d of %d bytes; fetched again next run",
                    self.inner.source_id,
                    name,
                    got,
                    size,
                )
                continue
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, local)
            state[name] = [size, mtime]
            fetched.append(name)
        if fetched:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp_state = state_path.with_name(f".{STATE_FILE}.tmp")
            tmp_state.write_text(json.dumps(state, sort_keys=True))
            os.replace(tmp_state, state_path)
        return fetched
