"""The standard connector test suite (after singer-sdk's get_tap_test_class): one line per connector.

    TestSampleErp = stream_test_class(lambda tmp_path: make_stream(tmp_path))

runs check, batch order, primary-key uniqueness, incremental resume from a cursor (closed start with
look-back), idempotent re-reads and key look-ups against a real local source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.stream import Cursor, SourceRecord, Stream

StreamFactory = Callable[[Path], Stream]


def read_all(
    stream: Stream,
    cursor: Cursor | None = None,
    lookback: dt.timedelta = dt.timedelta(0),
    batch_size: int = 7,
) -> list[SourceRecord]:
    return [r for batch in stream.read(cursor, lookback=lookback, batch_size=batch_size) for r in batch]


def stream_test_class(factory: StreamFactory) -> type:
    class StandardStreamTests:
        def test_check_passes(self, tmp_path: Path) -> None:
            factory(tmp_path).check()

        def test_metadata(self, tmp_path: Path) -> None:
            stream = factory(tmp_path)
            assert stream.name and stream.system and tuple(stream.primary_key)

        def test_batches_respect_size_and_cursor_order(self, tmp_path: Path) -> None:
            stream = factory(tmp_path)
            batches = list(stream.read(None, lookback=dt.timedelta(0), batch_size=7))
            assert batches and all(0 < len(b) <= 7 for b in batches)
            cursors = [r.cursor for b in batches for r in b]
            assert all(c is not None for c in cursors)
            assert cursors == sorted(cursors, key=_order)

        def test_primary_keys_are_unique(self, tmp_path: Path) -> None:
            records = read_all(factory(tmp_path))
            assert len({r.key for r in records}) == len(records)

        def test_incremental_resume_is_a_closed_boundary(self, tmp_path: Path) -> None:
            stream = factory(tmp_path)
            records = read_all(stream)
            middle = records[len(records) // 2]
            resumed = read_all(stream, middle.cursor)
            keys = {r.key for r in resumed}
            assert middle.key in keys  # closed start: the boundary record is read again
            later = {r.key for r in records if _order(r.cursor) > _order(middle.cursor)}
            assert later <= keys
            assert all(r.changed_at >= middle.changed_at for r in resumed)  # type: ignore[operator]

        def test_lookback_rereads_recent_records(self, tmp_path: Path) -> None:
            stream = factory(tmp_path)
            records = read_all(stream)
            last = records[-1]
            window = read_all(stream, last.cursor, lookback=dt.timedelta(days=40))
            assert len(window) > 1 and all(
                r.changed_at >= last.changed_at - dt.timedelta(days=40) for r in window
            )  # type: ignore[operator]

        def test_rereading_gives_identical_records(self, tmp_path: Path) -> None:
            stream = factory(tmp_path)
            assert _plain(read_all(stream)) == _plain(read_all(stream, batch_size=1000))

        def test_read_keys_returns_current_versions(self, tmp_path: Path) -> None:
            stream = factory(tmp_path)
            records = read_all(stream)
            wanted = [records[0].key, records[-1].key]
            found = stream.read_keys(wanted)
            assert sorted(r.key for r in found) == sorted(wanted)

    return StandardStreamTests


def _order(cursor: Cursor | None) -> tuple[Any, ...]:
    assert cursor is not None
    key = cursor.key
    return (cursor.changed_at, (0, int(key)) if key.isdigit() else (1, key))


def _plain(records: list[SourceRecord]) -> list[tuple[str, Any]]:
    return [(r.key, repr(sorted(r.data.items()))) for r in records]
