"""download progress counters on generations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(
            sa.Column("download_bytes", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("download_total", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("download_total")
        batch.drop_column("download_bytes")
