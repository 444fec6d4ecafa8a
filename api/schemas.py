"""Request and response bodies of the public API (API.md); field names are the contract."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from readmodel import tables as t
from workflows.calendar import jst_today
from workflows.model import ForecastTerms, Progress, forecast_on, pick
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
    429: _problem("too many requests from this token or address; see Retry-After"),
    503: _problem("Temporal or the database did not answer in time; see Retry-After"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Public(BaseModel):
    """An answer built from a read-model row or a workflow value with the same field names
    (one mapping for every shape): ``Model.of(row, field=override)``."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, source: Any, **given: Any) -> Self:
        values = {f: getattr(source, f) for f in cls.model_fields if hasattr(source, f)}
        return cls.model_validate({**values, **given})


class ProgressIn(_Strict):
    status: Literal["done", "in_progress", "not_applicable"]
    on: date | None = Field(default=None, description="when a done task was completed")


class ProjectCreate(_Strict):
    lg_code: str = Field(max_length=16, examples=["131016"])
    business: str | None = Field(
        default=None,
        max_length=64,
        examples=["resident_registry"],
        description="required for a migration; none for a programme (a template of kind "
        "programme: the project is the body's, its id {lg_code}-{template id})",
    )
    target_go_live: date = Field(
        description="The planned go-live, in the future (at the latest 2031-03-31); for a "
        "system already live, whose progress gives the cutover as done, the day it went live "
        "(the cutover's date, which it takes when the cutover is given without one)"
    )
    vendor_id: str | None = Field(default=None, max_length=64)
    switching_vendor: bool = False
    # ID@VERSION: a stored template's name (64) and version (32) with the "@".
    template: str | None = Field(default=None, max_length=97)
    progress: dict[str, ProgressIn] = Field(
        default_factory=dict,
        description="A migration already under way: each task's status and completion date",
    )


class ImportRefusal(BaseModel):
    """A row of an import file that did not go in, by its line in the file."""

    line: int
    errors: list[str]


class ImportResult(BaseModel):
    """What an import did: projects created, rows whose project exists already (left as
    they are), and rows refused with their reasons."""

    created: int
    existing: int
    refused: list[ImportRefusal]


class TaskChangeIn(_Strict):
    status: Literal["in_progress", "done", "not_applicable"]
    note: str | None = Field(default=None, max_length=2000)


class MilestoneIn(_Strict):
    task_key: str = Field(max_length=64)
    status: Literal["in_progress", "done", "failed"]
    percent: int | None = Field(default=None, ge=0, le=100)
    note: str | None = Field(default=None, max_length=2000)


class DecisionIn(_Strict):
    outcome: GateOutcome
    comment: str | None = Field(default=None, max_length=2000)
    vendor_id: str | None = Field(
        default=None,
        max_length=64,
        description="approving vendor_selection with it assigns that vendor",
    )


class VendorAssignIn(_Strict):
    vendor_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


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


class VendorPublic(Public):
    id: str
    name: str


class TokenCreate(_Strict):
    role: Role
    name: str = Field(min_length=1, max_length=200)
    lg_code: str | None = Field(default=None, max_length=16)
    prefecture: str | None = Field(default=None, max_length=16)
    vendor_id: str | None = Field(default=None, max_length=64)
    expires_on: date | None = Field(default=None, description="the last day it is valid (JST)")


class TokenPublic(Public):
    """A token as listed: never its secret."""

    id: int
    role: str
    name: str
    lg_code: str | None
    prefecture: str | None
    vendor_id: str | None
    created_at: datetime | None = None
    expires_on: date | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenCreated(TokenPublic):
    token: str


Notify = Literal["each", "daily", "none"]


def person_name(value: str | None) -> str | None:
    """A person's name as it is written in mail and the audit trail: trimmed, not blank,
    without control characters (a line break would end a mail header)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError("a name must not be blank")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a name must not hold control characters")
    return value


class PersonCreate(_Strict):
    """An invitation: the person is made now and mailed a sign-in link valid 7 days."""

    name: str = Field(min_length=1, max_length=200)

    _name = field_validator("name")(person_name)
    email: str = Field(min_length=3, max_length=254)
    role: Role
    lg_code: str | None = Field(default=None, max_length=16)
    prefecture: str | None = Field(default=None, max_length=16)
    vendor_id: str | None = Field(default=None, max_length=64)


class PersonUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    notify: Notify | None = None

    _name = field_validator("name")(person_name)


class PersonPublic(Public):
    id: int
    name: str
    email: str
    role: str
    lg_code: str | None = None
    prefecture: str | None = None
    vendor_id: str | None = None
    active: bool
    notify: str
    last_sign_in: datetime | None = None


class PersonInvited(PersonPublic):
    # Whether the invitation mail went out; if not, POST /api/v1/people/{id}/invitation
    # sends it again.
    invitation_sent: bool = True


class PersonalTokenCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    expires_on: date | None = Field(default=None, description="the last day it is valid (JST)")


class DecisionPublic(Public):
    outcome: str
    by: str
    at: datetime
    comment: str | None


class TaskPublic(Public):
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
    def of_row(cls, row: Any) -> TaskPublic:
        return cls.of(row, depends_on=list(row.depends_on or []))


class ExtendedTrackPublic(Public):
    ground: str
    planned_go_live: date
    reason: str
    declared_at: datetime


class ProjectSummary(Public):
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
    # MIC's counts and rates of the project's tasks, as the workflow computes them.
    progress: Progress
    created_at: datetime | None
    updated_at: datetime | None
    switching_vendor: bool = False
    # True when the planned go-live is after the project's deadline: see the extended track.
    past_deadline: bool = False
    # The go-live the project is heading for, from how late its open tasks run today.
    forecast_go_live: date | None = None
    # migration (one body × one business) or programme (the body's DX plan, say).
    kind: str = "migration"
    # True when its (forecast) go-live month has more of its vendor's go-lives than the
    # vendor states it can carry (GET /api/v1/vendors/{id}/capacity); false once live.
    vendor_over_capacity: bool = False

    @classmethod
    def of_row(cls, row: t.Project, **given: Any) -> Self:
        return cls.of(
            row,
            progress=pick(Progress, row),
            past_deadline=row.target_go_live > row.deadline,
            forecast_go_live=forecast_today(row),
            **given,
        )


def forecast_today(row: t.Project, now: datetime | None = None) -> date | None:
    """The project's forecast go-live as of today (JST), from the terms its workflow wrote:
    it slips day by day with no write (rows written before the terms keep their own)."""
    if row.forecast_slip_days is None or row.forecast_go_live is None:
        return row.forecast_go_live
    terms = ForecastTerms(row.forecast_slip_days, row.forecast_slips_from)
    return forecast_on(row.target_go_live, terms, jst_today(now or datetime.now(UTC)))


class ProjectPublic(ProjectSummary):
    """One project with its tasks, in template order."""

    tasks: list[TaskPublic]
    # The open joint procurement (共同調達) carrying some of its steps, if any.
    procurement_id: str | None = None

    @classmethod
    def with_tasks(cls, row: t.Project, tasks: Iterable[Any]) -> ProjectPublic:
        """``tasks``: task rows, ORM objects or plain rows of the task table."""
        return cls.of_row(row, tasks=[TaskPublic.of_row(x) for x in tasks])


class MilestoneAnswer(BaseModel):
    milestone_id: str
    duplicate: bool
    task: TaskPublic


class BulkMilestoneItem(_Strict):
    """One item of the bulk feed: the single route's body with its project and its key."""

    project_id: str = Field(min_length=1, max_length=200)
    task_key: str = Field(max_length=64)
    status: Literal["in_progress", "done", "failed"]
    percent: int | None = Field(default=None, ge=0, le=100)
    note: str | None = Field(default=None, max_length=2000)
    idempotency_key: str = Field(min_length=1, max_length=200)


class BulkMilestoneResult(BaseModel):
    index: int
    status: int
    milestone_id: str | None = None
    duplicate: bool | None = None
    task: TaskPublic | None = None
    problem: dict[str, Any] | None = None


class BulkMilestoneAnswer(BaseModel):
    results: list[BulkMilestoneResult]


class ApprovalPublic(Public):
    project_id: str
    gate_key: str
    name: str
    waiting_since: datetime | None
    due_date: date | None


class EscalationPublic(Public):
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
    return EscalationPublic.of(r, audience=list(r.audience or []))


class EventPublic(Public):
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
    return TaskPublic.of(view, depends_on=list(view.depends_on))


class FeedKind(StrEnum):
    """What a calendar feed follows: one project, one local body, or one vendor's work."""

    PROJECT = "project"
    BODY = "body"
    VENDOR = "vendor"


class CalendarFeedCreate(_Strict):
    kind: FeedKind
    target: str = Field(
        min_length=1,
        max_length=64,
        description="a project id, a local body's lg_code, or a vendor id, by kind",
    )


class CalendarFeedPublic(Public):
    """A feed as listed: never its address, which only its creator saw, once."""

    id: int
    kind: str
    target: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None


class CalendarFeedCreated(CalendarFeedPublic):
    url: str = Field(description="the secret address to subscribe to (shown once)")


class ProcurementCreate(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str = Field(min_length=1, max_length=200)
    lead_lg_code: str = Field(min_length=6, max_length=6)
    business: str = Field(min_length=1, max_length=64)
    members: list[str] = Field(min_length=1, max_length=200, description="member project ids")


class MemberIn(_Strict):
    project_id: str = Field(min_length=1, max_length=100)


class ProcurementTaskPublic(BaseModel):
    key: str
    name: str
    owner: str
    gate: bool
    status: str
    due_date: date | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    decision: dict[str, Any] | None = None
    note: str | None = None


class ProcurementMemberPublic(BaseModel):
    project_id: str
    status: str  # member | left


class ProcurementPublic(Public):
    id: str
    name: str
    lead_lg_code: str
    lead_name: str
    prefecture: str
    business: str
    business_name: str
    status: str
    vendor_id: str | None
    tasks: list[ProcurementTaskPublic]
    members: list[ProcurementMemberPublic]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TemplateIn(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str = Field(min_length=1, max_length=200)
    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=200)
    kind: Literal["migration", "programme"] = Field(
        default="migration",
        description="migration: one body × one business; programme: one a body (its id is "
        "{lg_code}-{template id}), with the body's own target dates",
    )


class TemplatePublic(BaseModel):
    id: str
    version: str
    name: str
    tasks: list[dict[str, Any]]
    builtin: bool = False
    kind: str = "migration"
    created_at: datetime | None = None


class TemplateMoveIn(_Strict):
    template: str = Field(min_length=3, max_length=97, description="ID@VERSION")
    reason: str = Field(min_length=1, max_length=2000)


class VendorCapacityIn(_Strict):
    """What a vendor states it can carry in a month; a field left out keeps its value, null
    unstates it (never over)."""

    go_lives_per_month: int | None = Field(default=None, ge=0, le=100_000, strict=True)
    tasks_per_month: int | None = Field(default=None, ge=0, le=1_000_000, strict=True)


class CapacityStated(BaseModel):
    go_lives_per_month: int | None = None
    tasks_per_month: int | None = None


class VendorCapacityStated(BaseModel):
    """The answer of PUT /api/v1/vendors/{id}/capacity."""

    vendor_id: str
    capacity: CapacityStated
    updated_at: datetime | None = None
    updated_by: str | None = None


class GoLivePublic(BaseModel):
    """A project going live in a month: the day counted is its cutover's completion when it
    went live already (``live``), else today's forecast."""

    id: str
    lg_code: str
    body_name: str
    prefecture: str
    business: str
    business_name: str
    go_live: date
    target_go_live: date
    live: bool


class VendorMonth(BaseModel):
    month: str = Field(description="YYYY-MM")
    go_lives: int
    tasks_due: int
    tasks_done: int
    tasks_open: int
    tasks_overdue: int
    # The vendor's whole load against what it stated (whatever part of it the caller sees).
    over_capacity: bool
    projects: list[GoLivePublic]


class VendorCapacityPublic(BaseModel):
    """A vendor's load by month against its stated capacity, over the projects the caller
    may see."""

    vendor_id: str
    capacity: CapacityStated
    months: list[VendorMonth]


class VendorMonthRow(BaseModel):
    """A row of the vendors' report: one vendor in one month."""

    vendor_id: str
    vendor_name: str
    month: str
    go_lives: int
    tasks_due: int
    tasks_done: int
    tasks_open: int
    tasks_overdue: int
    go_lives_per_month: int | None
    tasks_per_month: int | None
    over_capacity: bool
    # Its projects going live in the month, not yet live, when the month is over its stated
    # go-lives: those carrying vendor_over_capacity.
    projects_over_capacity: int


class RolloutCreate(_Strict):
    """A template revision rolled out to the running projects on ``from``: in one prefecture
    or body when given (a prefecture gives its own, or one of its bodies)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the version projects are on",
    )
    to: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="a newer version of the same template",
    )
    reason: str = Field(min_length=1, max_length=2000)
    prefecture: str | None = Field(default=None, pattern=r"^(0[1-9]|[1-3][0-9]|4[0-7])$")
    lg_code: str | None = Field(default=None, min_length=6, max_length=6)


class RolloutRefusalPublic(BaseModel):
    """A project left on its version, and why (its own rule's words)."""

    project_id: str
    code: str
    reason: str
    japanese: str | None = None


class RolloutPublic(BaseModel):
    """A rollout and its progress: ``moved`` + ``skipped`` + refused + ``remaining`` =
    ``total``. ``skipped`` counts projects already on ``to`` or a newer version, or finished,
    when the rollout reached them."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    template: str
    from_: str = Field(alias="from")
    to: str
    reason: str
    prefecture: str | None = None
    lg_code: str | None = None
    status: str = Field(description="running | completed")
    moved: int
    skipped: int
    refused: list[RolloutRefusalPublic]
    remaining: int
    total: int
    created_by: str
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, row: t.Rollout) -> RolloutPublic:
        refused = [RolloutRefusalPublic(**x) for x in row.refused or []]
        return cls.model_validate(
            {
                "id": row.id,
                "template": row.template,
                "from": row.from_version,
                "to": row.to_version,
                "reason": row.reason,
                "prefecture": row.prefecture,
                "lg_code": row.lg_code,
                "status": row.status,
                "moved": row.moved,
                "skipped": row.skipped,
                "refused": refused,
                "remaining": row.remaining,
                "total": row.moved + row.skipped + len(refused) + row.remaining,
                "created_by": row.created_by,
                "started_at": row.started_at,
                "updated_at": row.updated_at,
                "finished_at": row.finished_at,
            }
        )
