"""go-live month: a project's live month and its forecast's month terms, and each task's
vendor, so that vendors' load by month is counted from indexes

Revision ID: 0015
Revises: 0014
"""

from datetime import date, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

from readmodel.golive import forecast_month, jst_month

# Alembic reads these four names.
revision, down_revision = "0015", "0014"
branch_labels = depends_on = None


def _day(value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value  # type: ignore[return-value]
    return date.fromisoformat(str(value)[:10])


def _moment(value: object) -> datetime | None:
    from readmodel.tables import UTCDateTime

    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return UTCDateTime().process_result_value(value, None)


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("live_month", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("forecast_month", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("forecast_moves_from", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("forecast_offset", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_project_go_live",
            [
                "vendor_id",
                "live_month",
                "forecast_month",
                "forecast_moves_from",
                "forecast_offset",
            ],
            unique=False,
        )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vendor_id", text(), nullable=True))
        batch_op.drop_index("ix_task_owner_due")
        batch_op.create_index(
            "ix_task_vendor_due",
            ["owner", "due_date", "vendor_id", "status", "project_id"],
            unique=False,
        )
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE task SET vendor_id = "
            "(SELECT project.vendor_id FROM project WHERE project.id = task.project_id)"
        )
    )
    cutovers: dict[str, object] = dict(
        bind.execute(
            sa.text(
                "SELECT project_id, completed_at FROM task "
                "WHERE key = 'cutover' AND status = 'done' AND completed_at IS NOT NULL"
            )
        ).all()
    )
    rows = bind.execute(
        sa.text(
            "SELECT id, target_go_live, forecast_go_live, forecast_slip_days, "
            "forecast_slips_from, stage, completed_at FROM project"
        )
    ).all()
    values = []
    for r in rows:
        done = _moment(cutovers.get(r.id))
        if done is None and r.stage == "completed":
            done = _moment(r.completed_at)
        f = forecast_month(
            _day(r.target_go_live),  # type: ignore[arg-type]
            _day(r.forecast_go_live),
            r.forecast_slip_days,
            _day(r.forecast_slips_from),
        )
        values.append(
            {
                "pid": r.id,
                "live": jst_month(done) if done is not None else None,
                "month": f.month,
                "moves": f.moves_from,
                "offset": f.offset,
            }
        )
    if values:
        bind.execute(
            sa.text(
                "UPDATE project SET live_month = :live, forecast_month = :month, "
                "forecast_moves_from = :moves, forecast_offset = :offset WHERE id = :pid"
            ),
            values,
        )


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_vendor_due")
        batch_op.create_index(
            "ix_task_owner_due", ["owner", "due_date", "status", "project_id"], unique=False
        )
        batch_op.drop_column("vendor_id")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_index("ix_project_go_live")
        batch_op.drop_column("forecast_offset")
        batch_op.drop_column("forecast_moves_from")
        batch_op.drop_column("forecast_month")
        batch_op.drop_column("live_month")
