"""programmes: a project's and a stored template's kind (migration or programme)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

# Alembic reads these four names.
revision, down_revision = "0014", "0013"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", text(), nullable=False, server_default="migration")
        )
        batch_op.create_index("ix_project_kind", ["kind"], unique=False)
    with op.batch_alter_table("procedure_template", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", text(), nullable=False, server_default="migration")
        )


def downgrade() -> None:
    with op.batch_alter_table("procedure_template", schema=None) as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_index("ix_project_kind")
        batch_op.drop_column("kind")
