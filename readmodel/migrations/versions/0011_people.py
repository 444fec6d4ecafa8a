"""people: accounts, sign-in links, daily mail, personal tokens and sessions

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import readmodel.tables

# Alembic reads these four names.
revision, down_revision = "0011", "0010"
branch_labels = depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    ts = readmodel.tables.UTCDateTime
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", text(), nullable=False),
        sa.Column("email", text(), nullable=False),
        sa.Column("email_key", text(), nullable=False),
        sa.Column("role", text(), nullable=False),
        sa.Column("lg_code", text(), nullable=True),
        sa.Column("prefecture", text(), nullable=True),
        sa.Column("vendor_id", text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("notify", text(), nullable=False),
        sa.Column("created_by", text(), nullable=True),
        sa.Column("created_at", ts(timezone=True), nullable=True),
        sa.Column("last_sign_in", ts(timezone=True), nullable=True),
        sa.Column("deactivated_at", ts(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.create_index("ix_person_email_key", ["email_key"], unique=True)
        for column in ("role", "lg_code", "prefecture", "vendor_id"):
            batch_op.create_index(f"ix_person_{column}", [column], unique=False)
    op.create_table(
        "sign_in_link",
        sa.Column("id", text(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("purpose", text(), nullable=False),
        sa.Column("created_at", ts(timezone=True), nullable=True),
        sa.Column("expires_at", ts(timezone=True), nullable=True),
        sa.Column("used_at", ts(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sign_in_link", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_link_person_id", ["person_id"], unique=False)
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", text(), nullable=False),
        sa.Column("project_id", text(), nullable=False),
        sa.Column("subject", text(), nullable=False),
        sa.Column("text", text(), nullable=False),
        sa.Column("link", text(), nullable=False),
        sa.Column("queued_at", ts(timezone=True), nullable=True),
        sa.Column("sent_at", ts(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mail_queue", schema=None) as batch_op:
        batch_op.create_index("ix_mail_queue_person_id", ["person_id"], unique=False)
        batch_op.create_index("ix_mail_queue_sent_at", ["sent_at"], unique=False)
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_api_token_person_id", ["person_id"], unique=False)
    with op.batch_alter_table("page_session", schema=None) as batch_op:
        batch_op.alter_column("token_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_page_session_person_id", ["person_id"], unique=False)
    with op.batch_alter_table("delivery_attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", text(), nullable=True))
    with op.batch_alter_table("calendar_feed", schema=None) as batch_op:
        batch_op.alter_column("token_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_calendar_feed_person_id", ["person_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calendar_feed", schema=None) as batch_op:
        batch_op.drop_index("ix_calendar_feed_person_id")
        batch_op.drop_column("person_id")
        batch_op.alter_column("token_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("delivery_attempt", schema=None) as batch_op:
        batch_op.drop_column("recipient")
    with op.batch_alter_table("page_session", schema=None) as batch_op:
        batch_op.drop_index("ix_page_session_person_id")
        batch_op.drop_column("person_id")
        batch_op.alter_column("token_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index("ix_api_token_person_id")
        batch_op.drop_column("person_id")
    op.drop_table("mail_queue")
    op.drop_table("sign_in_link")
    op.drop_table("person")
