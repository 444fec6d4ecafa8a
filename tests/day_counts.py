"""The vendors' day counts (``vendor_task_day``) against a count of the tasks themselves:
for the tests that write tasks and then check that the triggers kept up."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

Counts = dict[tuple[str, str], tuple[int, int]]

COUNTED = (
    "owner = 'vendor' AND vendor_id IS NOT NULL AND due_date IS NOT NULL "
    "AND status <> 'not_applicable'"
)


def definition(engine: Engine) -> Counts:
    """(day, vendor) -> (tasks, done), as the tasks give them."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT CAST(due_date AS VARCHAR), vendor_id, count(*), "
                "sum(CASE WHEN status = 'done' THEN 1 ELSE 0 END) "
                f"FROM task WHERE {COUNTED} GROUP BY due_date, vendor_id"
            )
        ).all()
    return {(day, vendor): (n, done) for day, vendor, n, done in rows}


def kept(engine: Engine) -> Counts:
    """(day, vendor) -> (tasks, done), as the triggers keep them (a day whose last task went
    keeps a row of zeros, left out here)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT CAST(due_date AS VARCHAR), vendor_id, tasks, done FROM vendor_task_day")
        ).all()
    assert all(0 <= done <= n for _, _, n, done in rows), rows
    return {(day, vendor): (n, done) for day, vendor, n, done in rows if n}


def off(engine: Engine) -> int:
    """How many (day, vendor) counts differ from the tasks'."""
    want, have = definition(engine), kept(engine)
    return sum(1 for key in want.keys() | have.keys() if want.get(key) != have.get(key))
