"""One archive step per source at a time.

Two runs of the same source (a scheduled DAG run and a `quarantine retry`, say) would otherwise plan
the same versions and clean each other's staging. A flock on the source's staging directory covers
one host; on PostgreSQL a session-level advisory lock covers every host sharing the catalog.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from archive_hub.catalog.db import Catalog


@contextmanager
def source_lock(catalog: Catalog, staging_dir: Path, source_id: str) -> Iterator[None]:
    staging_dir.mkdir(parents=True, exist_ok=True)
    with (staging_dir.parent / f".{staging_dir.name}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # waits for the other run of this source to finish its archive step
        try:
            if catalog.is_postgres:
                key = int.from_bytes(
                    hashlib.sha256(f"archive:{source_id}".encode()).digest()[:8], "big", signed=True
                )
                with catalog.engine.connect() as conn:
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                    try:
                        yield
                    finally:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            else:
                yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
