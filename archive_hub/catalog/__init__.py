"""The catalog: what the archive holds (records, packages, files), the hub's own state (cursors,
quarantine, runs, 档号 sequences) and an append-only hash-chained event log.

SQLAlchemy 2; SQLite file by default, PostgreSQL supported.
"""

from archive_hub.catalog.db import Catalog

__all__ = ["Catalog"]
