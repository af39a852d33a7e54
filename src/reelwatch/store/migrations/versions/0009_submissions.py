"""submissions: how many creates were sent for a generation (each is paid), apart from
`attempts`, which counts every request of the current run, status checks included

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("submissions", sa.Integer, nullable=False, server_default="0"))
    # Rows from before: one create for each that was sent (retries before this are not known;
    # their `retry` events remain in the timeline).
    op.execute("UPDATE generations SET submissions = 1 WHERE submit_started_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("submissions")
