"""Per-chunk work in forked processes, results in input order: how a step uses every core.

The state a chunk function needs (mapping, run context) is inherited through fork rather than
pickled. Workers die with the step (PR_SET_PDEATHSIG), so a killed step leaves no process behind.
Small inputs run in this process: forking costs more than it saves below a few hundred records.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from archive_hub.pipeline.gc_tuning import freeze_gc

PARALLEL_MIN_BYTES = 2_000_000  # below this a step's input is handled in-process

_STATE: dict[str, Any] = {}
S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """ARCHIVE_HUB_WORKERS, else one per core (at most 2: beyond that the disk, not the CPU, decides here)."""
    value = os.environ.get("ARCHIVE_HUB_WORKERS") or os.environ.get("ARCHIVE_HUB_ARCHIVE_WORKERS")
    return max(1, int(value) if value else min(2, os.cpu_count() or 1))


def worth_forking(input_bytes: int) -> bool:
    threshold = int(os.environ.get("ARCHIVE_HUB_PARALLEL_MIN_BYTES", PARALLEL_MIN_BYTES))
    return default_workers() > 1 and input_bytes >= threshold


def ordered_map(fn: Callable[[S, T], R], state: S, chunks: Iterable[T], *, parallel: bool) -> Iterator[R]:
    """fn(state, chunk) for every chunk, in order; in forked workers when `parallel`."""
    if not parallel:
        for chunk in chunks:
            yield fn(state, chunk)
        return
    _STATE.update(fn=fn, state=state)
    mp = multiprocessing.get_context("fork")
    pool = mp.Pool(default_workers(), initializer=init_worker, initargs=(os.getpid(),))
    try:
        yield from pool.imap(_run, chunks)
    except BaseException:
        pool.terminate()  # workers run with default SIGTERM (see init_worker), so this ends them
        raise
    else:
        pool.close()  # every result is in: let the workers finish their loop and exit on their own
    finally:
        pool.join()


def _run(chunk: Any) -> Any:
    return _STATE["fn"](_STATE["state"], chunk)


def init_worker(parent_pid: int) -> None:
    """Set up a forked worker: prctl(PR_SET_PDEATHSIG, SIGKILL), so a killed step takes its workers with it.

    Also restores the default SIGTERM and SIGINT actions: a fork inherits the parent's Python
    handlers, and Airflow's task runner installs one for SIGTERM that does not exit, so a pool
    that terminated its workers waited for them forever (seen as a hung map task in `make demo`).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    freeze_gc()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
