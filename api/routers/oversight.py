"""What people act on across projects: gates awaiting a decision, escalations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import col, select

from api.deps import CallerDep, ClientDep, RequestIdDep, SessionDep
from api.errors import Problem
from api.routers.projects import Limit, Offset
from api.schemas import PROBLEM_RESPONSES, ApprovalPublic, EscalationPublic, Page
from readmodel import tables as t
from workflows.migration import AcknowledgeInput, MigrationWorkflow

router = APIRouter(prefix="/api/v1", tags=["oversight"], responses=PROBLEM_RESPONSES)


@router.get("/approvals", response_model=Page[ApprovalPublic])
def list_approvals(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ApprovalPublic]:
    query = caller.scope(
        select(t.Task)
        .join(t.Project, t.Project.id == t.Task.project_id)  # type: ignore[arg-type]
        .where(t.Task.gate == True, t.Task.status == "in_progress")  # noqa: E712
    )
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(t.Task.started_at, t.Task.project_id).offset(offset).limit(limit)  # type: ignore[arg-type]
    ).all()
    return Page[ApprovalPublic](
        items=[
            ApprovalPublic(
                project_id=r.project_id,
                gate_key=r.key,
                name=r.name,
                waiting_since=r.started_at,
                due_date=r.due_date,
            )
            for r in rows
        ],
        total=total,
    )


def _escalation(r: t.Escalation) -> EscalationPublic:
    return EscalationPublic(
        id=r.id,
        project_id=r.project_id,
        task_key=r.task_key,
        level=r.level,
        audience=list(r.audience or []),
        raised_at=r.raised_at,
        status=r.status,
        due_date=r.due_date,
        acknowledged_by=r.acknowledged_by,
        acknowledged_at=r.acknowledged_at,
        resolved_at=r.resolved_at,
    )


@router.get("/escalations", response_model=Page[EscalationPublic])
def list_escalations(
    caller: CallerDep,
    session: SessionDep,
    status: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query()] = None,
    project_id: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EscalationPublic]:
    query = caller.scope(select(t.Escalation), on=t.Escalation)
    if status is not None:
        query = query.where(t.Escalation.status == status)
    if project_id is not None:
        query = query.where(t.Escalation.project_id == project_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(t.Escalation.raised_at), col(t.Escalation.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[EscalationPublic](items=[_escalation(r) for r in rows], total=total)


@router.post("/escalations/{escalation_id}/ack", response_model=EscalationPublic)
async def acknowledge_escalation(
    escalation_id: str,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    rid: RequestIdDep,
) -> EscalationPublic:
    row = session.get(t.Escalation, escalation_id)
    if row is not None and not caller.sees(row):
        row = None
    if row is None:
        raise Problem(404, f"no escalation {escalation_id!r}")
    if not caller.may("ack"):
        raise Problem(403, f"a {caller.role} token may not acknowledge escalations")
    project = session.get(t.Project, row.project_id)
    assert project is not None
    await client.get_workflow_handle(project.workflow_id).execute_update(
        MigrationWorkflow.acknowledge_escalation,
        AcknowledgeInput(escalation_id, caller.actor, request_id=rid),
    )
    session.expire_all()
    fresh = session.get(t.Escalation, escalation_id)
    assert fresh is not None
    return _escalation(fresh)
