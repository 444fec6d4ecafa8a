"""rollout: a template revision rolled out to running projects, with its progress

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0013", "0012"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    ts = readmodel.tables.UTCDateTime
    op.create_table(
        "rollout",
        sa.Column("id", text(length=64), nullable=False),
        sa.Column("workflow_id", text(), nullable=False),
        sa.Column("template", text(), nullable=False),
        sa.Column("from_version", text(), nullable=False),
        sa.Column("to_version", text(), nullable=False),
        sa.Column("reason", text(), nullable=False),
        sa.Column("prefecture", text(), nullable=True),
        sa.Column("lg_code", text(), nullable=True),
        sa.Column("status", text(), nullable=False),
        sa.Column("moved", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("refused_count", sa.Integer(), nullable=False),
        sa.Column("refused", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("created_by", text(), nullable=False),
        sa.Column("owner", text(), nullable=False),
        sa.Column("started_at", ts(timezone=True), nullable=True),
        sa.Column("updated_at", ts(timezone=True), nullable=True),
        sa.Column("finished_at", ts(timezone=True), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollout_template", "rollout", ["template"], unique=False)
    op.create_index("ix_rollout_status", "rollout", ["status"], unique=False)
    op.create_index("ix_rollout_owner", "rollout", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rollout_owner", table_name="rollout")
    op.drop_index("ix_rollout_status", table_name="rollout")
    op.drop_index("ix_rollout_template", table_name="rollout")
    op.drop_table("rollout")
