"""front_videos: the videos `reelwatch serve` hands out under /v1/videos (front.py), each
bound to one generation, with what the client asked for in its own words

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelwatch.store.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "front_videos",
        sa.Column("id", sa.String(60), primary_key=True),
        sa.Column(
            "generation_id",
            sa.String(40),
            sa.ForeignKey("generations.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("seconds", sa.String(8), nullable=False),
        sa.Column("size", sa.String(20), nullable=False),
        sa.Column("remixed_from", sa.String(60)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime),
    )
    op.create_index(
        "ix_front_videos_client_created", "front_videos", ["client", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_front_videos_client_created", "front_videos")
    op.drop_table("front_videos")
