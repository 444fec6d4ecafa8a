"""Joint procurements (共同調達): API.md "Additions"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api import procurements
from api.deps import CallerDep, Limit, Offset, SessionDep, WriteDep
from api.schemas import (
    PROBLEM_RESPONSES,
    DecisionIn,
    MemberIn,
    Page,
    ProcurementCreate,
    ProcurementPublic,
    TaskChangeIn,
)

router = APIRouter(
    prefix="/api/v1/procurements", tags=["procurements"], responses=PROBLEM_RESPONSES
)
Id = Annotated[str, Path(min_length=1, max_length=100)]


@router.get("", response_model=Page[ProcurementPublic])
def list_procurements(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ProcurementPublic]:
    """The procurements whose lead body or one of whose members the caller sees, by id."""
    return procurements.procurements(session, caller, limit, offset)


@router.post("", status_code=201, response_model=ProcurementPublic)
async def create_procurement(
    body: ProcurementCreate, caller: CallerDep, ctx: WriteDep
) -> ProcurementPublic:
    return await procurements.create(ctx, caller, body)


@router.get("/{procurement_id}", response_model=ProcurementPublic)
def get_procurement(
    procurement_id: Id, caller: CallerDep, session: SessionDep
) -> ProcurementPublic:
    return procurements.procurement(session, caller, procurement_id)


@router.post("/{procurement_id}/tasks/{key}", response_model=ProcurementPublic)
async def change_step(
    procurement_id: Id, key: Id, body: TaskChangeIn, caller: CallerDep, ctx: WriteDep
) -> ProcurementPublic:
    return await procurements.change_task(ctx, caller, procurement_id, key, body)


@router.post("/{procurement_id}/gates/vendor_selection/decision", response_model=ProcurementPublic)
async def decide_selection(
    procurement_id: Id, body: DecisionIn, caller: CallerDep, ctx: WriteDep
) -> ProcurementPublic:
    """Approving with ``vendor_id`` assigns it to every member and completes the joint
    steps in each, recorded there as done by the procurement."""
    return await procurements.decide(ctx, caller, procurement_id, body)


@router.post("/{procurement_id}/members", response_model=ProcurementPublic)
async def add_member(
    procurement_id: Id, body: MemberIn, caller: CallerDep, ctx: WriteDep
) -> ProcurementPublic:
    return await procurements.join(ctx, caller, procurement_id, body)


@router.delete("/{procurement_id}/members/{project_id}", response_model=ProcurementPublic)
async def remove_member(
    procurement_id: Id, project_id: Id, caller: CallerDep, ctx: WriteDep
) -> ProcurementPublic:
    """Leaving is refused (409) once the vendor is selected."""
    return await procurements.leave(ctx, caller, procurement_id, project_id)
