"""Projects and everything done to one: tasks, milestones, gates, replanning, extended track."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from api import commands, queries
from api.deps import (
    CallerDep,
    ContextDep,
    Limit,
    Offset,
    SessionDep,
    WriteDep,
)
from api.errors import HTTPProblem
from api.schemas import (
    PROBLEM_RESPONSES,
    DecisionIn,
    EventPublic,
    ExtendedTrackIn,
    MilestoneAnswer,
    MilestoneIn,
    Page,
    ProjectCreate,
    ProjectPublic,
    ProjectSummary,
    ReplanIn,
    TaskChangeIn,
    TaskPublic,
    VendorAssignIn,
)

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=ProjectPublic)
async def create_project(body: ProjectCreate, caller: CallerDep, ctx: WriteDep) -> ProjectPublic:
    return await commands.create_project(ctx, caller, body)


@router.get("", response_model=Page[ProjectSummary])
def list_projects(
    caller: CallerDep,
    session: SessionDep,
    prefecture: str | None = None,
    lg_code: str | None = None,
    business: str | None = None,
    stage: str | None = None,
    health: str | None = None,
    vendor_id: str | None = None,
    extended: bool | None = None,
    vendor_over_capacity: bool | None = None,
    template: Annotated[
        str | None,
        Query(max_length=64, description="a template's id (any version); default: migrations"),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ProjectSummary]:
    filters = dict(
        prefecture=prefecture,
        lg_code=lg_code,
        business=business,
        stage=stage,
        health=health,
        vendor_id=vendor_id,
    )
    return queries.projects(
        session, caller, limit, offset, extended, vendor_over_capacity, template, **filters
    )


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project_id: str, caller: CallerDep, session: SessionDep) -> ProjectPublic:
    return queries.project(session, caller, project_id)


@router.post("/{project_id}/tasks/{key}", response_model=TaskPublic)
async def change_task(
    project_id: str,
    key: str,
    body: TaskChangeIn,
    caller: CallerDep,
    ctx: WriteDep,
) -> TaskPublic:
    return await commands.change_task(ctx, caller, project_id, key, body)


@router.post("/{project_id}/milestones", response_model=MilestoneAnswer)
async def report_milestone(
    project_id: str,
    body: MilestoneIn,
    caller: CallerDep,
    ctx: ContextDep,
    key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            description="The same key again returns the first answer and changes nothing.",
        ),
    ],
) -> MilestoneAnswer:
    if len(key) > 200:
        raise HTTPProblem(400, "the Idempotency-Key header is longer than 200 characters")
    ctx.idempotency_key = key
    return await commands.report_milestone(ctx, caller, project_id, body)


@router.post("/{project_id}/gates/{key}/decision", response_model=TaskPublic)
async def decide_gate(
    project_id: str,
    key: str,
    body: DecisionIn,
    caller: CallerDep,
    ctx: WriteDep,
) -> TaskPublic:
    return await commands.decide_gate(ctx, caller, project_id, key, body)


@router.post("/{project_id}/vendor", response_model=ProjectPublic)
async def assign_vendor(
    project_id: str, body: VendorAssignIn, caller: CallerDep, ctx: WriteDep
) -> ProjectPublic:
    """Assign or replace the project's vendor (pm, admin); the previous vendor loses access
    at once, and the change is recorded in the audit trail."""
    return await commands.assign_vendor(ctx, caller, project_id, body)


@router.post("/{project_id}/replan", response_model=ProjectPublic)
async def replan(
    project_id: str,
    body: ReplanIn,
    caller: CallerDep,
    ctx: WriteDep,
) -> ProjectPublic:
    return await commands.replan(ctx, caller, project_id, body)


@router.post("/{project_id}/extended-track", response_model=ProjectPublic)
async def declare_extended_track(
    project_id: str,
    body: ExtendedTrackIn,
    caller: CallerDep,
    ctx: WriteDep,
) -> ProjectPublic:
    return await commands.declare_extended_track(ctx, caller, project_id, body)


@router.get("/{project_id}/events", response_model=Page[EventPublic])
def list_events(
    project_id: str,
    caller: CallerDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EventPublic]:
    return queries.events(session, caller, project_id, limit, offset)
