"""reliability: claims without a step (poison pills), attention, when a create was sent, and
the state every worker of one provider shares (a 429 pause and the request budget)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelwatch.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("claims", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("attention", sa.Text))
        batch.add_column(sa.Column("submit_started_at", UTCDateTime))
    op.create_table(
        "provider_state",
        sa.Column("provider", sa.String(200), primary_key=True),
        sa.Column("paused_until", UTCDateTime),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("tokens_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provider_state")
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("submit_started_at")
        batch.drop_column("attention")
        batch.drop_column("claims")
