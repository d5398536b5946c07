"""Finalize: the catalog step. Checks the quarantine threshold, then commits the cursor.

The cursor moves only here, after every archive write of the run has committed; if the share of
quarantined records passes the source's threshold the run fails and the cursor stays, so the next
run re-reads (idempotently) once the cause is fixed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from archive_hub.catalog.events import Event, append
from archive_hub.catalog.models import CursorRow, SyncRunRow, utcnow
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import write_json


class QuarantineThresholdError(RuntimeError):
    pass


def finalize(
    ctx: RunContext,
    extract: dict[str, Any],
    mapped: dict[str, Any],
    validated: dict[str, Any],
    archived: dict[str, Any],
) -> dict[str, Any]:
    read = extract["records"]
    quarantined = mapped["quarantined"] + validated["quarantined"] + archived["quarantined"]
    share = quarantined / read if read else 0.0
    failed = share > ctx.source.quarantine_threshold
    summary = {
        "source": ctx.source.id,
        "run_id": ctx.run_id,
        "read": read,
        "archived": archived["archived"],
        "new_versions": archived["new_versions"],
        "unchanged": archived["unchanged"],
        "quarantined": quarantined,
        "quarantine_share": round(share, 4),
        "threshold": ctx.source.quarantine_threshold,
        "bytes_written": archived["bytes"],
        "mapping": mapped["mapping"],
        "cursor": extract["cursor_to"] if not failed else extract["cursor_from"],
        "status": "failed" if failed else "success",
        "archive_root": str(ctx.settings.archive_root),
        "catalog": ctx.catalog.engine.url.render_as_string(hide_password=True),
    }
    with ctx.catalog.transaction() as session:
        if not failed and extract["cursor_to"]:
            row = session.execute(
                select(CursorRow).where(
                    CursorRow.source_id == ctx.source.id, CursorRow.stream == ctx.stream.name
                )
            ).scalar_one_or_none()
            if row is None:
                session.add(
                    CursorRow(
                        source_id=ctx.source.id,
                        stream=ctx.stream.name,
                        value=extract["cursor_to"],
                        run_id=ctx.run_id,
                    )
                )
            else:
                row.value, row.run_id, row.updated_at = extract["cursor_to"], ctx.run_id, utcnow()
        run = session.get(SyncRunRow, ctx.run_id)
        if run is None:
            run = SyncRunRow(run_id=ctx.run_id, source_id=ctx.source.id)
            session.add(run)
        run.finished_at, run.status, run.summary = utcnow(), summary["status"], summary
        append(
            session,
            [
                Event(
                    "run-finished",
                    ctx.source.id,
                    {
                        k: summary[k]
                        for k in ("read", "archived", "new_versions", "unchanged", "quarantined", "status")
                    },
                    ctx.run_id,
                )
            ],
        )
    write_json(ctx.run_dir / "summary.json", summary)
    if failed:
        raise QuarantineThresholdError(
            f"{ctx.source.id}: {quarantined} of {read} records ({share:.1%}) were quarantined, above the threshold of "
            f"{ctx.source.quarantine_threshold:.1%}; the cursor was not moved. See `archive-hub quarantine list --source {ctx.source.id}`."
        )
    return summary
