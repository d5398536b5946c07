"""Archive step: every valid record of a run becomes a published package (see archiver.py for one batch).

valid.jsonl is cut into batches of the source's batch size. With several workers each forked worker
takes whole batches end to end (parse, read attachments, reserve 档号, build, stage, sync, verify,
publish, register); only the 档号 reservation is taken in turn, batch after batch in source order
(`ReservationTurns`), so 件号 follow the source whichever worker is faster. The parent reads no
record: it only finds the batch boundaries and adds up the counts.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from archive_hub.pipeline.archiver import Archiver
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import line_spans, read_span_lines
from archive_hub.pipeline.parallel import default_workers, init_worker
from archive_hub.pipeline.turns import ReservationTurns, Turn
from archive_sink.sm3_batch import accelerated as sm3_accelerated
from canonical_model.record import ArchiveRecord


def read_batch(path: Path, start: int, end: int) -> list[ArchiveRecord]:
    return [ArchiveRecord.model_validate_json(line) for line in read_span_lines(path, start, end)]


def archive(ctx: RunContext, workers: int | None = None) -> dict[str, Any]:
    """Archive every valid record of the run (the caller holds the source's lock, see run_step).

    A worker dies with this process (PR_SET_PDEATHSIG), so killing the step never leaves a writer behind.
    """
    workers = default_workers() if workers is None else workers
    source = ctx.run_dir / "valid.jsonl"
    archiver = Archiver(ctx)
    sm3_accelerated()  # the SM3 library is built (if need be) and checked once, here, not in every worker
    cleaned = archiver.store.clean_staging()
    batches = line_spans(source, ctx.source.batch_size)
    counts: dict[str, int] = dict(archiver.counts)
    if workers <= 1 or len(batches) <= 1:
        for start, end in batches:
            archiver.run(read_batch(source, start, end))
        counts = archiver.counts
        workers = 1
    else:
        ctx.catalog.dispose()  # no pooled connection may cross a fork
        turns = ReservationTurns(multiprocessing.get_context("fork"))
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_worker_init,
            initargs=(ctx.source.id, ctx.run_id, os.getpid(), turns),
        )
        try:
            futures = [
                pool.submit(_worker_batch, index, str(source), start, end)
                for index, (start, end) in enumerate(batches)
            ]
            for done in as_completed(futures):
                part = done.result()
                records = part.pop("records")
                for key, value in part.items():
                    counts[key] = counts.get(key, 0) + value
                ctx.progress("archive", records, None)
        except BaseException:
            turns.abort()  # a worker waiting for its turn gives up instead of waiting forever
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return {"step": "archive", **counts, "staging_leftovers_removed": cleaned, "workers": workers}


_WORKER: dict[str, Any] = {}


def _worker_init(source_id: str, run_id: str, parent_pid: int, turns: ReservationTurns) -> None:
    init_worker(parent_pid)  # also restores signal defaults and freezes the GC
    _WORKER["ctx"] = RunContext.open(source_id, run_id)
    _WORKER["turns"] = turns


def _worker_batch(index: int, path: str, start: int, end: int) -> dict[str, int]:
    ctx: RunContext = _WORKER["ctx"]
    turn = Turn(_WORKER["turns"], index)
    try:
        records = read_batch(Path(path), start, end)
        archiver = Archiver(ctx)
        archiver.run(records, turn=turn)
    finally:
        turn.done()  # also when this batch failed: the batches after it must not wait forever
    return {**archiver.counts, "records": len(records)}
