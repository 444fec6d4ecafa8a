"""Projection of a workflow's state into the SQL read model, idempotent by sequence number."""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from datetime import date, datetime
from typing import Any

import structlog
from sqlalchemy import Integer, String, bindparam, case, delete, func, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from readmodel import tables as t
from readmodel.golive import forecast_month, jst_month
from workflows.core import GO_LIVE_TASK
from workflows.migration import PROJECTION_ACTIVITY
from workflows.model import (
    APPLIED,
    HANDED_OVER,
    RESYNC,
    Escalation,
    Event,
    HandOver,
    ProjectionInput,
    ProjectRow,
    TaskRow,
    workflow_id_for,
)
from workflows.survey import STALE_TASKS_ACTIVITY, StaleBody, StaleTask
from workflows.vocabulary import EventKind, Stage, TaskStatus

log = structlog.get_logger(__name__)


def upsert(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows, or overwrite those whose primary key is there: the workflow's truth wins."""
    if not rows:
        return
    conn = session.connection()  # Core statements: past the ORM's execution path
    conn.execute(_upsert_statement(conn.dialect.name, table.__table__, tuple(rows[0])), rows)


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect: str, sql_table: Any, columns: tuple[str, ...]) -> Any:
    """One statement per table and set of columns, built once: building ``excluded`` anew
    for every write took about 8 % of the worker's samples while the country was imported."""
    keys = [c.name for c in sql_table.primary_key.columns]
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(sql_table)
    changed = [c for c in columns if c not in keys]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c: stmt.excluded[c] for c in changed}
    )


def _json(value: Any) -> dict[str, Any] | None:
    """A decision or an extended track as its JSON column holds it (dates as ISO text)."""
    if value is None:
        return None
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in vars(value).items()}


def _project_values(p: ProjectRow) -> dict[str, Any]:
    """The project row's columns but ``live_month`` (see ``_live_month``)."""
    values = {k: v for k, v in vars(p).items() if k != "progress"}
    values.update(vars(p.progress), extended_track=_json(p.extended_track))
    f = forecast_month(
        p.target_go_live, p.forecast_go_live, p.forecast_slip_days, p.forecast_slips_from
    )
    values.update(
        forecast_month=f.month, forecast_moves_from=f.moves_from, forecast_offset=f.offset
    )
    return dict(values, workflow_id=workflow_id_for(p.lg_code, p.business))


# How a write sets live_month: to its value, keeping the row's, or the row's if it has one.
_SET, _KEEP, _KEEP_OR_SET = "set", "keep", "keep-or-set"


def _live_month(p: ProjectRow, tasks: list[TaskRow], full: bool) -> tuple[str, int | None]:
    """The month the project went live (readmodel.golive): its cutover's, else the month it
    completed; a write that does not carry the cutover keeps what the row holds."""
    cutover = next((r for r in tasks if r.key == GO_LIVE_TASK), None)
    if cutover is not None and cutover.status == TaskStatus.DONE and cutover.completed_at:
        return _SET, jst_month(cutover.completed_at)
    completed = jst_month(p.completed_at) if p.stage == Stage.COMPLETED and p.completed_at else None
    if cutover is not None or full:
        return _SET, completed
    if completed is not None:  # a cutover done before keeps its own month
        return _KEEP_OR_SET, completed
    return _KEEP, None


@functools.lru_cache(maxsize=4)
def _project_update(columns: tuple[str, ...]) -> Any:
    """A partial write's UPDATE of the project row, on the sequence it builds on, compiled
    once (building it anew for every write was a tenth of the worker's busy time)."""
    c = _PROJECTS.c
    mode, live = bindparam("live_mode", type_=String()), bindparam("v_live_month", type_=Integer())
    values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=c[k].type) for k in columns}
    values["live_month"] = case(
        (mode == _KEEP, c.live_month),
        (mode == _KEEP_OR_SET, func.coalesce(c.live_month, live)),
        else_=live,
    )
    return (
        update(_PROJECTS)
        .where(c.id == bindparam("w_id"), c.seq == bindparam("w_seq"))
        .values(values)
    )


def _task_values(pid: str, r: TaskRow, vendor_id: str | None) -> dict[str, Any]:
    return dict(vars(r), project_id=pid, decision=_json(r.decision), vendor_id=vendor_id)


_PROJECTS = t.Project.__table__  # type: ignore[attr-defined]
_TASKS = t.Task.__table__  # type: ignore[attr-defined]
_TASK_CHANGES = (
    "status",
    "due_date",
    "started_at",
    "completed_at",
    "percent",
    "decision",
    "note",
    "updated_at",
)
# One statement for every changed task of a write (executemany), compiled once.
_TASK_UPDATE = (
    update(_TASKS)
    .where(_TASKS.c.project_id == bindparam("w_project_id"), _TASKS.c.key == bindparam("w_key"))
    .values({c: bindparam(f"v_{c}", type_=_TASKS.c[c].type) for c in _TASK_CHANGES})
)


_TASK_VENDOR = (
    update(_TASKS)
    .where(
        _TASKS.c.project_id == bindparam("w_project_id"),
        _TASKS.c.vendor_id.is_distinct_from(
            bindparam("w_vendor_id", type_=_TASKS.c.vendor_id.type)
        ),
    )
    .values(vendor_id=bindparam("w_vendor_id", type_=_TASKS.c.vendor_id.type))
)


# A full write's deletes, built once (building them for every creation was about a
# twentieth of the worker's samples while projects were created).
_DELETE_AFTER = tuple(
    delete(table).where(
        table.c.project_id == bindparam("w_project_id"), table.c.seq > bindparam("w_seq")
    )
    for table in (
        t.Event.__table__,  # type: ignore[attr-defined]
        t.GateDecision.__table__,  # type: ignore[attr-defined]
        t.Milestone.__table__,  # type: ignore[attr-defined]
    )
)
_DELETE_OTHER_TASKS = delete(_TASKS).where(
    _TASKS.c.project_id == bindparam("w_project_id"),
    _TASKS.c.key.not_in(bindparam("w_keep", expanding=True)),
)
_ESCALATIONS = t.Escalation.__table__  # type: ignore[attr-defined]
_DELETE_UNHELD_ESCALATIONS = delete(_ESCALATIONS).where(
    _ESCALATIONS.c.project_id == bindparam("w_project_id"),
    _ESCALATIONS.c.id.not_in(bindparam("w_keep", expanding=True)),
    _ESCALATIONS.c.status != "resolved",
)


def _task_params(pid: str, r: TaskRow) -> dict[str, Any]:
    values = _task_values(pid, r, None)
    return {
        "w_project_id": pid,
        "w_key": r.key,
        **{f"v_{c}": values[c] for c in _TASK_CHANGES},
    }


def _escalation_values(p: ProjectRow, e: Escalation) -> dict[str, Any]:
    scope = dict(lg_code=p.lg_code, prefecture=p.prefecture, vendor_id=p.vendor_id)
    return dict(vars(e), project_id=p.project_id, audience=list(e.audience), **scope)


def _write_events(session: Session, pid: str, events: list[Event]) -> None:
    upsert(
        session,
        t.Event,
        [dict(vars(e), project_id=pid) for e in events],
    )
    upsert(
        session,
        t.GateDecision,
        [
            dict(
                project_id=pid,
                seq=e.seq,
                gate_key=e.data["gate_key"],
                outcome=e.data["outcome"],
                by=e.actor,
                at=e.at,
                comment=e.data.get("comment"),
            )
            for e in events
            if e.kind == EventKind.GATE_DECIDED
        ],
    )
    upsert(
        session,
        t.Milestone,
        [
            dict(
                project_id=pid,
                idempotency_key=e.data["idempotency_key"],
                milestone_id=e.data["milestone_id"],
                seq=e.seq,
                task_key=e.data["task_key"],
                status=e.data["status"],
                percent=e.data.get("percent"),
                note=e.data.get("note"),
                actor=e.actor,
                at=e.at,
            )
            for e in events
            if e.kind == EventKind.MILESTONE_REPORTED
        ],
    )


def write_projection(session: Session, w: ProjectionInput) -> str:
    """Apply one write in the caller's transaction; ``RESYNC`` when a partial write does not
    start from what the read model holds (nothing is written then)."""
    p = w.project
    pid = p.project_id
    # Core statements on the session's connection: the ORM's execution path was most of the
    # cost of a write.
    conn = session.connection()
    values = _project_values(p)
    mode, live = _live_month(p, w.tasks, w.full)
    if not w.full:
        params = {f"v_{k}": v for k, v in values.items()}
        moved = conn.execute(
            _project_update(tuple(values)),
            dict(params, w_id=pid, w_seq=w.base_seq, live_mode=mode, v_live_month=live),
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return RESYNC
        if w.tasks:
            conn.execute(_TASK_UPDATE, [_task_params(pid, r) for r in w.tasks])
        # The tasks follow their project's vendor (a replaced vendor: every task at once).
        conn.execute(_TASK_VENDOR, {"w_project_id": pid, "w_vendor_id": p.vendor_id})
        upsert(session, t.Escalation, [_escalation_values(p, e) for e in w.escalations])
        _write_events(session, pid, w.events)
        return APPLIED

    # Everything: what the read model holds after base_seq came from a workflow task that
    # never committed, or from a rebuild; the workflow's truth replaces it.
    assert w.template is not None
    upsert(session, t.Project, [dict(id=pid, live_month=live, **values)])
    for statement in _DELETE_AFTER:
        conn.execute(statement, {"w_project_id": pid, "w_seq": w.base_seq})
    by_key = {r.key: r for r in w.tasks}
    upsert(
        session,
        t.Task,
        [
            dict(
                _task_values(pid, by_key[spec.key], p.vendor_id),
                position=position,
                name=spec.name,
                stage=spec.stage,
                owner=spec.owner,
                gate=spec.gate,
                depends_on=list(spec.depends_on),
            )
            for position, spec in enumerate(w.template.tasks)
        ],
    )
    conn.execute(_DELETE_OTHER_TASKS, {"w_project_id": pid, "w_keep": list(by_key)})
    upsert(session, t.Escalation, [_escalation_values(p, e) for e in w.escalations])
    # Rows the workflow does not hold: those of a workflow task that never committed go;
    # resolved ones stay, as a long-lived project lets old resolved escalations go (let_go).
    conn.execute(
        _DELETE_UNHELD_ESCALATIONS,
        {"w_project_id": pid, "w_keep": [e.id for e in w.escalations]},
    )
    _write_events(session, pid, w.events)
    return APPLIED


_TAKE_TURNS = text("SELECT pg_advisory_xact_lock(7142586400170116)")


def take_turns(session: Session) -> None:
    """Wait for this transaction's turn to write projects' rows, first thing in it.

    On PostgreSQL, writers of the read model (the writer of each worker process, the nightly
    repair, a rebuild) take turns: each task written moves its vendor's count of the day
    (``vendor_task_day``, kept by a trigger), and two transactions moving the same counts in
    opposite orders would deadlock. A turn lasts until its transaction ends. SQLite has one
    writer at a time of itself."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_TAKE_TURNS)


class ProjectionWriter:
    """Writes projections on one thread, many per transaction (group commit).

    Writers of the read model queue here instead of contending for the database: SQLite
    takes one writer at a time and makes the others poll and sleep, so ten projects writing
    at once spent most of their time asleep. Each write in a batch either applies or is
    refused without writing (``RESYNC``), so one commit serves them all; a batch that fails
    is retried one write at a time, so a bad write fails alone."""

    def __init__(self, engine: Engine, max_batch: int = 64) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[ProjectionInput, Future[str]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="projection-writer", daemon=True)
        self._thread.start()

    def submit(self, write: ProjectionInput) -> Future[str]:
        done: Future[str] = Future()
        self._queue.put((write, done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._apply(batch)
                    return
                batch.append(more)
            self._apply(batch)

    def _apply(self, batch: list[tuple[ProjectionInput, Future[str]]]) -> None:
        try:
            with Session(self._engine) as session:
                take_turns(session)
                outcomes = [write_projection(session, w) for w, _ in batch]
                session.commit()
        except Exception as exc:  # reported to the waiting activity, which retries
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for item in batch:
                self._apply([item])
            return
        for (w, done), outcome in zip(batch, outcomes, strict=True):
            log.debug(
                "projected",
                project_id=w.project.project_id,
                seq=w.project.seq,
                base_seq=w.base_seq,
                full=w.full,
                outcome=outcome,
                batch=len(batch),
                request_id=w.request_id or None,
            )
            done.set_result(outcome)


HandOverFn = Callable[[list[HandOver]], Awaitable[int]]


class ReadModelActivities:
    """Writes (and for reminders reads) the read model; one engine, built by the worker.
    ``hand_over`` hands over the notices a write carries (``HandOverActivities``)."""

    def __init__(self, engine: Engine, hand_over: HandOverFn) -> None:
        self._engine = engine
        self._writer = ProjectionWriter(engine)
        self._hand_over = hand_over

    def close(self) -> None:
        self._writer.close()

    @activity.defn(name=PROJECTION_ACTIVITY)
    async def project_migration(self, write: ProjectionInput) -> str:
        """The write, then the notices it carries once it is applied. A hand-over that fails
        fails the activity, whose retry finds the write applied (RESYNC), so the workflow
        sends it whole again with the same notices: a digest drops a notice it holds, and a
        notice's own workflow is started once."""
        outcome = await asyncio.wrap_future(self._writer.submit(write))
        if outcome == APPLIED and write.notices:
            await self._hand_over(write.notices)
            return HANDED_OVER
        return outcome

    @activity.defn(name=STALE_TASKS_ACTIVITY)
    async def find_stale_tasks(self, cutoff: datetime) -> list[StaleBody]:
        return await asyncio.to_thread(self._stale, cutoff)

    def _stale(self, cutoff: datetime) -> list[StaleBody]:
        """Open tasks whose status has not moved since ``cutoff``, grouped by local body."""
        query = (
            select(t.Project, t.Task)
            .join(t.Task, t.Task.project_id == t.Project.id)  # type: ignore[arg-type]
            .where(t.Task.status.in_((TaskStatus.NOT_STARTED, TaskStatus.IN_PROGRESS)))  # type: ignore[attr-defined]
            .where(t.Task.updated_at < cutoff)  # type: ignore[operator]
            .order_by(col(t.Project.lg_code), col(t.Project.id), col(t.Task.position))
        )
        bodies: dict[str, StaleBody] = {}
        with Session(self._engine) as session:
            for project, task in session.exec(query):
                body = bodies.setdefault(
                    project.lg_code,
                    StaleBody(project.lg_code, project.prefecture, project.body_name),
                )
                body.tasks.append(
                    StaleTask(
                        project.id,
                        project.business_name,
                        task.key,
                        task.name,
                        task.status,
                        task.updated_at,
                    )
                )
        return list(bodies.values())
