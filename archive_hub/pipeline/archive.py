"""Archive step: every valid record of a run becomes a published package (see archiver.py for one batch).

With several workers this process reserves the 档号 of new records batch by batch (so 件号 follow
source order) and hands each reserved batch to forked worker processes that take it end to end
while the next batch is reserved, using both cores.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from archive_hub.pipeline.archiver import Archiver
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import read_raw_lines, write_raw_lines
from archive_hub.pipeline.parallel import default_workers, init_worker
from canonical_model.record import ArchiveRecord


def _batches(ctx: RunContext) -> Iterator[tuple[list[ArchiveRecord], list[str]]]:
    """Batches of valid records with their JSON lines (handed to workers as they are)."""
    batch: list[ArchiveRecord] = []
    lines: list[str] = []
    for line in read_raw_lines(ctx.run_dir / "valid.jsonl"):
        batch.append(ArchiveRecord.model_validate_json(line))
        lines.append(line)
        if len(batch) >= ctx.source.batch_size:
            yield batch, lines
            batch, lines = [], []
    if batch:
        yield batch, lines


def archive(ctx: RunContext, workers: int | None = None) -> dict[str, Any]:
    """Archive every valid record of the run (the caller holds the source's lock, see run_step).

    With several workers this process reserves the 档号 of new records batch by batch (so 件号 follow
    source order, gap-free) and hands each reserved batch to worker processes that take it end to end
    (build, stage, sync, publish, register) while the next batch is reserved, using both cores. A worker
    dies with this process (PR_SET_PDEATHSIG), so killing the step never leaves a writer behind.
    """
    workers = default_workers() if workers is None else workers
    archiver = Archiver(ctx)
    cleaned = archiver.store.clean_staging()
    batch_dir = ctx.run_dir / "archive-batches"
    try:
        if workers <= 1:
            for batch, _ in _batches(ctx):
                archiver.run(batch)
            return {"step": "archive", **archiver.counts, "staging_leftovers_removed": cleaned, "workers": 1}
        shutil.rmtree(batch_dir, ignore_errors=True)
        batch_dir.mkdir()
        failed: set[str] = set()
        futures = []
        mp = multiprocessing.get_context("fork")
        pool: ProcessPoolExecutor | None = None
        try:
            for index, (batch, lines) in enumerate(_batches(ctx)):
                failed |= archiver.run(batch, reserve_only=True)
                path = batch_dir / f"{index:05d}.jsonl"
                write_raw_lines(
                    path,
                    (
                        line
                        for r, line in zip(batch, lines, strict=True)
                        if r.source.business_id not in failed
                    ),
                    durable=False,  # a hand-off to the workers; a re-run rebuilds it
                )
                ctx.catalog.dispose()  # no pooled connection may cross a fork
                if pool is None:
                    pool = ProcessPoolExecutor(
                        workers,
                        mp_context=mp,
                        initializer=_worker_init,
                        initargs=(ctx.source.id, ctx.run_id, os.getpid()),
                    )
                # workers start on this batch while the next one is being reserved
                futures.append(pool.submit(_worker_batch, str(path)))
            counts = dict(archiver.counts)
            for result in as_completed(futures):
                part = result.result()
                for key, value in part.items():
                    counts[key] = counts.get(key, 0) + value
                ctx.progress("archive", part.get("records", 0), None)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        archiver.close()
    counts.pop("records", None)
    shutil.rmtree(batch_dir, ignore_errors=True)
    return {"step": "archive", **counts, "staging_leftovers_removed": cleaned, "workers": workers}


_WORKER: dict[str, Any] = {}


def _worker_init(source_id: str, run_id: str, parent_pid: int) -> None:
    init_worker(parent_pid)  # also restores signal defaults and freezes the GC
    ctx = RunContext.open(source_id, run_id)
    _WORKER["ctx"] = ctx


def _worker_batch(path: str) -> dict[str, int]:
    ctx: RunContext = _WORKER["ctx"]
    archiver = Archiver(ctx)
    records = [ArchiveRecord.model_validate_json(line) for line in read_raw_lines(Path(path))]
    archiver.run(records)
    return {**archiver.counts, "records": len(records)}
