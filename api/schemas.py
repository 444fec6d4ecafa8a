"""Request and response bodies of the public API (API.md); field names are the contract."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from readmodel import tables as t
from workflows.vocabulary import GateOutcome, Ground, Role, TaskStatus

T = TypeVar("T")


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """application/problem+json (RFC 9457), the body of every error."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {
        "model": Problem,
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("malformed request"),
    401: _problem("no or bad token"),
    403: _problem("allowed to see but not to do"),
    404: _problem("not found or not visible to the caller"),
    409: _problem("conflicts with the current state"),
    422: _problem("fails validation; errors name the fields"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Strict):
    lg_code: str = Field(examples=["131016"])
    business: str = Field(examples=["resident_registry"])
    target_go_live: date
    vendor_id: str | None = None
    switching_vendor: bool = False
    template: str | None = None


class TaskChangeIn(_Strict):
    status: Literal["in_progress", "done", "not_applicable"]
    note: str | None = Field(default=None, max_length=2000)


class MilestoneIn(_Strict):
    task_key: str
    status: Literal["in_progress", "done", "failed"]
    percent: int | None = Field(default=None, ge=0, le=100)
    note: str | None = Field(default=None, max_length=2000)


class DecisionIn(_Strict):
    outcome: GateOutcome
    comment: str | None = Field(default=None, max_length=2000)


class ReplanIn(_Strict):
    target_go_live: date
    reason: str = Field(min_length=1, max_length=2000)


class ExtendedTrackIn(_Strict):
    ground: Ground
    planned_go_live: date
    reason: str = Field(min_length=1, max_length=2000)


class VendorCreate(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)


class VendorPublic(BaseModel):
    id: str
    name: str


class TokenCreate(_Strict):
    role: Role
    name: str = Field(min_length=1, max_length=200)
    lg_code: str | None = None
    prefecture: str | None = None
    vendor_id: str | None = None


class TokenCreated(BaseModel):
    token: str
    id: int
    role: str
    name: str
    lg_code: str | None
    prefecture: str | None
    vendor_id: str | None


class DecisionPublic(BaseModel):
    outcome: str
    by: str
    at: datetime
    comment: str | None


class TaskPublic(BaseModel):
    key: str
    name: str
    stage: str
    owner: str
    status: TaskStatus
    gate: bool
    depends_on: list[str]
    due_date: date | None
    started_at: datetime | None
    completed_at: datetime | None
    percent: int | None
    decision: DecisionPublic | None
    note: str | None = None

    @classmethod
    def of(cls, row: t.Task) -> TaskPublic:
        return cls(
            key=row.key,
            name=row.name,
            stage=row.stage,
            owner=row.owner,
            status=row.status,  # type: ignore[arg-type]
            gate=row.gate,
            depends_on=list(row.depends_on or []),
            due_date=row.due_date,
            started_at=row.started_at,
            completed_at=row.completed_at,
            percent=row.percent,
            decision=DecisionPublic(**row.decision) if row.decision else None,
            note=row.note,
        )


class ProgressPublic(BaseModel):
    done: int
    in_progress: int
    not_started: int
    not_applicable: int
    completion_rate: float
    in_progress_rate: float
    not_started_rate: float


class ExtendedTrackPublic(BaseModel):
    ground: str
    planned_go_live: date
    reason: str
    declared_at: datetime


class ProjectSummary(BaseModel):
    """A project as lists show it: everything but its tasks."""

    id: str
    workflow_id: str
    lg_code: str
    body_name: str
    prefecture: str
    business: str
    business_name: str
    vendor_id: str | None
    template: str
    target_go_live: date
    deadline: date
    stage: str
    health: str
    extended_track: ExtendedTrackPublic | None
    progress: ProgressPublic
    created_at: datetime | None
    updated_at: datetime | None
    switching_vendor: bool = False
    # True when the planned go-live is after the project's deadline: see the extended track.
    past_deadline: bool = False
    # The go-live the project is heading for, from how late its open tasks run today.
    forecast_go_live: date | None = None

    @classmethod
    def fields_of(cls, row: t.Project) -> dict[str, Any]:
        return dict(
            id=row.id,
            workflow_id=row.workflow_id,
            lg_code=row.lg_code,
            body_name=row.body_name,
            prefecture=row.prefecture,
            business=row.business,
            business_name=row.business_name,
            vendor_id=row.vendor_id,
            template=row.template,
            target_go_live=row.target_go_live,
            deadline=row.deadline,
            stage=row.stage,
            health=row.health,
            extended_track=ExtendedTrackPublic(**row.extended_track)
            if row.extended_track
            else None,
            progress=ProgressPublic(
                done=row.done,
                in_progress=row.in_progress,
                not_started=row.not_started,
                not_applicable=row.not_applicable,
                completion_rate=row.completion_rate,
                in_progress_rate=row.in_progress_rate,
                not_started_rate=row.not_started_rate,
            ),
            created_at=row.created_at,
            updated_at=row.updated_at,
            switching_vendor=row.switching_vendor,
            past_deadline=row.target_go_live > row.deadline,
            forecast_go_live=row.forecast_go_live,
        )

    @classmethod
    def of(cls, row: t.Project) -> ProjectSummary:
        return cls(**cls.fields_of(row))


class ProjectPublic(ProjectSummary):
    """One project with its tasks, in template order."""

    tasks: list[TaskPublic]

    @classmethod
    def with_tasks(cls, row: t.Project, tasks: list[t.Task]) -> ProjectPublic:
        return cls(**cls.fields_of(row), tasks=[TaskPublic.of(x) for x in tasks])


class MilestoneAnswer(BaseModel):
    milestone_id: str
    duplicate: bool
    task: TaskPublic


class ApprovalPublic(BaseModel):
    project_id: str
    gate_key: str
    name: str
    waiting_since: datetime | None
    due_date: date | None


class EscalationPublic(BaseModel):
    id: str
    project_id: str
    task_key: str
    level: str
    audience: list[str]
    raised_at: datetime | None
    status: str
    due_date: date | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None


def escalation_public(r: t.Escalation) -> EscalationPublic:
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


class EventPublic(BaseModel):
    seq: int
    at: datetime | None
    actor: str
    kind: str
    data: dict[str, Any]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


def task_from_view(view: Any) -> TaskPublic:
    """A TaskPublic from the workflow's own TaskView (the answer an update returned)."""
    d = view.decision
    return TaskPublic(
        key=view.key,
        name=view.name,
        stage=view.stage,
        owner=view.owner,
        status=view.status,
        gate=view.gate,
        depends_on=list(view.depends_on),
        due_date=view.due_date,
        started_at=view.started_at,
        completed_at=view.completed_at,
        percent=view.percent,
        decision=DecisionPublic(outcome=d.outcome, by=d.by, at=d.at, comment=d.comment)
        if d
        else None,
        note=view.note,
    )
