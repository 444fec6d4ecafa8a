"""vendor task days: each vendor's tasks due on each day and how many are done, kept by
triggers on task, so that vendors' tasks by month are summed over vendors × days

The triggers count a task while it is the vendor's (owner 'vendor'), has a vendor and a due
date, and applies (status other than 'not_applicable'); ``done`` counts those done. They fire
in the statement that writes the task, whoever writes it, so the counts are never behind.

SQLite drops a table's triggers when Alembic's batch mode copies the table: a later
migration that alters ``task`` in batch mode must create these triggers again.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

# Alembic reads these four names.
revision, down_revision = "0016", "0015"
branch_labels = depends_on = None


def _counted(row: str) -> str:
    return (
        f"{row}.owner = 'vendor' AND {row}.vendor_id IS NOT NULL "
        f"AND {row}.due_date IS NOT NULL AND {row}.status <> 'not_applicable'"
    )


_CHANGED = (
    "OLD.owner IS DISTINCT FROM NEW.owner OR OLD.vendor_id IS DISTINCT FROM NEW.vendor_id "
    "OR OLD.due_date IS DISTINCT FROM NEW.due_date OR OLD.status IS DISTINCT FROM NEW.status"
)
_TAKE = (
    "UPDATE vendor_task_day SET tasks = tasks - 1, done = done - {done} "
    "WHERE due_date = OLD.due_date AND vendor_id = OLD.vendor_id"
)
_ADD = (
    "INSERT INTO vendor_task_day (due_date, vendor_id, tasks, done) "
    "{values} ON CONFLICT (due_date, vendor_id) DO UPDATE "
    "SET tasks = vendor_task_day.tasks + 1, done = vendor_task_day.done + excluded.done"
)

_ADD_SQLITE = _ADD.format(
    values="SELECT NEW.due_date, NEW.vendor_id, 1, NEW.status = 'done' WHERE " + _counted("NEW")
)
_ADD_POSTGRESQL = _ADD.format(
    values="VALUES (NEW.due_date, NEW.vendor_id, 1, (NEW.status = 'done')::integer)"
)

_SQLITE = [
    f"""CREATE TRIGGER task_vendor_day_insert AFTER INSERT ON task
    WHEN {_counted("NEW")}
    BEGIN
        {_ADD_SQLITE};
    END""",
    f"""CREATE TRIGGER task_vendor_day_delete AFTER DELETE ON task
    WHEN {_counted("OLD")}
    BEGIN
        {_TAKE.format(done="(OLD.status = 'done')")};
    END""",
    f"""CREATE TRIGGER task_vendor_day_update
    AFTER UPDATE OF owner, vendor_id, due_date, status ON task
    WHEN {_CHANGED.replace("IS DISTINCT FROM", "IS NOT")}
    BEGIN
        {_TAKE.format(done="(OLD.status = 'done')")} AND {_counted("OLD")};
        {_ADD_SQLITE};
    END""",
]

_POSTGRESQL = [
    f"""CREATE FUNCTION task_vendor_day() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            IF {_counted("OLD")} THEN
                {_TAKE.format(done="(OLD.status = 'done')::integer")};
            END IF;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            IF {_counted("NEW")} THEN
                {_ADD_POSTGRESQL};
            END IF;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER task_vendor_day_insert_delete AFTER INSERT OR DELETE ON task
    FOR EACH ROW EXECUTE FUNCTION task_vendor_day()""",
    f"""CREATE TRIGGER task_vendor_day_update
    AFTER UPDATE OF owner, vendor_id, due_date, status ON task
    FOR EACH ROW WHEN ({_CHANGED}) EXECUTE FUNCTION task_vendor_day()""",
]


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "vendor_task_day",
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("vendor_id", text(), nullable=False),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("due_date", "vendor_id"),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "INSERT INTO vendor_task_day (due_date, vendor_id, tasks, done) "
            "SELECT due_date, vendor_id, count(*), "
            "sum(CASE WHEN status = 'done' THEN 1 ELSE 0 END) FROM task "
            f"WHERE {_counted('task')} GROUP BY due_date, vendor_id"
        )
    )
    for statement in _POSTGRESQL if bind.dialect.name == "postgresql" else _SQLITE:
        bind.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("DROP TRIGGER task_vendor_day_update ON task"))
        bind.execute(sa.text("DROP TRIGGER task_vendor_day_insert_delete ON task"))
        bind.execute(sa.text("DROP FUNCTION task_vendor_day()"))
    else:
        for name in ("insert", "delete", "update"):
            bind.execute(sa.text(f"DROP TRIGGER task_vendor_day_{name}"))
    op.drop_table("vendor_task_day")
