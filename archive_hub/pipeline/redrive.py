"""Re-drive quarantined records: re-read them from the source (or from the stored raw payload when
the source no longer has them) and push them through map → validate → archive again."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from archive_hub.catalog import quarantine
from archive_hub.catalog.locks import source_lock
from archive_hub.pipeline.archive import archive
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import write_json, write_lines
from archive_hub.pipeline.transform import transform
from archive_hub.pipeline.validate import validate


def redrive(ctx: RunContext, item_ids: list[int] | None = None) -> dict[str, Any]:
    """Re-drive under the source's lock, so a retry never interleaves with a scheduled run."""
    with source_lock(ctx.catalog, ctx.settings.staging_root / ctx.source.id, ctx.source.id):
        return _redrive(ctx, item_ids)


def _redrive(ctx: RunContext, item_ids: list[int] | None = None) -> dict[str, Any]:
    with ctx.catalog.reading() as session:
        items = quarantine.open_items(session, ctx.source.id, item_ids)
    if not items:
        return {"source": ctx.source.id, "retried": 0, "resolved": 0, "still_quarantined": 0}
    keys = [i.business_id for i in items]
    # The source is asked first: a record fixed there is re-driven as it is now. A source error stops the
    # retry (SourceError/ConfigError reach the caller); only records the source no longer holds fall
    # back to the payload kept in quarantine, and the summary says how many did.
    fresh = {r.key: r for r in ctx.stream.read_keys(keys)}
    rows = []
    for item in items:
        record = fresh.get(item.business_id)
        if record is not None:
            rows.append(
                {"key": record.key, "changed_at": record.changed_at, "data": record.data, "from": "source"}
            )
        else:
            rows.append(
                {
                    "key": item.business_id,
                    "changed_at": None,
                    "data": json.loads(item.raw_payload),
                    "from": "quarantine",
                }
            )
    write_lines(ctx.run_dir / "extracted.jsonl", rows)
    mapped = transform(ctx)
    validated = validate(ctx)
    archived = archive(ctx)
    with ctx.catalog.reading() as session:
        still = {i.business_id for i in quarantine.open_items(session, ctx.source.id)}
    summary = {
        "source": ctx.source.id,
        "run_id": ctx.run_id,
        "retried": len(items),
        "from_source": sum(1 for r in rows if r["from"] == "source"),
        "from_quarantine_payload": sum(1 for r in rows if r["from"] == "quarantine"),
        "resolved": sum(1 for k in keys if k not in still),
        "still_quarantined": sum(1 for k in keys if k in still),
        "map": mapped,
        "validate": validated,
        "archive": archived,
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }
    write_json(ctx.run_dir / "summary.json", summary)
    return summary
