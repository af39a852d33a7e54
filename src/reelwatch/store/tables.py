"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; tests compare the two."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so naive UTC is stored there in one
    fixed format, which keeps string comparison in WHERE clauses correct.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

generations = sa.Table(
    "generations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("video_id", sa.String(200)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("progress", sa.Integer, nullable=False, default=0),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("seconds", sa.Integer),  # NULL when the provider's request has no duration
    sa.Column("size", sa.String(20)),  # a resolution or an aspect ratio, if the request has one
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
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("next_poll_at", UTCDateTime),
    sa.Column("last_progress_at", UTCDateTime),
    sa.Column("remote_status", sa.String(50)),
    sa.Column("submit_ambiguous", sa.Boolean, nullable=False, default=False),
    sa.Column("assets", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("download_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("download_total", sa.BigInteger),
    sa.Column("started_progress", sa.Integer, nullable=False, server_default="0"),
    # Claims since the last step that was written: a row that keeps killing its workers
    # (poison pill) is noticed by this count, which no crash can reset.
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attention", sa.Text),  # why a person should look (quarantined), or NULL
    sa.Column("submit_started_at", UTCDateTime),  # when the last create was sent
    sa.Column("endpoint", sa.String(300)),  # the base URL it was submitted to (NULL: legacy)
    sa.Column("params", sa.JSON),  # the provider-specific inputs, as the adapter accepted them
    sa.Column("remote", sa.JSON),  # the adapter's handle beyond video_id (app id, output URLs)
    sa.Column("step_detail", sa.String(200)),  # the provider's words: queue position, log line
    # The looks before the first one that saw it rendering and before the one that first
    # showed the current percent: the windows those moments are known to within.
    sa.Column("started_after", UTCDateTime),
    sa.Column("progress_after", UTCDateTime),
    # Unchanged looks since the last event (folded, not one event each), and the first of them.
    sa.Column("quiet_polls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("quiet_since", UTCDateTime),
    sa.Column("submissions", sa.Integer, nullable=False, server_default="0"),  # creates sent
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_token", sa.String(64)),
    sa.Column("lease_expires_at", UTCDateTime),
    # Due rows are found by this index; terminal rows have next_poll_at NULL.
    sa.Index(None, "next_poll_at"),
    # Newest-first listing with a keyset cursor.
    sa.Index(None, "created_at", "id"),
    sa.Index(None, "status", "created_at"),
    sa.Index(None, "provider", "endpoint"),
    sa.UniqueConstraint("provider", "video_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column(
        "generation_id",
        sa.String(40),
        sa.ForeignKey("generations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("progress", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(200)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index(None, "generation_id", "id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("webhook_id", sa.String(260), primary_key=True),  # "<provider>/<id>"
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("video_id", sa.String(200), nullable=False),
    sa.Column("generation_id", sa.String(40)),
    sa.Column("result", sa.String(20), nullable=False),
)

# What every worker of one provider shares: the pause a 429 asked for, and the request budget
# (a token bucket refilled from `tokens_at`). Claims read and update it in their transaction.
provider_state = sa.Table(
    "provider_state",
    metadata,
    sa.Column("provider", sa.String(200), primary_key=True),
    sa.Column("paused_until", UTCDateTime),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("tokens_at", UTCDateTime, nullable=False),
)

# Finished renders, per shape (provider, model, length, size): what the predictor learns from.
# One row per render that reached its provider's "completed", written in the same transaction.
render_history = sa.Table(
    "render_history",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("shape", sa.String(300), nullable=False),
    sa.Column("generation_id", sa.String(40), nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("queue_s", sa.Float),
    sa.Column("render_s", sa.Float, nullable=False),
    sa.Column("marks", sa.JSON, nullable=False),  # [[fraction of the render, percent], ...]
    sa.Index(None, "shape", "id"),
)

# The videos `reelwatch serve` hands out under /v1/videos (front.py): one per generation,
# with the client's own words (its model name, seconds and size) and who asked (a key's digest).
front_videos = sa.Table(
    "front_videos",
    metadata,
    sa.Column("id", sa.String(60), primary_key=True),  # "video_" + 48 hex (front.new_id)
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
    sa.Index("ix_front_videos_client_created", "client", "created_at", "id"),
)

# The signed webhooks reelwatch sends its clients (REELWATCH_WEBHOOK_URL): one row per event and
# URL, written with the change it announces; `next_attempt_at` is NULL once delivered or given
# up. A sender claims a due row by pushing `next_attempt_at` ahead (its lease on the attempt).
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String(60), nullable=False),  # the event's id, on every attempt
    sa.Column("url", sa.Text, nullable=False),
    sa.Column(
        "generation_id",
        sa.String(40),
        sa.ForeignKey("generations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON signed and sent
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered_at", UTCDateTime),
    sa.Column("last_error", sa.String(300)),
    sa.Index("ix_webhook_outbox_due", "next_attempt_at"),
)
