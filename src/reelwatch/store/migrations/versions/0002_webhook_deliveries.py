"""webhook deliveries, each webhook-id processed once

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelwatch.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.String(200), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("video_id", sa.String(200), nullable=False),
        sa.Column("generation_id", sa.String(40)),
        sa.Column("result", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", name="pk_webhook_deliveries"),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
