"""forecast terms: the forecast go-live worked out on the day it is read

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forecast_slip_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('forecast_slips_from', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('forecast_slips_from')
        batch_op.drop_column('forecast_slip_days')
