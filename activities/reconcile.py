"""Reconciliation of the read model with the workflows: read each project's truth, repair
the rows that differ, count the drift (see workflows/reconcile.py)."""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.client import Client

from activities.projection import take_turns, write_projection
from readmodel import tables as t
from workflows.calendar import jst_today
from workflows.migration import MigrationWorkflow
from workflows.model import ProjectionInput, escalation_rows, projection, task_rows
from workflows.reconcile import (
    DRIFT_METRIC,
    RECONCILE_ACTIVITY,
    ReconcileInput,
    ReconcileResult,
)

log = structlog.get_logger(__name__)

# Every table a project's projection writes, by the name the metric gives it.
_TABLES: dict[str, Any] = {
    "project": t.Project,
    "task": t.Task,
    "escalation": t.Escalation,
    "event": t.Event,
    "gate_decision": t.GateDecision,
    "milestone": t.Milestone,
}
_PROJECTS = t.Project.__table__  # type: ignore[attr-defined]
_KEPT_IN_DRIFT = 100
# How long a page session that ended (signed out) or expired stays, for the audit of who was
# signed in when; the nightly run deletes it after that.
ENDED_SESSIONS_KEPT = timedelta(days=30)
_SESSIONS = t.PageSession.__table__  # type: ignore[attr-defined]


def prune_page_sessions(engine: Engine, now: datetime | None = None) -> int:
    """Delete page sessions that ended or expired more than ``ENDED_SESSIONS_KEPT`` ago; the
    number deleted. An open session is never touched."""
    before = (now or datetime.now(UTC)) - ENDED_SESSIONS_KEPT
    with engine.begin() as conn:
        done = conn.execute(
            delete(_SESSIONS).where(
                or_(_SESSIONS.c.ended_at < before, _SESSIONS.c.expires_at < before)
            )
        )
    return max(done.rowcount or 0, 0)


def projects_query(task_queue: str) -> str:
    """This deployment's running projects (a query needs a worker of its queue to answer)."""
    return (
        f"WorkflowType = 'MigrationWorkflow' AND TaskQueue = '{task_queue}' "
        "AND ExecutionStatus = 'Running'"
    )


async def workflow_truth(client: Client, workflow_id: str) -> ProjectionInput:
    """A project's whole projection as its workflow holds it, state and events read in one
    query (what ``hyojunka readmodel rebuild`` writes)."""
    snap = await client.get_workflow_handle(workflow_id).query(MigrationWorkflow.truth)
    journal = snap.events
    # A long-lived project's journal starts where its last continue-as-new let older events
    # go (the read model holds them): those before it are left as they are.
    since = journal[0].seq - 1 if journal else snap.state.seq
    return projection(snap, since, task_rows(snap.state), escalation_rows(snap.state), None, None)


def checked_tonight(workflow_id: str, share: int, day: date) -> bool:
    """Whether a project is among the ``1 / share`` checked on ``day``: each project once
    every ``share`` nights, the same number each night."""
    return share <= 1 or zlib.crc32(workflow_id.encode()) % share == day.toordinal() % share


def _rows(session: Session, project_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the read model holds of one project, table by table, in key order."""
    held = {}
    for name, model in _TABLES.items():
        table = model.__table__
        where = table.c.id if model is t.Project else table.c.project_id
        keys = list(table.primary_key.columns)
        rows = session.execute(select(table).where(where == project_id).order_by(*keys))
        held[name] = [tuple(row) for row in rows]
    return held


def repair(engine: Engine, truth: ProjectionInput) -> list[str]:
    """Rewrite a project's rows from its workflow's truth; the tables that differed, or
    none (then nothing is committed). Blocking: run it on a thread."""
    pid = truth.project.project_id
    with Session(engine) as session:
        take_turns(session)  # before the row's lock, as the projection writers take them
        # Locks the row on PostgreSQL, so the project's own projection waits for us; and
        # skips a project that has moved on since its workflow was asked.
        held_seq = session.execute(
            select(_PROJECTS.c.seq).where(_PROJECTS.c.id == pid).with_for_update()
        ).scalar_one_or_none()
        if held_seq is not None and held_seq > truth.project.seq:
            return []
        before = _rows(session, pid)
        write_projection(session, truth)
        after = _rows(session, pid)
        differs = sorted(name for name in _TABLES if before[name] != after[name])
        if differs:
            session.commit()
        else:
            session.rollback()
        return differs


class ReconcileActivities:
    """Built by the worker with its Temporal client and read-model engine."""

    def __init__(self, client: Client, engine: Engine, task_queue: str) -> None:
        self._client = client
        self._engine = engine
        self._task_queue = task_queue

    @activity.defn(name=RECONCILE_ACTIVITY)
    async def reconcile_read_model(self, inp: ReconcileInput) -> ReconcileResult:
        result = ReconcileResult()
        drift = activity.metric_meter().create_counter(
            DRIFT_METRIC,
            "Projects whose read model differed from their workflow and was repaired, by table",
        )
        turns = asyncio.Semaphore(max(1, inp.concurrency))

        async def check(workflow_id: str) -> None:
            try:
                async with turns:
                    truth = await workflow_truth(self._client, workflow_id)
                    differs = await asyncio.to_thread(repair, self._engine, truth)
            except Exception as exc:  # one project that cannot be read must not stop the rest
                result.failed += 1
                log.warning("reconciliation failed", workflow_id=workflow_id, error=repr(exc))
                return
            finally:
                activity.heartbeat(result.checked)
            result.checked += 1
            if differs:
                result.repaired += 1
                if len(result.drift) < _KEPT_IN_DRIFT:
                    result.drift[truth.project.project_id] = differs
                for table in differs:
                    drift.add(1, {"table": table})
                log.warning(
                    "read model drift repaired", project_id=truth.project.project_id, tables=differs
                )

        pending: set[asyncio.Task[None]] = set()
        today = jst_today(datetime.now(UTC))
        async for wf in self._client.list_workflows(projects_query(self._task_queue)):
            if not checked_tonight(wf.id, inp.share, today):
                result.skipped += 1
                continue
            pending.add(asyncio.create_task(check(wf.id)))
            if len(pending) >= 4 * inp.concurrency:  # list as fast as they are checked
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending)
        result.sessions_pruned = await asyncio.to_thread(prune_page_sessions, self._engine)
        if result.sessions_pruned:
            log.info("page sessions pruned", count=result.sessions_pruned)
        return result
