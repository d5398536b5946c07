"""Bulk INSERT/UPDATE straight on the DB-API driver, for the archive step's hot path.

Why: a batch of 500 packages writes 500 package rows, 4,000 file rows and 500 record updates. Through
SQLAlchemy's ORM/Core executemany every row pays parameter compilation in Python, which showed up
as a tenth of the archive workers' CPU. Here each statement is compiled once by hand and the rows
go to the driver's executemany as tuples. Values still go through the dialect's own bind processors
(dates and datetimes as SQLite stores them, Decimal as SQLite binds it), so what lands in the table
is exactly what SQLAlchemy would have written and reads back through the ORM unchanged. Table and
column names come from the catalog models, never from input; values are always bound parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

Row = Sequence[Any]
_Processors = tuple[tuple[int, Callable[[Any], Any]], ...]
_PROCESSORS: dict[tuple[str, str, tuple[str, ...]], _Processors] = {}


def _processors(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _Processors:
    """(position, bind processor) for the columns whose type converts values on this dialect."""
    key = (dialect.name, table.name, columns)
    found = _PROCESSORS.get(key)
    if found is None:
        pairs = []
        for index, name in enumerate(columns):
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)  # what Core applies
            if processor is not None:
                pairs.append((index, processor))
        found = _PROCESSORS[key] = tuple(pairs)
    return found


def _bound(rows: Sequence[Row], processors: _Processors) -> list[Row]:
    if not processors:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        values = list(row)
        for index, processor in processors:
            if values[index] is not None:
                values[index] = processor(values[index])
        out.append(tuple(values))
    return out


def _mark(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


def insert_rows(session: Session, table: Table, columns: tuple[str, ...], rows: Sequence[Row]) -> None:
    """INSERT every row (values in `columns` order) in one driver executemany."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    marks = ", ".join([_mark(dialect)] * len(columns))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
    conn.exec_driver_sql(sql, _bound(rows, _processors(dialect, table, columns)))


def update_rows(
    session: Session, table: Table, columns: tuple[str, ...], key: str, rows: Sequence[Row]
) -> None:
    """UPDATE `columns` of the row whose `key` is the last value of each tuple, in one executemany."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    mark = _mark(dialect)
    assignments = ", ".join(f"{name} = {mark}" for name in columns)
    sql = f"UPDATE {table.name} SET {assignments} WHERE {key} = {mark}"
    conn.exec_driver_sql(sql, _bound(rows, _processors(dialect, table, (*columns, key))))


def select_in(
    session: Session,
    table: Table,
    columns: tuple[str, ...],
    key: str,
    values: Sequence[Any],
    where: dict[str, Any] | None = None,
) -> list[Row]:
    """`columns` of the rows whose `key` is one of `values` (and whose `where` columns equal the given
    values, so a composite index such as (source_id, business_id) serves the lookup); 500 values a query."""
    conn = session.connection()
    mark = _mark(conn.dialect)
    fixed = list((where or {}).items())
    conditions = "".join(f"{name} = {mark} AND " for name, _ in fixed)
    found: list[Row] = []
    for start in range(0, len(values), 500):
        chunk = list(values[start : start + 500])
        sql = (
            f"SELECT {', '.join(columns)} FROM {table.name} "
            f"WHERE {conditions}{key} IN ({', '.join([mark] * len(chunk))})"
        )
        found.extend(conn.exec_driver_sql(sql, (*(value for _, value in fixed), *chunk)).all())
    return found
