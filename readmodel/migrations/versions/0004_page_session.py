"""server-side page sessions

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0004", "0003"
branch_labels = depends_on = None


def upgrade() -> None:
    op.create_table(
        "page_session",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("page_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_page_session_token_id"), ["token_id"], unique=False)


def downgrade() -> None:
    op.drop_table("page_session")
