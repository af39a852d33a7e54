"""render history: finished renders per shape, for the predictor; the looks before a
generation's start and before its latest percent

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelwatch.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "render_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("shape", sa.String(300), nullable=False),
        sa.Column("generation_id", sa.String(40), nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=False),
        sa.Column("queue_s", sa.Float),
        sa.Column("render_s", sa.Float, nullable=False),
        sa.Column("marks", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_render_history"),
    )
    op.create_index("ix_render_history_shape_id", "render_history", ["shape", "id"])
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("started_after", UTCDateTime))
        batch.add_column(sa.Column("progress_after", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("progress_after")
        batch.drop_column("started_after")
    op.drop_index("ix_render_history_shape_id", table_name="render_history")
    op.drop_table("render_history")
