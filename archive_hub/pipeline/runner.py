"""Runs the steps: one at a time from Airflow tasks, or all in a row for `archive-hub sync`."""

from __future__ import annotations

from typing import Any

from archive_hub.catalog.locks import source_lock
from archive_hub.catalog.models import SyncRunRow, utcnow
from archive_hub.pipeline.archive import archive
from archive_hub.pipeline.context import Progress, RunContext
from archive_hub.pipeline.extract import extract
from archive_hub.pipeline.finalize import finalize
from archive_hub.pipeline.gc_tuning import quiet_gc
from archive_hub.pipeline.jsonl import read_json, write_json
from archive_hub.pipeline.transform import transform
from archive_hub.pipeline.validate import validate
from archive_hub.settings import redact_text

STEPS = ("extract", "map", "validate", "archive", "finalize")


def run_step(
    step: str, source_id: str, run_id: str, progress: Progress | None = None, *, from_start: bool = False
) -> dict[str, Any]:
    """Run one step; its summary is also saved in the run directory for the steps after it. `from_start`:
    extract reads the source whole, not from the cursor (what is archived already is not archived again)."""
    ctx = RunContext.open(source_id, run_id, progress=progress, from_start=from_start)
    try:
        # Steps of two runs of one source never interleave: they would clean each other's staging,
        # plan the same versions and quarantine the same record twice.
        try:
            with quiet_gc(), source_lock(ctx.catalog, ctx.settings.staging_root / source_id, source_id):
                _running_again(ctx)
                result = _dispatch(step, ctx)
        except Exception as exc:
            _record_failure(ctx, step, exc)
            raise
        if step != "finalize":
            write_json(ctx.run_dir / f"{step}.json", result)
        return result
    finally:
        ctx.close()


def _record_failure(ctx: RunContext, step: str, exc: Exception) -> None:
    """The run's row says failed, in which step and why (one line), so `archive-hub runs` does not show a
    dead run as running. A retry of the step that succeeds is finalized as usual and overwrites this."""
    reason = redact_text((str(exc).strip().splitlines() or [""])[0])[:500]
    try:
        with ctx.catalog.transaction() as session:
            row = session.get(SyncRunRow, ctx.run_id)
            if row is None:
                row = SyncRunRow(run_id=ctx.run_id, source_id=ctx.source.id, summary={})
                session.add(row)
            row.status, row.finished_at = "failed", utcnow()
            row.summary = {
                **(row.summary or {}),
                "failed_step": step,
                "error": f"{type(exc).__name__}: {reason}",
            }
    except Exception:  # the catalog itself may be what failed: the original error is the one to raise
        pass


def _running_again(ctx: RunContext) -> None:
    """A step retried after a failure (Airflow's retries, a re-run of `sync --run-id`): the run is running."""
    with ctx.catalog.transaction() as session:
        row = session.get(SyncRunRow, ctx.run_id)
        if row is not None and row.status == "failed":
            row.status, row.finished_at = "running", None


def _dispatch(step: str, ctx: RunContext) -> dict[str, Any]:
    if step == "extract":
        result = extract(ctx)
    elif step == "map":
        result = transform(ctx)
    elif step == "validate":
        result = validate(ctx)
    elif step == "archive":
        result = archive(ctx)
    elif step == "finalize":
        prior = {name: read_json(ctx.run_dir / f"{name}.json") for name in STEPS[:-1]}
        result = finalize(ctx, prior["extract"], prior["map"], prior["validate"], prior["archive"])
    else:
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
    return result


def run_sync(
    source_id: str, run_id: str, progress: Progress | None = None, *, from_start: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for step in STEPS:
        result = run_step(step, source_id, run_id, progress, from_start=from_start and step == "extract")
    return result


__all__ = ["STEPS", "run_step", "run_sync", "write_json"]
