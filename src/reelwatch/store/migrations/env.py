"""Alembic environment: a plain synchronous engine on the URL the caller configured."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from reelwatch.store import tables

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=tables.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
