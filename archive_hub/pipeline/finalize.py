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


class RunIntegrityError(RuntimeError):
    """The steps' counts do not add up: some record went missing between steps; the cursor stays."""


def check_counts(
    extract: dict[str, Any], mapped: dict[str, Any], validated: dict[str, Any], archived: dict[str, Any]
) -> list[str]:
    """Every record read is accounted for at every step (read = mapped + refused, and so on)."""
    problems = []
    if extract["records"] != mapped["mapped"] + mapped["quarantined"]:
        problems.append(
            f"read {extract['records']} but mapped {mapped['mapped']} + quarantined {mapped['quarantined']}"
        )
    if mapped["mapped"] != validated["valid"] + validated["quarantined"]:
        problems.append(
            f"mapped {mapped['mapped']} but valid {validated['valid']} + quarantined {validated['quarantined']}"
        )
    done = archived["archived"] + archived["new_versions"] + archived["unchanged"] + archived["quarantined"]
    if validated["valid"] != done:
        problems.append(
            f"valid {validated['valid']} but archived/new versions/unchanged/quarantined add up to {done}"
        )
    return problems


def finalize(
    ctx: RunContext,
    extract: dict[str, Any],
    mapped: dict[str, Any],
    validated: dict[str, Any],
    archived: dict[str, Any],
) -> dict[str, Any]:
    read = extract["records"]
    quarantined = mapped["quarantined"] + validated["quarantined"] + archived["quarantined"]
    # Only new problems count toward the threshold; a record still open with the same payload was
    # counted by the run that first refused it.
    new_problems = sum(
        step.get("quarantined_new", step["quarantined"]) for step in (mapped, validated, archived)
    )
    share = new_problems / read if read else 0.0
    lost = check_counts(extract, mapped, validated, archived)
    failed = share > ctx.source.quarantine_threshold or bool(lost)
    summary = {
        "source": ctx.source.id,
        "run_id": ctx.run_id,
        "read": read,
        "archived": archived["archived"],
        "new_versions": archived["new_versions"],
        "unchanged": archived["unchanged"],
        "quarantined": quarantined,
        "quarantined_new": new_problems,
        "quarantine_share": round(share, 4),
        "count_problems": lost,
        "threshold": ctx.source.quarantine_threshold,
        "bytes_written": archived["bytes"],
        # 病毒检测: attachments scanned by clamd (ARCHIVE_HUB_CLAMD); None when no scanner is configured
        "attachments_scanned": archived.get("scanned") if ctx.settings.clamd_url else None,
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
    if lost:
        raise RunIntegrityError(
            f"{ctx.source.id}: records unaccounted for between steps ({'; '.join(lost)}); the cursor was not moved"
        )
    if failed:
        raise QuarantineThresholdError(
            f"{ctx.source.id}: {new_problems} of {read} records ({share:.1%}) were newly quarantined, above the threshold of "
            f"{ctx.source.quarantine_threshold:.1%}; the cursor was not moved. See `archive-hub quarantine list --source {ctx.source.id}`."
        )
    return summary
