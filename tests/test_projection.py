"""The projection converges on the workflow's truth against a real SQLite read model: a
partial write applies only on the state it builds on, and a full write replaces what a
workflow task that never committed left behind."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from activities.projection import write_projection
from readmodel import tables as t
from tests.workflows.helpers import new_input
from workflows.core import Migration
from workflows.model import (
    APPLIED,
    RESYNC,
    Event,
    MigrationState,
    ProjectSnapshot,
    escalation_rows,
    progress_of,
    projection,
    task_rows,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _state() -> MigrationState:
    return Migration.start(new_input(date(2029, 4, 1)), NOW).s


def _record(s: MigrationState, kind: str, **data: object) -> None:
    s.seq += 1
    s.journal.append(Event(s.seq, NOW, "pm:x", kind, dict(data)))


def _snap(s: MigrationState, base: int) -> ProjectSnapshot:
    return ProjectSnapshot(
        state=s,
        stage="current_state",
        health="at_risk",
        progress=progress_of([x.status for x in s.tasks.values()]),
        events=[e for e in s.journal if e.seq > base],
    )


def _write(engine: Engine, s: MigrationState, base: int, sent: bool) -> str:
    """A full write, or a partial one carrying what differs from a fresh project's rows."""
    tasks, escs = task_rows(s), escalation_rows(s)
    before = task_rows(_state()) if sent else None
    w = projection(_snap(s, base), base, tasks, escs, before, {} if sent else None)
    with Session(engine) as session:
        outcome = write_projection(session, w)
        session.commit()
    return outcome


def _events(engine: Engine) -> list[tuple[int, str]]:
    with Session(engine) as session:
        return [(e.seq, e.kind) for e in session.exec(select(t.Event).order_by(t.Event.seq))]


def test_a_partial_write_applies_only_on_the_state_it_builds_on(engine: Engine) -> None:
    s = _state()
    _record(s, "project_created")
    assert _write(engine, s, 0, sent=False) == APPLIED
    s.tasks["setup_governance"].status = "in_progress"
    _record(s, "task_updated", task_key="setup_governance")
    # Built on seq 5, which the read model never held: refused, nothing written.
    assert _write(engine, s, 5, sent=True) == RESYNC
    assert _events(engine) == [(1, "project_created")]
    assert _write(engine, s, 1, sent=True) == APPLIED
    assert _events(engine) == [(1, "project_created"), (2, "task_updated")]
    with Session(engine) as session:
        assert session.get(t.Task, (s.project_id, "setup_governance")).status == "in_progress"  # type: ignore[union-attr]


def test_a_full_write_replaces_what_an_uncommitted_task_left(engine: Engine) -> None:
    s = _state()
    _record(s, "project_created")
    _write(engine, s, 0, sent=False)
    # A workflow task projects a milestone, then dies before Temporal commits it.
    lost = _state()
    lost.seq, lost.journal = s.seq, list(s.journal)
    lost.tasks["system_setup"].status = "in_progress"
    _record(
        lost,
        "milestone_reported",
        idempotency_key="k1",
        milestone_id="m2",
        task_key="system_setup",
        status="in_progress",
    )
    assert _write(engine, lost, 1, sent=True) == APPLIED
    # The retried task does something else with seq 2; its partial write is refused ...
    s.tasks["setup_governance"].status = "in_progress"
    _record(s, "task_updated", task_key="setup_governance")
    _record(s, "task_updated", task_key="setup_governance")
    assert _write(engine, s, 1, sent=True) == RESYNC
    # ... and the whole truth replaces the lost task's rows.
    assert _write(engine, s, 1, sent=False) == APPLIED
    assert _events(engine) == [(1, "project_created"), (2, "task_updated"), (3, "task_updated")]
    with Session(engine) as session:
        assert session.get(t.Task, (s.project_id, "system_setup")).status == "not_started"  # type: ignore[union-attr]
        assert session.exec(select(t.Milestone)).all() == []
