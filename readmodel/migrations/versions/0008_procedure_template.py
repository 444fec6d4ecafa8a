"""stored procedure templates

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0008", "0007"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "procedure_template",
        sa.Column("id", text(), nullable=False),
        sa.Column("version", text(), nullable=False),
        sa.Column("name", text(), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=True),
        sa.Column("created_by", text(), nullable=False),
        sa.Column("created_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", "version"),
    )


def downgrade() -> None:
    op.drop_table("procedure_template")
