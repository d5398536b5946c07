"""Keep Python's cyclic garbage collector off the hot path of a step.

A step process has imported Airflow, Great Expectations, pandas and SQLAlchemy: hundreds of
thousands of long-lived objects. Every full collection walks all of them, and building packages
allocates enough containers to trigger one every few hundred vouchers; measured with `perf`, the
collector took about a tenth of the archive step's CPU. `gc.freeze()` moves what exists now into
the permanent generation (also keeping forked workers' pages shared), and a higher gen-0 threshold
makes the remaining collections rare. The data of a step has no reference cycles worth chasing:
records are trees, and reference counting frees them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GEN0_THRESHOLD = 50_000


def freeze_gc() -> None:
    """For a short-lived worker process: freeze what it inherited and collect rarely."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


@contextmanager
def quiet_gc() -> Iterator[None]:
    """For one step in a process that lives on (an Airflow task runner, the test suite): undone after."""
    threshold = gc.get_threshold()
    freeze_gc()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()  # what the step left behind is collectable again
