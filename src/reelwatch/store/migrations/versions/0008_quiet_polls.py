"""quiet polls: looks that changed nothing are counted on the generation and folded into the
next event, instead of one `poll` event each

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelwatch.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("quiet_polls", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("quiet_since", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("quiet_since")
        batch.drop_column("quiet_polls")
