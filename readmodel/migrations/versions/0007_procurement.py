"""joint procurements and their members

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0007", "0006"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "procurement",
        sa.Column("id", text(), nullable=False),
        sa.Column("workflow_id", text(), nullable=False),
        sa.Column("name", text(), nullable=False),
        sa.Column("lead_lg_code", text(), nullable=False),
        sa.Column("lead_name", text(), nullable=False),
        sa.Column("prefecture", text(), nullable=False),
        sa.Column("business", text(), nullable=False),
        sa.Column("business_name", text(), nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("vendor_id", text(), nullable=True),
        sa.Column("tasks", sa.JSON(), nullable=True),
        sa.Column("events", sa.JSON(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("lead_lg_code", "prefecture", "business"):
        op.create_index(f"ix_procurement_{column}", "procurement", [column])
    op.create_table(
        "procurement_member",
        sa.Column("procurement_id", text(), nullable=False),
        sa.Column("project_id", text(), nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.PrimaryKeyConstraint("procurement_id", "project_id"),
    )
    op.create_index("ix_procurement_member_project_id", "procurement_member", ["project_id"])


def downgrade() -> None:
    op.drop_table("procurement_member")
    op.drop_table("procurement")
