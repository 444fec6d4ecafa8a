"""Projects and everything done to one: tasks, milestones, gates, replanning, extended track."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import Caller
from api.deps import CallerDep, ClientDep, RequestIdDep, SessionDep, SettingsDep
from api.errors import Problem, field_error
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
    task_from_view,
)
from readmodel import tables as t
from readmodel.registry import lg_code_problem, registry
from workflows.businesses import BY_SLUG, PREFECTURE_BUSINESSES
from workflows.calendar import jst_today
from workflows.ladder import EscalationLadder
from workflows.migration import (
    ExtendedTrackInput,
    GateDecisionInput,
    MigrationInput,
    MigrationWorkflow,
    MilestoneReport,
    ReplanInput,
    TaskChange,
)
from workflows.model import DEFAULT_DEADLINE, EXTENDED_TRACK_LIMIT, workflow_id_for
from workflows.procedure import BUILTIN_TEMPLATES, DEFAULT_TEMPLATE

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], responses=PROBLEM_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=2**31)]


def visible_project(session: Session, caller: Caller, project_id: str) -> t.Project:
    row = session.get(t.Project, project_id)
    if row is None or not caller.sees(row):
        raise Problem(404, f"no project {project_id!r}")
    return row


def tasks_of(session: Session, project_id: str) -> list[t.Task]:
    return list(
        session.exec(
            select(t.Task).where(t.Task.project_id == project_id).order_by(col(t.Task.position))
        )
    )


def project_answer(session: Session, project_id: str) -> ProjectPublic:
    session.expire_all()
    row = session.get(t.Project, project_id)
    assert row is not None
    return ProjectPublic.with_tasks(row, tasks_of(session, project_id))


def require(caller: Caller, action: str) -> None:
    if not caller.may(action):
        raise Problem(403, f"a {caller.role} token may not do this")


def check_go_live(value: date, field: str) -> None:
    if value <= jst_today(datetime.now(UTC)):
        raise field_error(["body", field], f"{field} must be in the future")
    if value > EXTENDED_TRACK_LIMIT:
        raise field_error(["body", field], f"{field} must be on or before {EXTENDED_TRACK_LIMIT}")


def handle_for(client: ClientDep, row: t.Project) -> WorkflowHandle:
    return client.get_workflow_handle(row.workflow_id)


@router.post("", status_code=201, response_model=ProjectPublic)
async def create_project(
    body: ProjectCreate,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    rid: RequestIdDep,
) -> ProjectPublic:
    require(caller, "create_project")
    problem = lg_code_problem(body.lg_code)
    if problem:
        raise field_error(["body", "lg_code"], f"lg_code {problem}")
    body_info = registry().get(body.lg_code)
    if body_info is None:
        raise field_error(["body", "lg_code"], f"lg_code {body.lg_code} is not a local body")
    if caller.role == "pm" and caller.lg_code != body.lg_code:
        raise Problem(403, "a pm creates projects only for its own local body")
    business = BY_SLUG.get(body.business)
    if business is None:
        raise field_error(["body", "business"], f"unknown business {body.business!r}")
    if body_info.is_prefecture and business.slug not in PREFECTURE_BUSINESSES:
        raise field_error(["body", "business"], f"a prefecture does not run {business.slug} itself")
    if body.vendor_id is not None and session.get(t.Vendor, body.vendor_id) is None:
        raise field_error(["body", "vendor_id"], f"unknown vendor {body.vendor_id!r}")
    template = BUILTIN_TEMPLATES.get(body.template or DEFAULT_TEMPLATE.id)
    if template is None:
        raise field_error(["body", "template"], f"unknown template {body.template!r}")
    check_go_live(body.target_go_live, "target_go_live")
    project_id = f"{body.lg_code}-{body.business}"
    if session.get(t.Project, project_id) is not None:
        raise Problem(409, f"project {project_id} already exists")
    inp = MigrationInput(
        lg_code=body.lg_code,
        business=business.slug,
        body_name=body_info.full_name,
        prefecture=body_info.prefecture_code,
        business_name=business.name,
        target_go_live=body.target_go_live,
        template=template,
        vendor_id=body.vendor_id,
        switching_vendor=body.switching_vendor,
        deadline=DEFAULT_DEADLINE,
        ladder=EscalationLadder(
            settings.reminder_days_before,
            settings.approver_days_after,
            settings.prefecture_days_after,
        ),
        created_by=caller.actor,
    )
    try:
        handle = await client.start_workflow(
            MigrationWorkflow.run,
            inp,
            id=workflow_id_for(body.lg_code, business.slug),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError as exc:
        raise Problem(409, f"project {project_id} already exists") from exc
    await handle.execute_update(MigrationWorkflow.sync, id=f"sync-{rid}" if rid else None)
    return project_answer(session, project_id)


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
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ProjectSummary]:
    query = caller.scope(select(t.Project))
    for column, value in (
        (t.Project.prefecture, prefecture),
        (t.Project.lg_code, lg_code),
        (t.Project.business, business),
        (t.Project.stage, stage),
        (t.Project.health, health),
        (t.Project.vendor_id, vendor_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if extended is not None:
        col = t.Project.extended_track
        query = query.where(col.is_not(None) if extended else col.is_(None))  # type: ignore[union-attr]
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(t.Project.id).offset(offset).limit(limit)).all()
    return Page[ProjectSummary](items=[ProjectSummary.of(r) for r in rows], total=total)


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project_id: str, caller: CallerDep, session: SessionDep) -> ProjectPublic:
    row = visible_project(session, caller, project_id)
    return ProjectPublic.with_tasks(row, tasks_of(session, project_id))


def _task_row(session: Session, project_id: str, key: str) -> t.Task:
    row = session.get(t.Task, (project_id, key))
    if row is None:
        raise Problem(404, f"no task {key!r} in project {project_id}")
    return row


@router.post("/{project_id}/tasks/{key}", response_model=TaskPublic)
async def change_task(
    project_id: str,
    key: str,
    body: TaskChangeIn,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    rid: RequestIdDep,
) -> TaskPublic:
    project = visible_project(session, caller, project_id)
    require(caller, "change_task")
    task = _task_row(session, project_id, key)
    if task.gate:
        raise Problem(409, f"{key} is a gate: an approver decides it")
    if caller.role == "pm" and task.owner != "municipality":
        raise Problem(403, f"{key} is a {task.owner} task")
    if caller.role == "vendor" and task.owner != "vendor":
        raise Problem(403, f"{key} is a {task.owner} task")
    change = TaskChange(key, body.status, caller.actor, caller.role, body.note, request_id=rid)
    view = await handle_for(client, project).execute_update(MigrationWorkflow.change_task, change)
    return task_from_view(view)


def _fingerprint(body: MilestoneIn) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


@router.post("/{project_id}/milestones", response_model=MilestoneAnswer)
async def report_milestone(
    project_id: str,
    body: MilestoneIn,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    rid: RequestIdDep,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            description="The same key again returns the first answer and changes nothing.",
        ),
    ],
) -> MilestoneAnswer:
    project = visible_project(session, caller, project_id)
    require(caller, "milestone")
    if not idempotency_key.strip():
        raise Problem(400, "the Idempotency-Key header is required")
    if len(idempotency_key) > 200:
        raise Problem(400, "the Idempotency-Key header is longer than 200 characters")
    task = _task_row(session, project_id, body.task_key)
    if task.owner != "vendor":
        raise Problem(403, f"{body.task_key} is a {task.owner} task, not the vendor's")
    fingerprint = _fingerprint(body)
    report = MilestoneReport(
        idempotency_key=idempotency_key,
        task_key=body.task_key,
        status=body.status,
        actor=caller.actor,
        percent=body.percent,
        note=body.note,
        request_id=rid,
        fingerprint=fingerprint,
        attempt_id=uuid.uuid4().hex,
    )
    # The key is the update id: Temporal answers a repeat with the first result.
    result = await handle_for(client, project).execute_update(
        MigrationWorkflow.report_milestone, report, id=f"milestone-{idempotency_key}"
    )
    duplicate = result.attempt_id != report.attempt_id
    if duplicate and result.fingerprint != fingerprint:
        raise Problem(409, "this Idempotency-Key was already used for a different milestone")
    return MilestoneAnswer(
        milestone_id=result.milestone_id, duplicate=duplicate, task=task_from_view(result.task)
    )


@router.post("/{project_id}/gates/{key}/decision", response_model=TaskPublic)
async def decide_gate(
    project_id: str,
    key: str,
    body: DecisionIn,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    rid: RequestIdDep,
) -> TaskPublic:
    project = visible_project(session, caller, project_id)
    if not caller.may("decide_gate"):
        raise Problem(
            403, "only an approver decides a gate: those who do the work never sign it off"
        )
    task = session.get(t.Task, (project_id, key))
    if task is None or not task.gate:
        raise Problem(404, f"no gate {key!r} in project {project_id}")
    if body.outcome == "reject" and not (body.comment or "").strip():
        raise field_error(["body", "comment"], "a rejection needs a comment")
    decision = GateDecisionInput(key, body.outcome, caller.actor, body.comment, request_id=rid)
    view = await handle_for(client, project).execute_update(MigrationWorkflow.decide_gate, decision)
    return task_from_view(view)


@router.post("/{project_id}/replan", response_model=ProjectPublic)
async def replan(
    project_id: str,
    body: ReplanIn,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    rid: RequestIdDep,
) -> ProjectPublic:
    project = visible_project(session, caller, project_id)
    require(caller, "replan")
    check_go_live(body.target_go_live, "target_go_live")
    plan = ReplanInput(body.target_go_live, body.reason, caller.actor, request_id=rid)
    await handle_for(client, project).execute_update(MigrationWorkflow.replan, plan)
    return project_answer(session, project_id)


@router.post("/{project_id}/extended-track", response_model=ProjectPublic)
async def declare_extended_track(
    project_id: str,
    body: ExtendedTrackIn,
    caller: CallerDep,
    session: SessionDep,
    client: ClientDep,
    rid: RequestIdDep,
) -> ProjectPublic:
    project = visible_project(session, caller, project_id)
    require(caller, "extended_track")
    check_go_live(body.planned_go_live, "planned_go_live")
    track = ExtendedTrackInput(
        body.ground, body.planned_go_live, body.reason, caller.actor, request_id=rid
    )
    await handle_for(client, project).execute_update(
        MigrationWorkflow.declare_extended_track, track
    )
    return project_answer(session, project_id)


@router.get("/{project_id}/events", response_model=Page[EventPublic])
def list_events(
    project_id: str,
    caller: CallerDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EventPublic]:
    visible_project(session, caller, project_id)
    query = select(t.Event).where(t.Event.project_id == project_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(t.Event.seq)).offset(offset).limit(limit)).all()
    return Page[EventPublic](
        items=[
            EventPublic(seq=r.seq, at=r.at, actor=r.actor, kind=r.kind, data=r.data or {})
            for r in rows
        ],
        total=total,
    )
