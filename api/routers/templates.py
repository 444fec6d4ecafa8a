"""Procedure templates: stored, versioned, and moving a project to a newer version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api import commands
from api.deps import CallerDep, SessionDep, WriteDep
from api.schemas import (
    PROBLEM_RESPONSES,
    ProjectPublic,
    TemplateIn,
    TemplateMoveIn,
    TemplatePublic,
)

router = APIRouter(prefix="/api/v1", tags=["templates"], responses=PROBLEM_RESPONSES)


@router.get("/templates", response_model=list[TemplatePublic])
def list_templates(_: CallerDep, session: SessionDep) -> list[TemplatePublic]:
    """Every template a project may be created on (``"template": "ID@VERSION"``)."""
    return commands.templates(session)


@router.post("/templates", status_code=201, response_model=TemplatePublic)
def store_template(body: TemplateIn, caller: CallerDep, session: SessionDep) -> TemplatePublic:
    return commands.store_template(session, caller, body)


@router.post("/projects/{project_id}/template", response_model=ProjectPublic)
async def move_project(
    project_id: Annotated[str, Path(max_length=100)],
    body: TemplateMoveIn,
    caller: CallerDep,
    ctx: WriteDep,
) -> ProjectPublic:
    """Tasks kept by key keep their state, new ones start; 409 if the new version drops a
    task done or in progress."""
    return await commands.upgrade_template(ctx, caller, project_id, body)
