"""Smoke tests for the local PostgreSQL test server (tests/pg_server.py, scripts/postgres.sh)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url

from tests.pg_server import fresh_database

metadata = MetaData()
vouchers = Table(
    "vouchers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("number", String(64), nullable=False),
    Column("summary", String(255)),
)


@pytest.fixture
def other_pg_database_url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url


def test_roundtrip_on_real_postgres(pg_database_url: str) -> None:
    assert make_url(pg_database_url).get_backend_name() == "postgresql"
    engine = create_engine(pg_database_url)
    try:
        with engine.begin() as conn:
            version = conn.execute(text("SELECT version()")).scalar_one()
            assert version.startswith("PostgreSQL"), version
            metadata.create_all(conn)
            conn.execute(
                vouchers.insert(),
                [
                    {"number": "V-0001", "summary": "记账凭证 一"},
                    {"number": "V-0002", "summary": "bank fee"},
                ],
            )
        with engine.connect() as conn:
            rows = conn.execute(select(vouchers.c.number, vouchers.c.summary).order_by(vouchers.c.id)).all()
            assert [tuple(r) for r in rows] == [("V-0001", "记账凭证 一"), ("V-0002", "bank fee")]
            assert conn.execute(text("SHOW server_encoding")).scalar_one() == "UTF8"
    finally:
        engine.dispose()


def test_databases_are_isolated(pg_database_url: str, other_pg_database_url: str) -> None:
    assert make_url(pg_database_url).database != make_url(other_pg_database_url).database
    first = create_engine(pg_database_url)
    second = create_engine(other_pg_database_url)
    try:
        with first.begin() as conn:
            metadata.create_all(conn)
            conn.execute(vouchers.insert(), [{"number": "ONLY-IN-FIRST"}])
        assert "vouchers" not in inspect(second).get_table_names()
        with second.begin() as conn:
            metadata.create_all(conn)
            assert conn.execute(select(vouchers.c.number)).all() == []
        with first.connect() as conn:
            assert conn.execute(select(vouchers.c.number)).scalars().all() == ["ONLY-IN-FIRST"]
    finally:
        first.dispose()
        second.dispose()
