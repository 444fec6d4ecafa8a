"""an index that answers MIC's figures by step over every project

Revision ID: 0006
Revises: 0005
"""

from alembic import op

# Alembic reads these four names.
revision, down_revision = "0006", "0005"
branch_labels = depends_on = None


def upgrade() -> None:
    op.create_index("ix_task_report", "task", ["key", "status", "position", "name"])


def downgrade() -> None:
    op.drop_index("ix_task_report", table_name="task")
