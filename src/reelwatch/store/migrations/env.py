"""Alembic environment: a plain synchronous engine on the URL the caller configured.

Several processes (the server, workers, `reelwatch db upgrade`) may migrate the same fresh database
at once, so the whole run is one transaction that first takes a database-wide lock: an advisory
lock on PostgreSQL, the write lock (BEGIN IMMEDIATE) on SQLite. Whoever comes second waits, then
finds the schema at head and does nothing.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlalchemy import event

from reelwatch.store import tables

# pg_advisory_xact_lock key: b"reelwatc" as a big-endian signed 64-bit integer.
_PG_LOCK_KEY = int.from_bytes(b"reelwatc", "big", signed=True)


def _use_wal(dbapi_connection: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Switch a new database to WAL before anything else uses it (the store expects WAL).

    The switch needs the database to itself, and SQLite answers "locked" at once, without
    waiting, when two connections try it together; so retry. Once in WAL this is a no-op.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
if sa.engine.make_url(url).get_backend_name() == "sqlite":
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, begin transactions, so DDL is transactional too.
        dbapi_connection.isolation_level = None
        _use_wal(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

else:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

with engine.connect() as connection, connection.begin():
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    context.configure(
        connection=connection,
        target_metadata=tables.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
engine.dispose()
