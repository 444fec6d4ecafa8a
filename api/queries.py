"""Every read, once, for the REST routes and the pages: each takes the caller's session and
scope and returns the public answer. Routes and page handlers only translate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from api.auth import Caller
from api.commands import require, tasks_of, visible_project
from api.schemas import (
    ApprovalPublic,
    EscalationPublic,
    EventPublic,
    Page,
    ProjectPublic,
    ProjectSummary,
    TokenPublic,
    escalation_public,
)
from readmodel import tables as t
from workflows.roles import Action
from workflows.vocabulary import EscalationStatus, TaskStatus

# The filters of the project list, each an indexed column of the read model.
PROJECT_FILTERS = ("prefecture", "lg_code", "business", "stage", "health", "vendor_id")


def paged(
    session: Session,
    query: Any,
    order: tuple[Any, ...],
    limit: int,
    offset: int,
    item: Any,
) -> Page[Any]:
    """One page of ``query`` in ``order`` and the count of all it matches, each row made
    into an answer by ``item``."""
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(*order).offset(offset).limit(limit)).all()
    return Page[Any](items=[item(r) for r in rows], total=total)


def projects(
    session: Session,
    caller: Caller,
    limit: int,
    offset: int,
    extended: bool | None = None,
    **filters: str | None,
) -> Page[ProjectSummary]:
    query = caller.scope(select(t.Project))
    for name in PROJECT_FILTERS:
        if filters.get(name) is not None:
            query = query.where(getattr(t.Project, name) == filters[name])
    if extended is not None:
        track = t.Project.extended_track
        query = query.where(track.is_not(None) if extended else track.is_(None))  # type: ignore[union-attr]
    return paged(session, query, (col(t.Project.id),), limit, offset, ProjectSummary.of_row)


def project(session: Session, caller: Caller, project_id: str) -> ProjectPublic:
    row = visible_project(session, caller, project_id)
    return ProjectPublic.with_tasks(row, tasks_of(session, project_id))


def events(
    session: Session, caller: Caller, project_id: str, limit: int, offset: int
) -> Page[EventPublic]:
    visible_project(session, caller, project_id)
    query = select(t.Event).where(t.Event.project_id == project_id)

    def event(r: t.Event) -> EventPublic:
        return EventPublic.of(r, data=r.data or {})

    return paged(session, query, (col(t.Event.seq),), limit, offset, event)


def approvals(session: Session, caller: Caller, limit: int, offset: int) -> Page[ApprovalPublic]:
    query = caller.scope(
        select(t.Task)
        .join(t.Project, t.Project.id == t.Task.project_id)  # type: ignore[arg-type]
        .where(t.Task.gate == True, t.Task.status == TaskStatus.IN_PROGRESS)  # noqa: E712
    )

    def approval(r: t.Task) -> ApprovalPublic:
        return ApprovalPublic.of(r, gate_key=r.key, waiting_since=r.started_at)

    order = (col(t.Task.started_at), col(t.Task.project_id))
    return paged(session, query, order, limit, offset, approval)


def escalations(
    session: Session,
    caller: Caller,
    limit: int,
    offset: int,
    status: EscalationStatus | None = None,
    project_id: str | None = None,
) -> Page[EscalationPublic]:
    query = caller.scope(select(t.Escalation), on=t.Escalation)
    if status is not None:
        query = query.where(t.Escalation.status == status)
    if project_id is not None:
        query = query.where(t.Escalation.project_id == project_id)
    order = (col(t.Escalation.raised_at), col(t.Escalation.id))
    return paged(session, query, order, limit, offset, escalation_public)


def tokens(
    session: Session, caller: Caller, limit: int, offset: int, revoked: bool | None = None
) -> Page[TokenPublic]:
    require(caller, Action.TOKENS)
    query = select(t.ApiToken)
    if revoked is not None:
        column = col(t.ApiToken.revoked_at)
        query = query.where(column.is_not(None) if revoked else column.is_(None))
    return paged(session, query, (col(t.ApiToken.id),), limit, offset, TokenPublic.of)
