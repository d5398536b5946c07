"""Extract: read changed source records from the hub-owned cursor into extracted.jsonl."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from archive_hub.catalog.models import CursorRow, SyncRunRow
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import read_lines, write_lines
from connectors.stream import Cursor, SourceRecord


def load_cursor(ctx: RunContext) -> Cursor | None:
    with ctx.catalog.reading() as session:
        row = session.execute(
            select(CursorRow).where(CursorRow.source_id == ctx.source.id, CursorRow.stream == ctx.stream.name)
        ).scalar_one_or_none()
        return Cursor.from_json(row.value) if row else None


def extracted_row(record: SourceRecord) -> dict[str, Any]:
    """One line of extracted.jsonl: what map reads (also `archive-hub check`, which writes no file)."""
    return {"key": record.key, "changed_at": record.changed_at, "data": record.data}


def extract(ctx: RunContext) -> dict[str, Any]:
    with ctx.catalog.transaction() as session:
        if session.get(SyncRunRow, ctx.run_id) is None:
            session.add(SyncRunRow(run_id=ctx.run_id, source_id=ctx.source.id, status="running", summary={}))
    ctx.stream.check()
    start = None if ctx.from_start else load_cursor(ctx)
    high: Cursor | None = None
    seen: set[str] = set()
    repeated: set[str] = set()

    def rows():
        nonlocal high
        for batch in ctx.stream.read(start, lookback=ctx.source.lookback, batch_size=ctx.source.batch_size):
            for record in batch:
                if record.key in seen:  # changed while we paged: it shows up again, newer
                    repeated.add(record.key)
                seen.add(record.key)
                if record.cursor and (high is None or record.cursor > high):
                    high = record.cursor
                yield extracted_row(record)
            ctx.progress("extract", len(batch), None)

    path = ctx.run_dir / "extracted.jsonl"
    count = write_lines(path, rows())
    if repeated:  # keep only the last (newest) read of each repeated record
        lines = list(read_lines(path))
        last = {item["key"]: index for index, item in enumerate(lines)}
        count = write_lines(path, (item for index, item in enumerate(lines) if last[item["key"]] == index))
    return {
        "step": "extract",
        "source": ctx.source.id,
        "run_id": ctx.run_id,
        "records": count,
        "cursor_from": start.to_json() if start else None,
        "from_start": ctx.from_start,
        "cursor_to": high.to_json() if high else None,
    }
