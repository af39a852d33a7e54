"""providers: the endpoint a generation belongs to, its provider-specific inputs and remote
handle, the provider's words for the current step; seconds and size become optional

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        # NULL on rows written before this version: the first worker of that provider adopts
        # them (it is the only endpoint they could have been submitted to).
        batch.add_column(sa.Column("endpoint", sa.String(300)))
        batch.add_column(sa.Column("params", sa.JSON))
        batch.add_column(sa.Column("remote", sa.JSON))
        batch.add_column(sa.Column("step_detail", sa.String(200)))
        batch.alter_column("seconds", existing_type=sa.Integer, nullable=True)
        batch.alter_column("size", existing_type=sa.String(20), nullable=True)
        batch.create_index("ix_generations_provider_endpoint", ["provider", "endpoint"])
    # Deliveries are kept as "<provider>/<id>": room for a 200-character id and the prefix.
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.alter_column("webhook_id", existing_type=sa.String(200), type_=sa.String(260))
    # Rows from before keep their inputs: seconds and size were the only ones there were.
    build = sa.func.json_build_object if op.get_bind().dialect.name == "postgresql" else None
    pairs: tuple[object, ...] = ("seconds", sa.column("seconds"), "size", sa.column("size"))
    value = build(*pairs) if build is not None else sa.func.json_object(*pairs)
    table = sa.table("generations", sa.column("params"), sa.column("seconds"), sa.column("size"))
    op.execute(table.update().where(table.c.params.is_(None)).values(params=value))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.alter_column("webhook_id", existing_type=sa.String(260), type_=sa.String(200))
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_provider_endpoint")
        batch.alter_column("size", existing_type=sa.String(20), nullable=False)
        batch.alter_column("seconds", existing_type=sa.Integer, nullable=False)
        batch.drop_column("step_detail")
        batch.drop_column("remote")
        batch.drop_column("params")
        batch.drop_column("endpoint")
