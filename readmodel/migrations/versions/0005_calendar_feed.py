"""calendar feeds (iCalendar of due dates at a secret address)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0005", "0004"
branch_labels = depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_feed",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("calendar_feed", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_feed_secret_hash"), ["secret_hash"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_calendar_feed_token_id"), ["token_id"], unique=False)


def downgrade() -> None:
    op.drop_table("calendar_feed")
