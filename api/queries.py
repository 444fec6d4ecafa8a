"""Every read, once, for the REST routes and the pages: each takes the caller's session and
scope and returns the public answer. Routes and page handlers only translate."""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from api import vendors
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
from readmodel.registry import registry
from workflows.businesses import BY_SLUG
from workflows.model import progress_from_counts
from workflows.procedure import MIGRATION
from workflows.roles import Action
from workflows.vocabulary import EscalationStatus, Owner, ProcurementStatus, TaskStatus

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


def of_template(query: Any, template: str | None) -> Any:
    """Projects on template ``template`` (its id, any version) or, by default, the
    migrations (API.md: lists and reports take ?template=, default the migration)."""
    if template:
        return query.where(col(t.Project.template).like(f"{template}@%"))
    return query.where(col(t.Project.kind) == MIGRATION)


def projects(
    session: Session,
    caller: Caller,
    limit: int,
    offset: int,
    extended: bool | None = None,
    vendor_over_capacity: bool | None = None,
    template: str | None = None,
    **filters: str | None,
) -> Page[ProjectSummary]:
    query = of_template(caller.scope(select(t.Project)), template)
    for name in PROJECT_FILTERS:
        if filters.get(name) is not None:
            query = query.where(getattr(t.Project, name) == filters[name])
    if extended is not None:
        track = t.Project.extended_track
        query = query.where(track.is_not(None) if extended else track.is_(None))  # type: ignore[union-attr]
    # Whether its go-live month is over its vendor's capacity (worked out for all projects
    # at once, and kept a short while: api/vendors.py).
    over = vendors.OVER_CAPACITY.ids(session)
    if vendor_over_capacity is not None:
        crowded = vendors.OVER_CAPACITY.condition(session)
        query = query.where(crowded if vendor_over_capacity else ~crowded)

    def summary(r: t.Project) -> ProjectSummary:
        return ProjectSummary.of_row(r, vendor_over_capacity=r.id in over)

    return paged(session, query, (col(t.Project.id),), limit, offset, summary)


def project(session: Session, caller: Caller, project_id: str) -> ProjectPublic:
    row = visible_project(session, caller, project_id)
    answer = ProjectPublic.with_tasks(row, tasks_of(session, project_id))
    answer.vendor_over_capacity = vendors.is_over_capacity(session, project_id)
    joint = procurement_of(session, project_id)
    if joint is not None and joint.status == ProcurementStatus.OPEN:
        answer.procurement_id = joint.id
    return answer


def procurement_of(session: Session, project_id: str) -> t.Procurement | None:
    """The joint procurement a project is a member of (the newest), if any."""
    return session.exec(
        select(t.Procurement)
        .join(t.ProcurementMember, t.ProcurementMember.procurement_id == t.Procurement.id)  # type: ignore[arg-type]
        .where(
            t.ProcurementMember.project_id == project_id,
            t.ProcurementMember.status == "member",
        )
        .order_by(col(t.Procurement.created_at).desc())
    ).first()


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


_COUNTED = (
    TaskStatus.DONE,
    TaskStatus.IN_PROGRESS,
    TaskStatus.NOT_STARTED,
    TaskStatus.NOT_APPLICABLE,
)

# MIC's figures: the groupings of the progress report, and the filters that drill down.
REPORT_GROUPS = ("prefecture", "lg_code", "business", "task")
REPORT_FILTERS = ("prefecture", "lg_code", "business")
REPORT_COLUMNS = (
    "group",
    "name",
    "steps",
    "done",
    "in_progress",
    "not_started",
    "not_applicable",
    "completion_rate",
    "in_progress_rate",
    "not_started_rate",
)


@functools.cache
def prefecture_names() -> dict[str, str]:
    """Each prefecture's name by its two-digit code, from the national list (read once)."""
    return {b.prefecture_code: b.prefecture_name for b in registry().bodies if b.is_prefecture}


def _scoped_projects(caller: Caller, filters: dict[str, str | None]) -> Any:
    """The projects counted: the caller's scope narrowed by the drill-down filters."""
    query = of_template(caller.scope(select(t.Project)), filters.get("template"))
    for field in REPORT_FILTERS:
        if filters.get(field) is not None:
            query = query.where(getattr(t.Project, field) == filters[field])
    return query


def _by_step(session: Session, caller: Caller, filters: dict[str, str | None]) -> list[Any]:
    """Counts per task and status. Over everything, counted from the covering index of
    (key, status, position, name) alone, each step's name and order then read from its first
    entry (at national scale the names' aggregate tripled the scan); narrowed, through each
    chosen project's own rows."""
    # Every task row of the country counts only while no programme shares the table.
    programmes = session.execute(
        select(t.Project.id).where(col(t.Project.kind) != MIGRATION).limit(1)
    ).first()
    everything = caller.sees_all and not any(filters.values()) and programmes is None
    columns: list[Any] = [t.Task.key, t.Task.status, func.count()]
    if not everything:
        columns += [func.min(t.Task.name), func.min(t.Task.position)]
    query: Any = select(*columns).group_by(t.Task.key, t.Task.status)
    if not everything:
        ids = _scoped_projects(caller, filters).with_only_columns(t.Project.id)
        query = query.where(col(t.Task.project_id).in_(ids))
    steps: dict[str, dict[str, Any]] = {}
    for key, status, n, *named in session.execute(query).all():
        step = steps.setdefault(key, {"name": None, "order": None, "counts": {}})
        if named:
            step["name"], step["order"] = named
        step["counts"][status] = n
    if everything:
        for key, step in steps.items():
            first = select(t.Task.name, t.Task.position).where(t.Task.key == key)
            step["name"], step["order"] = session.execute(
                first.order_by(col(t.Task.status), col(t.Task.position), col(t.Task.name)).limit(1)
            ).one()
    return [
        (key, s["name"], s["order"], *(s["counts"].get(c, 0) for c in _COUNTED))
        for key, s in steps.items()
    ]


def progress(
    session: Session, caller: Caller, group_by: str, **filters: str | None
) -> list[dict[str, Any]]:
    """MIC's four counts and three rates per group, over the projects the caller can see,
    added up in the database. Every task of every project is one step, as MIC counts; a
    project row carries its own counts, so only the grouping by step reads task rows."""
    if group_by == "task":
        found = _by_step(session, caller, filters)
    else:
        column = getattr(t.Project, group_by)
        name = {
            "prefecture": t.Project.prefecture,
            "lg_code": t.Project.body_name,
            "business": t.Project.business_name,
        }[group_by]
        query = (
            _scoped_projects(caller, filters)
            .with_only_columns(
                column,
                func.min(name),
                func.min(column),  # the order: the group's own code
                *(func.sum(getattr(t.Project, s)) for s in _COUNTED),
                # The group's projects going live in a month over their vendor's capacity.
                func.sum(case((vendors.OVER_CAPACITY.condition(session), 1), else_=0)),
            )
            .group_by(column)
        )
        found = list(session.execute(query).all())  # rows, not scalars
    prefectures = prefecture_names() if group_by == "prefecture" else {}
    rows = []
    for group, name, order, *sums in found:
        over = {} if group_by == "task" else {"vendor_over_capacity": int(sums.pop() or 0)}
        counts = [int(c or 0) for c in sums]
        p = progress_from_counts(*counts)
        rows.append(
            {
                "group": group,
                "name": prefectures.get(group, name),
                "order": order,
                "steps": sum(counts),
                **{k: getattr(p, k) for k in REPORT_COLUMNS[3:]},
                **over,
            }
        )
    rows.sort(key=lambda r: (r.pop("order"), r["group"]))
    return rows


_OPEN = (TaskStatus.NOT_STARTED, TaskStatus.IN_PROGRESS)


def next_due(session: Session, project_ids: list[str]) -> dict[str, t.Task]:
    """Each project's open task with the nearest due date."""
    if not project_ids:
        return {}
    rows = session.exec(
        select(t.Task)
        .where(
            col(t.Task.project_id).in_(project_ids),
            col(t.Task.status).in_(_OPEN),
            col(t.Task.due_date).is_not(None),
        )
        .order_by(col(t.Task.due_date), col(t.Task.position))
    ).all()
    first: dict[str, t.Task] = {}
    for row in rows:
        first.setdefault(row.project_id, row)
    return first


def due_for(
    session: Session, caller: Caller, until: date, limit: int = 100
) -> tuple[list[tuple[t.Task, t.Project]], int]:
    """Open tasks the caller itself works on (a pm its body's, an approver the gates, a
    vendor its own) due on or before ``until``, overdue first; and how many there are."""
    owners = [o for o in Owner if caller.acts_for(o)]
    if not owners:
        return [], 0
    joined: Any = select(t.Task, t.Project).join(
        t.Project,
        t.Project.id == t.Task.project_id,  # type: ignore[arg-type]
    )
    query = caller.scope(
        joined.where(
            col(t.Task.owner).in_(owners),
            col(t.Task.status).in_(_OPEN),
            col(t.Task.due_date).is_not(None),
            col(t.Task.due_date) <= until,
        )
    )
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(t.Task.due_date), col(t.Task.project_id)).limit(limit)
    ).all()
    return [(task, project) for task, project in rows], total


def trend(
    session: Session, caller: Caller, group_by: str | None, months: int, **filters: str | None
) -> list[dict[str, Any]]:
    """MIC's figures at each stored month's end (newest ``months``), over the projects the
    caller can see, as a whole or per prefecture or business."""
    snap = t.ProgressSnapshot
    group = getattr(snap, group_by) if group_by else None
    counts = [
        func.sum(getattr(snap, c)) for c in ("done", "in_progress", "not_started", "not_applicable")
    ]
    query: Any = select(snap.month, *([group] if group is not None else []), *counts)
    query = caller.scope(query, on=snap)
    for field in REPORT_FILTERS:
        if filters.get(field) is not None:
            query = query.where(getattr(snap, field) == filters[field])
    month_col: Any = col(snap.month)
    recent = select(month_col).distinct().order_by(month_col.desc()).limit(months).subquery()
    query = query.where(col(snap.month).in_(select(recent.c.month)))
    query = query.group_by(snap.month, *([group] if group is not None else []))
    names = prefecture_names() if group_by == "prefecture" else {}
    rows = []
    for row in session.execute(query).all():
        month, *rest = row
        key: str = rest.pop(0) if group is not None else ""
        numbers = [int(c or 0) for c in rest]
        p = progress_from_counts(*numbers)
        item: dict[str, Any] = {"month": month.strftime("%Y-%m")}
        if group_by:
            item["group"] = key
            item["name"] = names.get(key, BY_SLUG[key].name if key in BY_SLUG else key)
        item |= {"steps": sum(numbers), **{k: getattr(p, k) for k in REPORT_COLUMNS[3:]}}
        rows.append(item)
    rows.sort(key=lambda r: (r["month"], r.get("group") or ""))
    return rows
