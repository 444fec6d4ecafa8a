"""vendor capacity: go-lives and tasks a month a vendor states it can carry; its tasks by due
month from an index

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0012", "0011"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    ts = readmodel.tables.UTCDateTime
    op.create_table(
        "vendor_capacity",
        sa.Column("vendor_id", text(length=64), nullable=False),
        sa.Column("go_lives_per_month", sa.Integer(), nullable=True),
        sa.Column("tasks_per_month", sa.Integer(), nullable=True),
        sa.Column("updated_at", ts(timezone=True), nullable=True),
        sa.Column("updated_by", text(), nullable=True),
        sa.PrimaryKeyConstraint("vendor_id"),
    )
    op.create_index(
        "ix_task_owner_due", "task", ["owner", "due_date", "status", "project_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_task_owner_due", table_name="task")
    op.drop_table("vendor_capacity")
