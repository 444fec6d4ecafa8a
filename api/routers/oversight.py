"""What people act on across projects: gates awaiting a decision, escalations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from api import commands
from api.deps import (
    CallerDep,
    Limit,
    Offset,
    SessionDep,
    WriteDep,
    paged,
)
from api.schemas import (
    PROBLEM_RESPONSES,
    ApprovalPublic,
    EscalationPublic,
    Page,
    escalation_public,
)
from readmodel import tables as t
from workflows.vocabulary import EscalationStatus, TaskStatus

router = APIRouter(prefix="/api/v1", tags=["oversight"], responses=PROBLEM_RESPONSES)


@router.get("/approvals", response_model=Page[ApprovalPublic])
def list_approvals(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ApprovalPublic]:
    query = caller.scope(
        select(t.Task)
        .join(t.Project, t.Project.id == t.Task.project_id)  # type: ignore[arg-type]
        .where(t.Task.gate == True, t.Task.status == TaskStatus.IN_PROGRESS)  # noqa: E712
    )

    def approval(r: t.Task) -> ApprovalPublic:
        return ApprovalPublic.of(r, gate_key=r.key, waiting_since=r.started_at)

    order = (col(t.Task.started_at), col(t.Task.project_id))
    return paged(session, query, order, limit, offset, approval)


@router.get("/escalations", response_model=Page[EscalationPublic])
def list_escalations(
    caller: CallerDep,
    session: SessionDep,
    status: Annotated[EscalationStatus | None, Query()] = None,
    project_id: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EscalationPublic]:
    query = caller.scope(select(t.Escalation), on=t.Escalation)
    if status is not None:
        query = query.where(t.Escalation.status == status)
    if project_id is not None:
        query = query.where(t.Escalation.project_id == project_id)
    order = (col(t.Escalation.raised_at), col(t.Escalation.id))
    return paged(session, query, order, limit, offset, escalation_public)


@router.post("/escalations/{escalation_id}/ack", response_model=EscalationPublic)
async def acknowledge_escalation(
    escalation_id: str, caller: CallerDep, ctx: WriteDep
) -> EscalationPublic:
    return await commands.acknowledge_escalation(ctx, caller, escalation_id)
