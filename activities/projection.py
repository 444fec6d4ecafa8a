"""Projection of a workflow's state into the SQL read model, idempotent by sequence number."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from readmodel import tables as t
from workflows.migration import PROJECTION_ACTIVITY
from workflows.model import Decision, Event, ExtendedTrack, ProjectionInput, workflow_id_for
from workflows.survey import STALE_TASKS_ACTIVITY, StaleBody, StaleTask

log = structlog.get_logger(__name__)


def _decision(d: Decision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"outcome": d.outcome, "by": d.by, "at": d.at.isoformat(), "comment": d.comment}


def _extended(x: ExtendedTrack | None) -> dict[str, Any] | None:
    if x is None:
        return None
    return {
        "ground": x.ground,
        "planned_go_live": x.planned_go_live.isoformat(),
        "reason": x.reason,
        "declared_at": x.declared_at.isoformat(),
    }


def write_projection(session: Session, snap: ProjectionInput) -> bool:
    """Apply one snapshot. Returns False when the read model already holds a newer one."""
    s = snap.state
    pid = s.project_id
    for ev in snap.events:
        _write_event(session, pid, ev)
    row = session.get(t.Project, pid)
    if row is not None and row.seq >= s.seq:
        return False
    p = snap.progress
    values: dict[str, Any] = dict(
        id=pid,
        workflow_id=workflow_id_for(s.lg_code, s.business),
        lg_code=s.lg_code,
        body_name=s.body_name,
        prefecture=s.prefecture,
        business=s.business,
        business_name=s.business_name,
        vendor_id=s.vendor_id,
        switching_vendor=s.switching_vendor,
        template=s.template.id,
        target_go_live=s.target_go_live,
        deadline=s.deadline,
        forecast_go_live=snap.forecast_go_live,
        stage=snap.stage,
        health=snap.health,
        extended_track=_extended(s.extended_track),
        done=p.done,
        in_progress=p.in_progress,
        not_started=p.not_started,
        not_applicable=p.not_applicable,
        completion_rate=p.completion_rate,
        in_progress_rate=p.in_progress_rate,
        not_started_rate=p.not_started_rate,
        seq=s.seq,
        created_at=s.created_at,
        updated_at=s.updated_at,
        completed_at=s.completed_at,
    )
    if row is None:
        session.add(t.Project(**values))
    else:
        for k, v in values.items():
            setattr(row, k, v)
    existing = {r.key: r for r in session.exec(select(t.Task).where(t.Task.project_id == pid))}
    for position, spec in enumerate(s.template.tasks):
        task = s.tasks[spec.key]
        tv: dict[str, Any] = dict(
            project_id=pid,
            key=spec.key,
            position=position,
            name=spec.name,
            stage=spec.stage,
            owner=spec.owner,
            gate=spec.gate,
            status=task.status,
            depends_on=list(spec.depends_on),
            due_date=task.due_date,
            started_at=task.started_at,
            completed_at=task.completed_at,
            percent=task.percent,
            decision=_decision(task.decision),
            note=task.note,
            updated_at=task.updated_at,
        )
        if spec.key in existing:
            for k, v in tv.items():
                setattr(existing[spec.key], k, v)
        else:
            session.add(t.Task(**tv))
    stored = {
        r.id: r for r in session.exec(select(t.Escalation).where(t.Escalation.project_id == pid))
    }
    for esc in s.escalations:
        ev_values: dict[str, Any] = dict(
            id=esc.id,
            project_id=pid,
            lg_code=s.lg_code,
            prefecture=s.prefecture,
            vendor_id=s.vendor_id,
            task_key=esc.task_key,
            level=esc.level,
            audience=list(esc.audience),
            due_date=esc.due_date,
            raised_at=esc.raised_at,
            status=esc.status,
            acknowledged_by=esc.acknowledged_by,
            acknowledged_at=esc.acknowledged_at,
            resolved_at=esc.resolved_at,
        )
        found = stored.get(esc.id)
        if found is None:
            session.add(t.Escalation(**ev_values))
        else:
            for k, v in ev_values.items():
                setattr(found, k, v)
    return True


def _write_event(session: Session, pid: str, ev: Event) -> None:
    if session.get(t.Event, (pid, ev.seq)) is not None:
        return
    session.add(
        t.Event(
            project_id=pid, seq=ev.seq, at=ev.at, actor=ev.actor, kind=ev.kind, data=dict(ev.data)
        )
    )
    if ev.kind == "gate_decided":
        session.add(
            t.GateDecision(
                project_id=pid,
                seq=ev.seq,
                gate_key=ev.data["gate_key"],
                outcome=ev.data["outcome"],
                by=ev.actor,
                at=ev.at,
                comment=ev.data.get("comment"),
            )
        )
    elif ev.kind == "milestone_reported":
        d = ev.data
        if session.get(t.Milestone, (pid, d["idempotency_key"])) is None:
            session.add(
                t.Milestone(
                    project_id=pid,
                    idempotency_key=d["idempotency_key"],
                    milestone_id=d["milestone_id"],
                    seq=ev.seq,
                    task_key=d["task_key"],
                    status=d["status"],
                    percent=d.get("percent"),
                    note=d.get("note"),
                    actor=ev.actor,
                    at=ev.at,
                )
            )


class ReadModelActivities:
    """Writes (and for reminders reads) the read model; one engine, built by the worker."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=PROJECTION_ACTIVITY)
    async def project_migration(self, snap: ProjectionInput) -> bool:
        return await asyncio.to_thread(self._write, snap)

    def _write(self, snap: ProjectionInput) -> bool:
        with Session(self._engine) as session:
            applied = write_projection(session, snap)
            session.commit()
        log.debug(
            "projected",
            project_id=snap.state.project_id,
            seq=snap.state.seq,
            applied=applied,
            request_id=snap.request_id or None,
        )
        return applied

    @activity.defn(name=STALE_TASKS_ACTIVITY)
    async def find_stale_tasks(self, cutoff: datetime) -> list[StaleBody]:
        return await asyncio.to_thread(self._stale, cutoff)

    def _stale(self, cutoff: datetime) -> list[StaleBody]:
        """Open tasks whose status has not moved since ``cutoff``, grouped by local body."""
        query = (
            select(t.Project, t.Task)
            .join(t.Task, t.Task.project_id == t.Project.id)  # type: ignore[arg-type]
            .where(t.Task.status.in_(("not_started", "in_progress")))  # type: ignore[attr-defined]
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
