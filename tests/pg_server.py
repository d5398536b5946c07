"""Pytest plugin: a real local PostgreSQL server for tests.

Enable with ``pytest_plugins = ["tests.pg_server"]`` (or ``-p tests.pg_server``).

Fixtures:
    postgres_url     session-scoped SQLAlchemy URL of the server's ``archive_hub`` database.
                     Starts the server with ``scripts/postgres.sh start`` unless
                     ``ARCHIVE_HUB_TEST_PG_URL`` is set; stops it at session end only if
                     this session started it.
    pg_database_url  function-scoped URL of a fresh, uniquely named database that is
                     dropped after the test.

``fresh_database(url)`` is the same thing as a context manager, for tests that need more
than one database.

If the server cannot be started the fixtures fail (never skip).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_SCRIPT = REPO_ROOT / "scripts" / "postgres.sh"
ENV_URL = "ARCHIVE_HUB_TEST_PG_URL"
START_TIMEOUT_S = 900  # generous: a first run may need to apt-get install postgresql


def _run_script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PG_SCRIPT), command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _libpq_conninfo(sqlalchemy_url: str, database: str | None = None) -> str:
    """Turn a SQLAlchemy URL (``postgresql+psycopg://...``) into a libpq conninfo string."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _with_database(sqlalchemy_url: str, database: str) -> str:
    return make_url(sqlalchemy_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    override = os.environ.get(ENV_URL)
    if override:
        yield override
        return

    status = _run_script("status", timeout=60)
    already_running = status.returncode == 0

    try:
        result = _run_script("start", timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/postgres.sh start timed out after {exc.timeout}s:\n{exc.stderr or ''}")
    url = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or not url.startswith("postgresql"):
        pytest.fail(
            f"could not start PostgreSQL (scripts/postgres.sh start exited {result.returncode}):\n"
            f"{result.stderr}{result.stdout}"
        )

    try:
        yield url
    finally:
        if not already_running:
            _run_script("stop", timeout=120)


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """Create a uniquely named database on ``server_url``'s server, yield its URL, drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin_conninfo = _libpq_conninfo(server_url, database="postgres")
    try:
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        pytest.fail(f"could not create test database {name} on {server_url}: {exc}")

    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            # WITH (FORCE) terminates sessions the test may have leaked (PostgreSQL >= 13).
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url
