"""token expiry and last use

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0003", "0002"
branch_labels = depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_on", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "last_used_at", readmodel.tables.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_on")
