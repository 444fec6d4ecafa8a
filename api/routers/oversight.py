"""What people act on across projects: gates awaiting a decision, escalations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api import commands, queries
from api.deps import (
    CallerDep,
    Limit,
    Offset,
    SessionDep,
    WriteDep,
)
from api.schemas import (
    PROBLEM_RESPONSES,
    ApprovalPublic,
    EscalationPublic,
    Page,
)
from workflows.vocabulary import EscalationStatus

router = APIRouter(prefix="/api/v1", tags=["oversight"], responses=PROBLEM_RESPONSES)


@router.get("/approvals", response_model=Page[ApprovalPublic])
def list_approvals(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ApprovalPublic]:
    return queries.approvals(session, caller, limit, offset)


@router.get("/escalations", response_model=Page[EscalationPublic])
def list_escalations(
    caller: CallerDep,
    session: SessionDep,
    status: Annotated[EscalationStatus | None, Query()] = None,
    project_id: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EscalationPublic]:
    return queries.escalations(session, caller, limit, offset, status, project_id)


@router.post("/escalations/{escalation_id}/ack", response_model=EscalationPublic)
async def acknowledge_escalation(
    escalation_id: str, caller: CallerDep, ctx: WriteDep
) -> EscalationPublic:
    return await commands.acknowledge_escalation(ctx, caller, escalation_id)
