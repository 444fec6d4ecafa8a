"""The SQL database: the read model of the projects (project, task, escalation, event, gate
decision, milestone), written only by the worker's activities from the workflows' truth; and
the API's own records (tokens, vendors, notification channels), written by its command layer.
Delivery attempts are written by the notification activities."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the read model")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


class Vendor(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str
    created_at: datetime | None = _ts()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    role: str = Field(index=True)
    lg_code: str | None = None
    prefecture: str | None = None
    vendor_id: str | None = None
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
    # The last day it is valid (JST); none: until revoked.
    expires_on: date | None = None
    # When it was last presented, to the minute.
    last_used_at: datetime | None = _ts()
    # A person's own token (made on /me): it dies with the person.
    person_id: int | None = Field(default=None, index=True)


class PageSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds a random secret, stored here only as its hash;
    signing out or expiry ends it, and so does revoking the token it was opened with."""

    __tablename__ = "page_session"
    id: str = Field(primary_key=True)  # sha256 of the cookie's secret
    # Signed in with an API token, or as a person (e-mail link, identity provider).
    token_id: int | None = Field(default=None, index=True)
    person_id: int | None = Field(default=None, index=True)
    created_at: datetime | None = _ts()
    expires_at: datetime | None = _ts()
    ended_at: datetime | None = _ts()


class Person(SQLModel, table=True):
    """Someone who signs in to the pages: a role and its scope as a token has, and how they
    want notices by mail. Deactivated, never deleted: the audit trail names them."""

    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str  # as given
    # The address lower-cased: unique, so that no two people share one whatever its case.
    email_key: str = Field(unique=True, index=True)
    role: str = Field(index=True)
    lg_code: str | None = Field(default=None, index=True)
    prefecture: str | None = Field(default=None, index=True)
    vendor_id: str | None = Field(default=None, index=True)
    active: bool = True
    notify: str = "each"  # each | daily | none
    created_by: str | None = None
    created_at: datetime | None = _ts()
    last_sign_in: datetime | None = _ts()
    deactivated_at: datetime | None = _ts()


class SignInLink(SQLModel, table=True):
    """A single-use sign-in link sent by mail: the secret is in the link, its hash here."""

    __tablename__ = "sign_in_link"
    id: str = Field(primary_key=True)  # sha256 of the link's secret
    person_id: int = Field(index=True)
    purpose: str  # sign_in | invitation
    created_at: datetime | None = _ts()
    expires_at: datetime | None = _ts()
    used_at: datetime | None = _ts()


class MailQueue(SQLModel, table=True):
    """Notices kept for a person who reads them once a day (notify = daily), until the day's
    message is sent."""

    __tablename__ = "mail_queue"
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(index=True)
    notification_id: str
    project_id: str
    subject: str
    text: str
    link: str
    queued_at: datetime | None = _ts()
    sent_at: datetime | None = _ts(index=True)


class CalendarFeed(SQLModel, table=True):
    """A secret address serving due dates as iCalendar to a calendar application. It sees
    what the token that created it sees, for as long as that token is valid."""

    __tablename__ = "calendar_feed"
    id: int | None = Field(default=None, primary_key=True)
    secret_hash: str = Field(unique=True, index=True)  # sha256 of the address's secret
    # Made by a token, or by a person (it then lives as long as the person is active).
    token_id: int | None = Field(default=None, index=True)
    person_id: int | None = Field(default=None, index=True)
    kind: str  # project | body | vendor
    target: str
    created_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class ProgressSnapshot(SQLModel, table=True):
    """A project's counts as they stood at a month's end (the trend of MIC's figures)."""

    __tablename__ = "progress_snapshot"
    __table_args__ = (
        Index("ix_progress_snapshot_prefecture", "prefecture", "month"),
        Index("ix_progress_snapshot_lg_code", "lg_code", "month"),
    )
    month: date = Field(primary_key=True)  # the month's first day
    project_id: str = Field(primary_key=True)
    lg_code: str
    prefecture: str
    business: str
    vendor_id: str | None = None
    done: int
    in_progress: int
    not_started: int
    not_applicable: int


class StoredTemplate(SQLModel, table=True):
    """A procedure template an operator stored, validated as the built-in one is; a project
    created on ``id@version`` copies it into its workflow and keeps that version."""

    __tablename__ = "procedure_template"
    id: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    name: str
    tasks: list[dict[str, Any]] | None = _json()
    kind: str = "migration"
    created_by: str
    created_at: datetime | None = _ts()


class Procurement(SQLModel, table=True):
    """A joint procurement (共同調達) as its workflow last wrote it."""

    id: str = Field(primary_key=True)
    workflow_id: str
    name: str
    lead_lg_code: str = Field(index=True)
    lead_name: str
    prefecture: str = Field(index=True)
    business: str = Field(index=True)
    business_name: str
    status: str
    vendor_id: str | None = None
    tasks: list[dict[str, Any]] | None = _json()
    events: list[dict[str, Any]] | None = _json()
    seq: int = 0
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class ProcurementMember(SQLModel, table=True):
    """A project's place in a joint procurement: a member, or one that left."""

    __tablename__ = "procurement_member"
    procurement_id: str = Field(primary_key=True)
    project_id: str = Field(primary_key=True, index=True)
    status: str  # member | left


class Project(SQLModel, table=True):
    id: str = Field(primary_key=True)
    workflow_id: str
    lg_code: str = Field(index=True)
    body_name: str
    prefecture: str = Field(index=True)
    business: str = Field(index=True)
    business_name: str
    vendor_id: str | None = Field(default=None, index=True)
    switching_vendor: bool = False
    template: str
    # migration (one body × one business) or programme (one a body: its DX plan, say).
    kind: str = Field(default="migration", index=True)
    target_go_live: date
    deadline: date
    # As of the last write; today's is worked out from the two terms below (ForecastTerms).
    forecast_go_live: date | None = None
    # None on rows written before the terms were: those read forecast_go_live as it is.
    forecast_slip_days: int | None = None
    forecast_slips_from: date | None = None
    # The go-live month (readmodel.golive): the month it went live, or its forecast's terms.
    live_month: int | None = None
    forecast_month: int | None = None
    forecast_moves_from: date | None = None
    forecast_offset: int | None = None
    stage: str = Field(index=True)
    health: str = Field(index=True)
    extended_track: dict[str, Any] | None = _json()
    done: int = 0
    in_progress: int = 0
    not_started: int = 0
    not_applicable: int = 0
    completion_rate: float = 0.0
    in_progress_rate: float = 0.0
    not_started_rate: float = 0.0
    seq: int = 0
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()


class Task(SQLModel, table=True):
    # MIC's figures by step over every project come from this index alone.
    __table_args__ = (Index("ix_task_report", "key", "status", "position", "name"),)
    project_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    position: int
    name: str
    stage: str
    owner: str
    gate: bool = False
    status: str = Field(index=True)
    depends_on: list[str] | None = _json()
    due_date: date | None = None
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    percent: int | None = None
    # The project's vendor, kept with each task so that a vendor's tasks by month are
    # counted from one index.
    vendor_id: str | None = None
    decision: dict[str, Any] | None = _json()
    note: str | None = None
    updated_at: datetime | None = _ts()


class GateDecision(SQLModel, table=True):
    __tablename__ = "gate_decision"
    project_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    gate_key: str
    outcome: str
    by: str
    at: datetime | None = _ts()
    comment: str | None = None


class Milestone(SQLModel, table=True):
    project_id: str = Field(primary_key=True)
    idempotency_key: str = Field(primary_key=True)
    milestone_id: str
    seq: int
    task_key: str
    status: str
    percent: int | None = None
    note: str | None = None
    actor: str
    at: datetime | None = _ts()


class Event(SQLModel, table=True):
    project_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    at: datetime | None = _ts()
    actor: str
    kind: str
    data: dict[str, Any] | None = _json()


class Escalation(SQLModel, table=True):
    id: str = Field(primary_key=True)
    project_id: str = Field(index=True)
    lg_code: str = Field(index=True)
    prefecture: str = Field(index=True)
    vendor_id: str | None = None
    task_key: str
    level: str
    audience: list[str] | None = _json()
    due_date: date
    raised_at: datetime | None = _ts()
    status: str = Field(index=True)
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()


class NotificationChannel(SQLModel, table=True):
    __tablename__ = "notification_channel"
    id: str = Field(primary_key=True)
    kind: str
    url: str
    lg_code: str | None = Field(default=None, index=True)
    created_at: datetime | None = _ts()


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempt"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(index=True)
    notification_id: str = Field(index=True)
    project_id: str = Field(index=True)
    channel_id: str
    attempt: int
    at: datetime | None = _ts()
    outcome: str  # delivered | failed
    status_code: int | None = None
    error: str | None = None
    # A mail's recipient (shown to admin and the body's pm only); none for webhooks.
    recipient: str | None = None


Index("ix_event_project_kind", Event.project_id, Event.kind)  # type: ignore[arg-type]


class VendorCapacity(SQLModel, table=True):
    """What a vendor states it can carry in a month (None: not stated, never over). Its load
    is not stored: it is counted from its projects' go-lives and its tasks' due dates."""

    __tablename__ = "vendor_capacity"
    vendor_id: str = Field(primary_key=True, max_length=64)
    go_lives_per_month: int | None = None
    tasks_per_month: int | None = None
    updated_at: datetime | None = _ts()
    updated_by: str | None = None


# Vendors' go-lives by month, read from the index alone (readmodel.golive).
Index(
    "ix_project_go_live",
    Project.vendor_id,  # type: ignore[arg-type]
    Project.live_month,  # type: ignore[arg-type]
    Project.forecast_month,  # type: ignore[arg-type]
    Project.forecast_moves_from,  # type: ignore[arg-type]
    Project.forecast_offset,  # type: ignore[arg-type]
)
# Vendors' tasks by due month, read from the index alone (owner, the due range, the vendor).
Index(
    "ix_task_vendor_due",
    Task.owner,  # type: ignore[arg-type]
    Task.due_date,  # type: ignore[arg-type]
    Task.vendor_id,  # type: ignore[arg-type]
    Task.status,  # type: ignore[arg-type]
    Task.project_id,  # type: ignore[arg-type]
)


class VendorTaskDay(SQLModel, table=True):
    """A vendor's tasks due on one day: those it owns that apply (not ``not_applicable``),
    and how many of them are done. Kept by triggers on ``task`` (migration 0016), in the
    transaction that writes the task, so a vendor's tasks by month are summed over days
    (vendors × days, whatever the country's size) instead of counted over every task."""

    __tablename__ = "vendor_task_day"
    # Clustered by day on SQLite: a window of months is one range of the table.
    __table_args__ = {"sqlite_with_rowid": False}
    due_date: date = Field(primary_key=True)
    vendor_id: str = Field(primary_key=True)
    tasks: int = 0
    done: int = 0


class Rollout(SQLModel, table=True):
    """A template revision rolled out to the running projects on one version (RolloutWorkflow):
    its counts and each refused project with the reason, written only by its projection."""

    __tablename__ = "rollout"
    id: str = Field(primary_key=True, max_length=64)
    workflow_id: str
    template: str = Field(index=True)
    from_version: str
    to_version: str
    reason: str
    prefecture: str | None = None
    lg_code: str | None = None
    status: str = Field(index=True)
    moved: int = 0
    skipped: int = 0
    refused_count: int = 0
    # [{"project_id", "code", "reason", "japanese"}]
    refused: list[dict[str, Any]] | None = _json()
    remaining: int = 0
    created_by: str
    # Who started it ("token:ID" or "person:ID"): the one besides admin who reads it.
    owner: str = Field(index=True)
    started_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    seq: int = 0
