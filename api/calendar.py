"""Due dates as iCalendar (RFC 5545), for Outlook or Google Calendar to subscribe to.

A feed is a secret address made by a reader for one project, one local body or one
vendor's work; it shows what that reader's token sees, only while the token is valid, and
ends when it is revoked. Each open task is an all-day event on its due date with a stable
UID, so a calendar updates it in place when the date moves and drops it once it is done.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from icalendar import Calendar, Event
from sqlmodel import Session, col, select

from api.auth import Caller, caller_by_id, caller_of_person
from api.commands import visible_project
from api.errors import HTTPProblem, field_error
from api.schemas import CalendarFeedCreate, CalendarFeedCreated, CalendarFeedPublic, FeedKind
from readmodel import tables as t
from readmodel.registry import registry
from workflows.calendar import jst_today
from workflows.roles import Role, Scope, scope_of
from workflows.vocabulary import TaskStatus

FEED_PREFIX = "cal_"
MAX_EVENTS = 5000  # a national vendor's feed stays a size a calendar application accepts


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_target(session: Session, caller: Caller, kind: FeedKind, target: str) -> None:
    """A reader makes feeds only of what it could look at itself; what is not visible is
    answered as not found, as everywhere else."""
    scope = scope_of(caller.role)
    if kind is FeedKind.PROJECT:
        visible_project(session, caller, target)
    elif kind is FeedKind.BODY:
        body = registry().get(target)
        if body is None:
            raise field_error(["body", "target"], f"no local body {target!r}")
        if (scope is Scope.LG_CODE and target != caller.lg_code) or (
            scope is Scope.PREFECTURE and body.prefecture_code != caller.prefecture
        ):
            raise HTTPProblem(404, f"no local body {target!r} in your scope")
    else:
        if session.get(t.Vendor, target) is None or (
            scope is Scope.VENDOR and target != caller.vendor_id
        ):
            raise HTTPProblem(404, f"no vendor {target!r}")


def create_feed(
    session: Session, caller: Caller, body: CalendarFeedCreate, public_url: str
) -> CalendarFeedCreated:
    """A new feed; its address is in the answer and nowhere else ever again."""
    _check_target(session, caller, body.kind, body.target)
    secret = FEED_PREFIX + secrets.token_urlsafe(32)
    row = t.CalendarFeed(
        secret_hash=_hash(secret),
        token_id=None if caller.person_id is not None else caller.token_id,
        person_id=caller.person_id,
        kind=body.kind,
        target=body.target,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    url = f"{public_url.rstrip('/')}/api/v1/calendar/{secret}.ics"
    return CalendarFeedCreated.of(row, url=url)


def _owned_by(caller: Caller) -> Any:
    if caller.person_id is not None:
        return col(t.CalendarFeed.person_id) == caller.person_id
    return col(t.CalendarFeed.token_id) == caller.token_id


def _owns(caller: Caller, row: t.CalendarFeed) -> bool:
    if caller.person_id is not None:
        return row.person_id == caller.person_id
    return row.token_id is not None and row.token_id == caller.token_id


def _reader(session: Session, row: t.CalendarFeed) -> Caller | None:
    """Whom a feed reads as: its maker, while their token is valid or they are active."""
    if row.person_id is not None:
        return caller_of_person(session, row.person_id)
    return caller_by_id(session, row.token_id) if row.token_id is not None else None


def feeds(session: Session, caller: Caller) -> list[CalendarFeedPublic]:
    """The caller's own feeds (an admin's: everyone's), newest first."""
    query = select(t.CalendarFeed).order_by(col(t.CalendarFeed.id).desc())
    if caller.role != Role.ADMIN:
        query = query.where(_owned_by(caller))
    return [CalendarFeedPublic.of(r) for r in session.exec(query).all()]


def revoke_feed(session: Session, caller: Caller, feed_id: int) -> CalendarFeedPublic:
    """The address answers 404 from now on; only its creator (or an admin) revokes it."""
    row = session.get(t.CalendarFeed, feed_id)
    if row is None or (caller.role != Role.ADMIN and not _owns(caller, row)):
        raise HTTPProblem(404, f"no calendar feed {feed_id}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        session.commit()
        session.refresh(row)
    return CalendarFeedPublic.of(row)


def render(session: Session, secret: str, public_url: str) -> bytes:
    """The feed at ``secret`` as iCalendar; 404 for an unknown or revoked address, or one
    whose token is no longer valid."""
    row = session.exec(
        select(t.CalendarFeed).where(t.CalendarFeed.secret_hash == _hash(secret))
    ).first()
    reader = _reader(session, row) if row and row.revoked_at is None else None
    if row is None or reader is None:
        raise HTTPProblem(404, "no such calendar feed")
    projects = reader.scope(select(t.Project))
    column = {
        FeedKind.PROJECT: t.Project.id,
        FeedKind.BODY: t.Project.lg_code,
        FeedKind.VENDOR: t.Project.vendor_id,
    }[FeedKind(row.kind)]
    projects = projects.where(column == row.target)
    by_id = {p.id: p for p in session.exec(projects).all()}
    tasks = (
        session.exec(
            select(t.Task)
            .where(
                col(t.Task.project_id).in_(by_id),
                col(t.Task.status).in_((TaskStatus.NOT_STARTED, TaskStatus.IN_PROGRESS)),
                col(t.Task.due_date).is_not(None),
            )
            .order_by(col(t.Task.due_date), col(t.Task.project_id), col(t.Task.position))
            .limit(MAX_EVENTS)
        ).all()
        if by_id
        else []
    )
    base = public_url.rstrip("/")
    now = datetime.now(UTC)
    today = jst_today(now)
    cal = Calendar()
    cal.add("prodid", "-//hyojunka//standardisation migrations//JA")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", _title(row, by_id))
    cal.add("x-wr-timezone", "Asia/Tokyo")
    cal.add("refresh-interval", timedelta(hours=6), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT6H")
    for task in tasks:
        project = by_id[task.project_id]
        assert task.due_date is not None
        late = "【期限超過】" if task.due_date < today else ""
        event = Event()
        event.add("uid", f"{task.project_id}.{task.key}@hyojunka")
        event.add("dtstamp", now)
        event.add("dtstart", task.due_date)
        event.add("dtend", task.due_date + timedelta(days=1))
        event.add("summary", f"{late}{project.body_name} {project.business_name}：{task.name}")
        link = f"{base}/projects/{project.id}#task-{task.key}"
        event.add("url", link)
        event.add(
            "description",
            f"期限：{task.name}（{TaskStatus(task.status).label}）\n{link}",
        )
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    for project in by_id.values():
        if project.completed_at is None:
            event = Event()
            event.add("uid", f"{project.id}.go-live@hyojunka")
            event.add("dtstamp", now)
            event.add("dtstart", project.target_go_live)
            event.add("dtend", project.target_go_live + timedelta(days=1))
            event.add("summary", f"本番移行予定：{project.body_name} {project.business_name}")
            event.add("url", f"{base}/projects/{project.id}")
            event.add("transp", "TRANSPARENT")
            cal.add_component(event)
    return cal.to_ical()


def _title(row: t.CalendarFeed, projects: dict[str, t.Project]) -> str:
    if row.kind == FeedKind.PROJECT and row.target in projects:
        p = projects[row.target]
        return f"標準化移行 {p.body_name} {p.business_name}"
    if row.kind == FeedKind.BODY:
        body = registry().get(row.target)
        return f"標準化移行 {body.full_name if body else row.target}"
    return f"標準化移行 ベンダ {row.target}"
