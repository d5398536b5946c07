"""Bank statement inbox: every statement file dropped in a folder becomes one archive package.

The stream lists the inbox (dotfiles and partial uploads `*.part`/`*.tmp` ignored), reads each file
whose change time lies at or after the cursor's closed look-back boundary, and yields one record per
distinct file content: the key is the SHA-256 of the bytes, so the same file dropped twice, even
under another name, is one record. The change time is max(mtime, ctime): a file moved or copied in
with a preserved old mtime (`mv`, `cp -p`, `rsync -t`, SFTP `put -p`) still counts as new.

A file that parses and adds up yields data for the mapping (`mappings/bank_statement.yaml`) and two
attachments: the original, byte-for-byte (a content-addressed copy taken at read time, so the
package holds exactly the bytes whose hash is the key), and `statement.json` with the canonical
statements. A file that is refused (malformed, wrong encoding, XML bomb, unknown currency, balance
that does not add up) is copied to `<ARCHIVE_HUB_HOME>/quarantine/<source>/<sha256>-<name>` and
yielded with a `_refused` reason, which the map step turns into a quarantine entry; the other files
go on. A file whose statements are all in the catalog already (a re-export, a renamed copy) is
skipped: nothing new is archived, and one `bank-duplicate-skipped` event records it.

`on_archived` stores the statements and their booked entries in `bank_statement` and
`bank_statement_entry` inside the archive transaction, each booking once across overlapping
intraday reports, for reconciliation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archive_sink.durability import replace_file
from canonical_model.bank_statement import BankStatement
from connectors.bank import checks, detect, statement_catalog
from connectors.bank.errors import StatementError, UnknownFormatError
from connectors.bank.statement_catalog import PARSED_NAME
from connectors.errors import ConfigError
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from archive_hub.sources import SourceConfig
    from canonical_model.record import ArchiveRecord

log = logging.getLogger(__name__)

PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload", ".swp")
CONNECTION_KEYS = {"inbox", "layout", "settle_seconds", "sftp"}
_EPOCH = dt.datetime(1970, 1, 1)


def _ns_to_datetime(ns: int) -> dt.datetime:
    """Naive UTC with microseconds, exact (no float rounding of the timestamp)."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _media_type(fmt: str, data: bytes) -> str:
    if data[:4] == b"PK\x03\x04":
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    if fmt.startswith("camt"):
        return "application/xml"
    if fmt.startswith("ofx"):
        return "application/x-ofx"
    if fmt.startswith("cn-csv"):
        return "text/csv"
    return "text/plain"  # MT940/MT942, BAI2


def _one_line(text: str, limit: int = 1000) -> str:
    return " ".join(text.split())[:limit]


@dataclass
class _File:
    path: Path
    name: str
    changed_at: dt.datetime
    sha256: str = ""


@dataclass
class _ReadState:
    """What one read has seen: statement fingerprints of accepted files and the skipped files."""

    fingerprints: dict[str, str] = field(default_factory=dict)  # fingerprint → file name
    skipped: list[dict[str, Any]] = field(default_factory=list)
    noted: int = 0  # how many of `skipped` have their event already


class BankInboxStream:
    name = "statements"
    primary_key = ("sha256",)

    def __init__(
        self,
        source_id: str,
        inbox: Path,
        *,
        work_dir: Path,
        quarantine_dir: Path,
        system: str = "bank-inbox",
        layout: str | None = None,
        catalog_url: str | None = None,
        settle_seconds: float = 0,
        fallback_responsible: str = "",
    ) -> None:
        self.source_id = source_id
        self.inbox = Path(inbox)
        self.work_dir = Path(work_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.system = system
        self.layout = layout
        self.catalog_url = catalog_url
        self.settle = dt.timedelta(seconds=settle_seconds)
        self.fallback_responsible = fallback_responsible
        self.skipped: list[dict[str, Any]] = []  # files skipped as already archived, by the last read

    def __repr__(self) -> str:
        return f"BankInboxStream({self.source_id}, {self.inbox})"

    # -- Stream protocol -------------------------------------------------------------------------
    def check(self) -> None:
        if self.inbox.exists() and not self.inbox.is_dir():
            raise ConfigError(self.source_id, "connection.inbox", f"{self.inbox} is not a directory")
        try:
            self.inbox.mkdir(parents=True, exist_ok=True)  # a watch folder nobody has dropped into yet
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                self.source_id, "connection.inbox", f"cannot create {exc.filename}: {exc.strerror}"
            ) from None
        if not os.access(self.inbox, os.R_OK | os.X_OK):
            raise ConfigError(self.source_id, "connection.inbox", f"{self.inbox} is not readable")
        if self.layout:
            from connectors.bank import cn

            try:
                cn.load_layout(self.layout)
            except Exception as exc:  # any failure to load is a config error
                raise ConfigError(self.source_id, "connection.layout", _one_line(str(exc), 300)) from None

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        start = cursor.changed_at - lookback - self.settle if cursor else None
        files = [f for f in self._listing() if start is None or f.changed_at >= start]  # closed boundary
        files = self._distinct(files)
        state = _ReadState()
        self.skipped = state.skipped
        known = self._known_files([f.sha256 for f in files])
        for offset in range(0, len(files), batch_size):
            batch: list[SourceRecord] = []
            for f in files[offset : offset + batch_size]:
                if f.sha256 in known:
                    continue  # archived (or skipped as a duplicate) before: nothing new, no re-parse
                record = self._record(f, state)
                if record is not None:
                    batch.append(record)
            self._note_skipped(state)
            if batch:
                yield batch

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        """The files with these hashes, from the inbox or, when gone from there, the quarantine copy."""
        wanted = set(keys)
        found: dict[str, _File] = {}
        for f in self._distinct(self._listing(settled_only=False)):
            if f.sha256 in wanted:
                found[f.sha256] = f
        if self.quarantine_dir.is_dir():
            for path in sorted(self.quarantine_dir.iterdir()):
                sha, _, name = path.name.partition("-")
                if sha in wanted and sha not in found and path.is_file():
                    st = path.stat()
                    found[sha] = _File(path, name, _ns_to_datetime(max(st.st_mtime_ns, st.st_ctime_ns)), sha)
        state = _ReadState()
        records = [self._record(found[k], state, dedupe=False) for k in keys if k in found]
        return [r for r in records if r is not None]

    def inventory(self) -> Iterator[list[SourceRecord]]:
        """Every distinct file in the inbox now, read or not (for `archive-hub reconcile`)."""
        files = self._distinct(self._listing(settled_only=False))
        skipped = statement_catalog.skipped_files(self.catalog_url, self.source_id, [f.sha256 for f in files])
        yield [
            SourceRecord(
                self.name, f.sha256, f.changed_at, {"file": f.name, "skipped_duplicate": f.sha256 in skipped}
            )
            for f in files
        ]

    # -- listing ---------------------------------------------------------------------------------
    def _listing(self, settled_only: bool = True) -> list[_File]:
        if not self.inbox.is_dir():
            return []
        settled_before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - self.settle
        out = []
        with os.scandir(self.inbox) as it:
            for entry in it:
                name = entry.name
                if name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:
                    continue  # vanished while listing
                if settled_only and self.settle and _ns_to_datetime(st.st_mtime_ns) > settled_before:
                    continue  # still being written, perhaps: next run
                changed = _ns_to_datetime(max(st.st_mtime_ns, st.st_ctime_ns))
                out.append(_File(Path(entry.path), name, changed))
        return out

    def _distinct(self, files: list[_File]) -> list[_File]:
        """Hash every file; of identical contents the earliest (time, name) wins; order (time, sha256)."""
        winners: dict[str, _File] = {}
        for f in sorted(files, key=lambda f: (f.changed_at, f.name)):
            try:
                f.sha256 = _sha256_file(f.path)
            except OSError as exc:
                # Unreadable now (permissions, vanished): fixing it changes ctime, so it is read again.
                log.warning("%s: skipping %s: %s", self.source_id, f.path, exc.strerror or exc)
                continue
            winners.setdefault(f.sha256, f)
        return sorted(winners.values(), key=lambda f: (f.changed_at, f.sha256))

    # -- one file --------------------------------------------------------------------------------
    def _parse(self, data: bytes, name: str) -> list[BankStatement]:
        try:
            fmt = detect.detect(data, source=name)
        except UnknownFormatError:
            if not self.layout:
                raise
            fmt = "cn-csv"
        return detect.parse(data, source=name, fmt=fmt, layout=self.layout if fmt == "cn-csv" else None)

    def _record(self, f: _File, state: _ReadState, dedupe: bool = True) -> SourceRecord | None:
        try:
            data = f.path.read_bytes()
        except OSError as exc:
            log.warning("%s: skipping %s: %s", self.source_id, f.path, exc.strerror or exc)
            return None
        sha = checks.file_fingerprint(data)
        if sha != f.sha256:
            log.info("%s: %s changed while reading; it is read again next run", self.source_id, f.name)
            return None
        try:
            statements = self._parse(data, f.name)
        except StatementError as exc:
            return self._refused(f, data, str(exc))
        except Exception as exc:  # a parser bug refuses this file, never the run
            return self._refused(
                f, data, f"{f.name}: internal error while parsing: {type(exc).__name__}: {exc}"
            )
        if not statements:
            return self._refused(f, data, f"{f.name}: the file carries no statement")
        bad = [s for s in statements if s.balance_check.startswith("does not add up")]
        if bad:
            s = bad[0]
            more = (
                f" ({len(bad) - 1} more statements in the file do not add up either)" if len(bad) > 1 else ""
            )
            return self._refused(
                f, data, f"{f.name}: {s.position}: account {s.account}: balance {s.balance_check}{more}"
            )
        if not any(_date_to(s) for s in statements):
            return self._refused(
                f,
                data,
                f"{f.name}: no statement date: no closing balance date, period, entry date or creation time",
            )
        fingerprints = [checks.statement_fingerprint(s) for s in statements]
        if dedupe:
            archived = self._archived_statements(fingerprints)
            if all(fp in state.fingerprints or fp in archived for fp in fingerprints):
                state.skipped.append(
                    {
                        "file": f.name,
                        "sha256": sha,
                        "statements": len(statements),
                        "archived_as": sorted({archived[fp] for fp in fingerprints if fp in archived}),
                        "same_as_file": sorted(
                            {state.fingerprints[fp] for fp in fingerprints if fp in state.fingerprints}
                        ),
                    }
                )
                log.info(
                    "%s: %s: all %d statements are archived already; nothing new",
                    self.source_id,
                    f.name,
                    len(statements),
                )
                return None
        state.fingerprints.update(dict.fromkeys(fingerprints, f.name))
        return SourceRecord(self.name, sha, f.changed_at, self._data(f, data, statements, fingerprints))

    def _refused(self, f: _File, data: bytes, reason: str) -> SourceRecord:
        """Keep the original bytes in quarantine and hand the map step one line saying why."""
        kept = self.quarantine_dir / f"{f.sha256}-{f.name}"
        replace_file(kept, data)
        reason = _one_line(reason)
        log.warning("%s: refused %s: %s", self.source_id, f.name, reason)
        return SourceRecord(
            self.name,
            f.sha256,
            f.changed_at,
            {
                "file": f.name,
                "sha256": f.sha256,
                "size": len(data),
                "changed_at": f.changed_at.isoformat(),
                "error": reason,
                "quarantined_copy": str(kept),
                "_refused": f"{reason} (original kept at {kept})",
            },
        )

    def _data(
        self, f: _File, data: bytes, statements: list[BankStatement], fingerprints: list[str]
    ) -> dict[str, Any]:
        folder = self.work_dir / f.sha256
        original = folder / "original"
        replace_file(original, data)
        parsed = json.dumps(
            {
                "file": f.name,
                "sha256": f.sha256,
                "statements": [
                    {
                        **s.to_json_dict(),
                        "fingerprint": fp,
                        "entry_keys": [checks.entry_key(e) for e in s.entries],
                    }
                    for s, fp in zip(statements, fingerprints, strict=True)
                ],
            },
            ensure_ascii=False,
            indent=1,
        ).encode()
        parsed_path = folder / PARSED_NAME
        replace_file(parsed_path, parsed)

        first = statements[0]
        accounts = list(dict.fromkeys(s.account for s in statements))
        currencies = list(dict.fromkeys(s.currency for s in statements))
        tos = [d for d in (_date_to(s) for s in statements) if d]
        date_to = max(tos) if tos else None
        froms = [d for d in (_date_from(s) for s in statements) if d]
        date_from = min(froms) if froms else date_to
        bank = first.account_bank or ""
        subject = f"{bank} {accounts[0]}".strip()
        if len(accounts) > 1:
            subject += f" 等{len(accounts)}个账户"
        fmt = (
            first.format
            if len({s.format for s in statements}) == 1
            else "+".join(dict.fromkeys(s.format for s in statements))
        )
        entry_count = sum(len(s.entries) for s in statements)
        single = len(statements) == 1 and first.closing_balance is not None
        summary_parts = [f"{len(statements)}份对账单, {entry_count}笔交易"]
        for s in statements[:5]:
            ob, cb = s.opening_balance, s.closing_balance
            summary_parts.append(
                f"账户 {s.account} {s.currency}"
                + (f" 期初 {ob.amount:f}" if ob else "")
                + (f" 期末 {cb.amount:f}" if cb else "")
                + f" ({len(s.entries)}笔; 余额校验: {s.balance_check})"
            )
        if len(statements) > 5:
            summary_parts.append(f"另有{len(statements) - 5}份")
        return {
            "file": f.name,
            "sha256": f.sha256,
            "size": len(data),
            "changed_at": f.changed_at.isoformat(),
            "format": fmt,
            "subject": subject,
            "account": accounts[0],
            "accounts": accounts,
            "currency": currencies[0],
            "bank": bank or None,
            "account_owner": first.account_owner,
            "responsible": bank or first.account_owner or self.fallback_responsible or accounts[0],
            "document_no": first.statement_id or first.message_id,
            # A date is required metadata: a file without any date is left for the mapping to refuse.
            "date": date_to.isoformat() if date_to else None,
            "date_from": date_from.isoformat() if date_from else None,
            "fiscal_year": date_to.year if date_to else None,
            "period": date_to.month if date_to else None,
            "closing_balance": f"{first.closing_balance.amount:f}" if single else None,  # type: ignore[union-attr]
            "summary": "; ".join(summary_parts)[:2000],
            "entry_count": entry_count,
            "statements": [
                {
                    "account": s.account,
                    "currency": s.currency,
                    "format": s.format,
                    "statement_id": s.statement_id,
                    "statement_number": s.statement_number,
                    "sequence_number": s.sequence_number,
                    "opening_balance": f"{s.opening_balance.amount:f}" if s.opening_balance else None,
                    "opening_date": _iso(s.opening_balance.date if s.opening_balance else None),
                    "closing_balance": f"{s.closing_balance.amount:f}" if s.closing_balance else None,
                    "closing_date": _iso(s.closing_balance.date if s.closing_balance else None),
                    "entry_count": len(s.entries),
                    "balance_check": s.balance_check,
                    "fingerprint": fp,
                }
                for s, fp in zip(statements, fingerprints, strict=True)
            ],
            "attachments": [
                {
                    "name": f.name,
                    "media_type": _media_type(first.format, data),
                    "uri": str(original),
                    "size": len(data),
                },
                {
                    "name": PARSED_NAME,
                    "media_type": "application/json",
                    "uri": str(parsed_path),
                    "size": len(parsed),
                },
            ],
        }

    # -- the hub's state (none when the stream runs without a catalog): see statement_catalog -----
    def _known_files(self, shas: list[str]) -> set[str]:
        return statement_catalog.known_files(self.catalog_url, self.source_id, shas)

    def _archived_statements(self, fingerprints: list[str]) -> dict[str, str]:
        return statement_catalog.archived_statements(self.catalog_url, fingerprints)

    def _note_skipped(self, state: _ReadState) -> None:
        """One hash-chained event per skipped file, so the skip is visible and the file not re-parsed."""
        new, state.noted = state.skipped[state.noted :], len(state.skipped)
        statement_catalog.note_skipped(self.catalog_url, self.source_id, new)

    def on_archived(self, session: Session, items: list[tuple[ArchiveRecord, str, int]]) -> None:
        """Statements and booked entries of the archived files, committed with the packages."""
        statement_catalog.record_archived(session, self.source_id, items)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _date_to(s: BankStatement) -> dt.date | None:
    if s.closing_balance and s.closing_balance.date:
        return s.closing_balance.date
    if s.period_to:
        return s.period_to.date()
    dates = [e.booking_date or e.value_date for e in s.entries if e.booking_date or e.value_date]
    if dates:
        return max(d for d in dates if d)
    return s.created_at.date() if s.created_at else None


def _date_from(s: BankStatement) -> dt.date | None:
    if s.opening_balance and s.opening_balance.date:
        return s.opening_balance.date
    if s.period_from:
        return s.period_from.date()
    dates = [e.booking_date or e.value_date for e in s.entries if e.booking_date or e.value_date]
    return min(d for d in dates if d) if dates else None


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def stream_from_config(config: SourceConfig) -> BankInboxStream:
    """`kind: bank.inbox` (see config/sources/bank_inbox.yaml)."""
    from archive_hub.settings import Settings
    from archive_hub.sources import refuse_unknown_settings

    conn = config.connection
    refuse_unknown_settings(config, CONNECTION_KEYS)
    if not conn.get("inbox"):
        raise ConfigError(
            config.id, "connection.inbox", "is required (the folder statement files are dropped in)"
        )
    try:
        settle = float(conn.get("settle_seconds", 0))
    except (TypeError, ValueError):
        raise ConfigError(config.id, "connection.settle_seconds", "must be a number of seconds") from None
    settings = Settings.from_env()
    inbox = Path(conn["inbox"])
    stream = BankInboxStream(
        config.id,
        inbox,
        work_dir=settings.home / "bank" / config.id,
        quarantine_dir=settings.home / "quarantine" / config.id,
        system=config.system,
        layout=conn.get("layout"),
        catalog_url=settings.catalog_url,
        settle_seconds=settle,
        fallback_responsible=config.fonds.fonds_name,
    )
    if conn.get("sftp"):
        from connectors.bank.sftp import SftpDrop

        return SftpDrop.from_config(stream, config.id, conn["sftp"])  # type: ignore[return-value]
    return stream
