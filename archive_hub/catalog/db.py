"""The Catalog facade: engine set-up per dialect and the transactions the pipeline needs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from archive_hub.catalog.models import Base
from archive_hub.settings import redact_url


def make_engine(url: str, *, for_writing: bool = True) -> Engine:
    """An engine whose write transactions are serialisable enough for 档号 allocation.

    SQLite: WAL, synchronous=FULL (a commit is durable), and BEGIN IMMEDIATE so two writers never
    both read the same sequence value. PostgreSQL: row locks (SELECT ... FOR UPDATE) do that job.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Readers take a WAL snapshot and never wait for a writer; writers serialise up front.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if for_writing else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


class _WriterLock:
    """One SQLite transaction at a time across processes, queued on flock(2) instead of busy-sleeping.

    SQLite's busy handler sleeps 1, 2, 5 … 100 ms between retries, so a second writer (one archive
    worker registers its batch while another reserves 档号 for the next) often slept long after the
    lock was free. A blocking flock wakes the next process the moment the holder commits. Re-entrant within a
    process; reopened after fork, because a forked child would share the parent's lock.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = -1
        self._depth = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._pid != os.getpid():
            self._fd, self._pid, self._depth = (
                os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600),
                os.getpid(),
                0,
            )
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class Catalog:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        file_backed = bool(database) and database != ":memory:"
        self._writer = _WriterLock(f"{database}.writer-lock") if file_backed else None
        # SQLite in WAL mode: reads need neither the writer lock nor BEGIN IMMEDIATE (a snapshot is consistent).
        read_engine = make_engine(url, for_writing=False) if file_backed else self.engine
        self._read_sessions = sessionmaker(read_engine, expire_on_commit=False)
        self._read_engine = read_engine

    def _serialised(self) -> AbstractContextManager[None]:
        return self._writer.held() if self._writer is not None else nullcontext()

    def __repr__(self) -> str:
        return f"Catalog({redact_url(self.url)})"

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def create_schema(self) -> None:
        """Create what is missing, in one serialised transaction (two processes may start at once)."""
        from sqlalchemy import inspect
        from sqlalchemy.dialects import postgresql, sqlite

        from archive_hub.catalog.events import GENESIS
        from archive_hub.catalog.invoice_backfill import CLAIM_ARCHIVED_INVOICES
        from archive_hub.catalog.models import CatalogUpgradeRow, ChainHeadRow

        with self._serialised(), self.engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(727100)"))  # schema changes, one at a time
            had_claims = inspect(conn).has_table("attachment_claim")
            had_records = inspect(conn).has_table("archive_record")
            had_invoice_claims = inspect(conn).has_table("invoice_claim")
            Base.metadata.create_all(conn)
            if not had_claims:  # a catalog from before claims: what it archived already holds its files
                _claim_archived_attachments(conn)
            if had_records and not had_invoice_claims:  # its invoices are read from the archive (context.py)
                insert = postgresql.insert if self.is_postgres else sqlite.insert
                conn.execute(
                    insert(CatalogUpgradeRow).values(name=CLAIM_ARCHIVED_INVOICES).on_conflict_do_nothing()
                )
            # Columns added after a catalog was created (additive only; nothing is ever dropped).
            inspector = inspect(conn)
            for table in Base.metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present and column.nullable:
                        conn.exec_driver_sql(
                            f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(self.engine.dialect)}"
                        )
            # The event chain's head row exists from the start, so two first appends cannot race.
            insert = postgresql.insert if self.is_postgres else sqlite.insert
            conn.execute(
                insert(ChainHeadRow).values(id=1, last_seq=0, last_hash=GENESIS).on_conflict_do_nothing()
            )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any error."""
        with self._serialised(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only view that is one snapshot (SQLite WAL gives one; PostgreSQL needs REPEATABLE READ).

        Under READ COMMITTED a long read such as verifying the event chain batch by batch would see
        events appended meanwhile and report a chain head that does not match what it counted.
        """
        with self._read_sessions() as session:
            if self.is_postgres:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()


def _claim_archived_attachments(conn: Connection) -> None:
    """Give each attachment already archived to the record that archived it first (catalog/claims.py)."""
    conn.execute(
        text(
            """
            INSERT INTO attachment_claim (sha256, source_id, business_id, file_name, run_id, claimed_at)
            SELECT sha256, source_id, business_id, path, run_id, created_at FROM (
                SELECT f.sha256, r.source_id, r.business_id, f.path, p.run_id, p.created_at,
                       ROW_NUMBER() OVER (PARTITION BY f.sha256 ORDER BY p.id, f.id) AS n
                FROM archive_file f
                JOIN archive_package p ON p.id = f.package_id
                JOIN archive_record r ON r.id = p.record_id
                WHERE f.role = 'attachment'
            ) first_use
            WHERE n = 1
            """
        )
    )
