"""The shared shape of every connector stream (Meltano/dlt style): metadata plus `read`.

A stream yields batches of SourceRecord from a Cursor; the hub, not the stream, stores the cursor
and commits it only after the archive write has committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, order=True)
class Cursor:
    """Incremental position: change timestamp with the primary key as tie-break.

    Reading starts at a *closed* boundary (`changed_at - lookback`, inclusive), so records committed
    late with an older timestamp are still seen; duplicates this re-reads are dropped by primary key
    and fingerprint downstream.
    """

    changed_at: dt.datetime
    key: str = ""

    def to_json(self) -> dict[str, str]:
        return {"changed_at": self.changed_at.isoformat(), "key": self.key}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Cursor | None:
        if not value:
            return None
        return cls(dt.datetime.fromisoformat(value["changed_at"]), str(value.get("key", "")))


@dataclass
class SourceRecord:
    stream: str
    key: str  # primary key in the source, as a string
    changed_at: dt.datetime | None
    data: dict[str, Any]
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cursor(self) -> Cursor | None:
        return Cursor(self.changed_at, self.key) if self.changed_at else None


class Stream(Protocol):
    name: str
    primary_key: Sequence[str]
    system: str

    def check(self) -> None:
        """Raise ConfigError/SourceError if the source cannot be read with this configuration."""

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        """Batches in (changed_at, key) order, starting at the closed look-back boundary."""

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        """The current version of the given records (used to re-drive quarantine)."""


# Optional on a stream: `on_archived(session, [(ArchiveRecord, 档号, package_id), ...])`, called inside
# the catalog transaction that registers the packages, so derived rows (bank entries for
# reconciliation, approval links) commit together with the archive write or not at all.
