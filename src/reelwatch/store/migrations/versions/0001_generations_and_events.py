"""generations and their append-only events

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reelwatch.store.tables import EventId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("video_id", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("seconds", sa.Integer, nullable=False),
        sa.Column("size", sa.String(20), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("input_reference", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("watch_started_at", UTCDateTime, nullable=False),
        sa.Column("submitted_at", UTCDateTime),
        sa.Column("started_at", UTCDateTime),
        sa.Column("remote_completed_at", UTCDateTime),
        sa.Column("completed_at", UTCDateTime),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("error_code", sa.String(100)),
        sa.Column("error_message", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_poll_at", UTCDateTime),
        sa.Column("last_progress_at", UTCDateTime),
        sa.Column("remote_status", sa.String(50)),
        sa.Column("submit_ambiguous", sa.Boolean, nullable=False),
        sa.Column("assets", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_generations"),
        sa.UniqueConstraint("provider", "video_id", name="uq_generations_provider_video_id"),
    )
    op.create_index("ix_generations_next_poll_at", "generations", ["next_poll_at"])
    op.create_index("ix_generations_created_at_id", "generations", ["created_at", "id"])
    op.create_index("ix_generations_status_created_at", "generations", ["status", "created_at"])
    op.create_table(
        "events",
        sa.Column("id", EventId, nullable=False, autoincrement=True),
        sa.Column("generation_id", sa.String(40), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name="fk_events_generation_id_generations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_events_generation_id_id", "events", ["generation_id", "id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("generations")
