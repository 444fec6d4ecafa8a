"""monthly progress snapshots

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

# Alembic reads these four names.
revision, down_revision = "0009", "0008"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "progress_snapshot",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("project_id", text(), nullable=False),
        sa.Column("lg_code", text(), nullable=False),
        sa.Column("prefecture", text(), nullable=False),
        sa.Column("business", text(), nullable=False),
        sa.Column("vendor_id", text(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("in_progress", sa.Integer(), nullable=False),
        sa.Column("not_started", sa.Integer(), nullable=False),
        sa.Column("not_applicable", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month", "project_id"),
    )
    op.create_index("ix_progress_snapshot_prefecture", "progress_snapshot", ["prefecture", "month"])
    op.create_index("ix_progress_snapshot_lg_code", "progress_snapshot", ["lg_code", "month"])


def downgrade() -> None:
    op.drop_table("progress_snapshot")
