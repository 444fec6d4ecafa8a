"""Notices by mail to the people of their audience, and the daily round-up.

A notice names an audience (roles of a body, its prefecture, its vendor), never an address: it
is resolved here, at the moment of sending, to the active people who hold those roles, so
that addresses never enter a workflow's history and a person who has left hears nothing
more. Each person gets what they chose: ``each`` a message now, ``daily`` a line in the next
morning's round-up (the mail queue), ``none`` nothing.

Every recipient's outcome is a ``delivery_attempt`` row (recipient = address): an attempt
retried by Temporal sends only to those not yet reached, with the same Message-ID.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import structlog
from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deliveries import record_attempt
from readmodel import tables as t
from readmodel.registry import registry
from runtime.mail import MAIL_CHANNEL_ID, MailError, MailSender, message_id
from workflows.calendar import is_working_day
from workflows.mail import DAILY_MAIL_ACTIVITY, DailyMailRequest
from workflows.model import Delivery, Notification

log = structlog.get_logger(__name__)

__all__ = ["MAIL_CHANNEL_ID", "MailActivities", "NoticeMail", "anyone_wants"]
MAIL_KIND = "mail"
NOTIFY_EACH, NOTIFY_DAILY, NOTIFY_NONE = "each", "daily", "none"
SYSTEM_NAME = "自治体情報システム標準化 移行管理（hyojunka）"


def audience_clause(note: Notification) -> ColumnElement[bool] | None:
    """Which people a notice's audience means, as a condition on ``person``: a pm or approver
    of its body, the liaison of its prefecture, the people of its vendor. None: nobody."""
    person = t.Person
    parts: list[ColumnElement[bool]] = []
    for role in dict.fromkeys(note.audience):
        if role in ("pm", "approver") and note.lg_code:
            parts.append(and_(col(person.role) == role, col(person.lg_code) == note.lg_code))
        elif role == "prefecture" and note.prefecture:
            parts.append(and_(col(person.role) == role, col(person.prefecture) == note.prefecture))
        elif role == "vendor" and note.vendor_id:
            parts.append(and_(col(person.role) == role, col(person.vendor_id) == note.vendor_id))
    if not parts:
        return None
    return and_(col(person.active).is_(True), or_(*parts))


def audience_people(engine: Engine, note: Notification) -> list[t.Person]:
    """The active people a notice is for, now (whatever their choice of ``notify``)."""
    clause = audience_clause(note)
    if clause is None:
        return []
    with Session(engine) as session:
        return list(session.exec(select(t.Person).where(clause).order_by(col(t.Person.id))))


def anyone_wants(engine: Engine, note: Notification) -> bool:
    """Whether an active person of the audience wants mail (now or in the daily round-up)."""
    clause = audience_clause(note)
    if clause is None:
        return False
    with Session(engine) as session:
        found = session.exec(
            select(t.Person.id).where(clause, col(t.Person.notify) != NOTIFY_NONE).limit(1)
        ).first()
    return found is not None


def body_name(lg_code: str) -> str:
    body = registry().get(lg_code)
    return body.full_name if body is not None else lg_code


def notice_body(
    note: Notification, link: str, public_url: str, name: str, system: str | None
) -> str:
    """The plain text of a notice's message: who it is for, the body, the system and the
    task, the notice itself and the page that acts on it."""
    data = note.data or {}
    lines = [f"{name} 様", "", note.text, ""]
    lines.append(f"団体: {body_name(note.lg_code)}（{note.lg_code}）")
    if system:
        lines.append(f"システム: {system}")
    if data.get("task_name"):
        due = f"（期限 {data['due_date']}）" if data.get("due_date") else ""
        lines.append(f"作業: {data['task_name']}{due}")
    lines += ["", "確認・対応はこちらから:", link, ""]
    lines += _footer(public_url)
    return "\n".join(lines) + "\n"


def _footer(public_url: str) -> list[str]:
    return [
        "-- ",
        f"このメールは{SYSTEM_NAME}から自動で送信しています。返信はできません。",
        f"受け取り方（都度・1日1回・受け取らない）は {public_url}/me で変えられます。",
    ]


@dataclass
class _Reached:
    """What earlier attempts of a delivery did: addresses that took it, or refused it for
    good (a 5xx reply), compared lower-cased."""

    delivered: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)


class NoticeMail:
    """Delivery of one notice to its audience by mail; called by deliver_notification for the
    mail channel, inside its activity."""

    def __init__(self, engine: Engine, sender: MailSender, public_url: str) -> None:
        self._engine = engine
        self._sender = sender
        self._public_url = public_url.rstrip("/")

    async def deliver(self, d: Delivery, attempt: int, link: str) -> int:
        """Send, queue or skip for each person of the audience; how many were reached (sent
        now or before, or queued). Raises ApplicationError when some did not get it: a retry
        sends only to them."""
        note = d.notification
        people, reached, system = await asyncio.to_thread(self._prepare, d)
        daily = [p for p in people if p.notify == NOTIFY_DAILY]
        if daily:
            await asyncio.to_thread(self._queue, daily, note, link)
        todo = [
            p
            for p in people
            if p.notify == NOTIFY_EACH
            and p.email_key not in reached.delivered
            and p.email_key not in reached.rejected
        ]
        failed: list[MailError] = []
        sent = 0
        if todo:
            async with self._sender.session() as mail:
                for person in todo:
                    assert person.id is not None
                    mid = message_id(f"{d.delivery_id}.{person.id}", self._public_url)
                    body = notice_body(note, link, self._public_url, person.name, system)
                    error: MailError | None = None
                    try:
                        await mail.send(person.email, note.subject, body, mid, person.name)
                        sent += 1
                    except MailError as exc:
                        error = exc
                        failed.append(exc)
                    await asyncio.to_thread(self._record, d, attempt, person.email, error)
        already = sum(
            1 for p in people if p.notify == NOTIFY_EACH and p.email_key in reached.delivered
        )
        log.info(
            "notification mail",
            delivery_id=d.delivery_id,
            attempt=attempt,
            sent=sent,
            sent_before=already,
            queued=len(daily),
            failed=len(failed),
            destination=self._sender.destination,
        )
        if failed:
            permanent = all(e.permanent for e in failed)
            raise ApplicationError(
                f"delivery {d.delivery_id}: {len(failed)} of {len(todo)} messages did not go",
                type="MailRejected" if permanent else "MailNotSent",
                # A refusal for good is not retried; any other failure is, for the rest.
                non_retryable=permanent,
            )
        return sent + already + len(daily)

    def _prepare(self, d: Delivery) -> tuple[list[t.Person], _Reached, str | None]:
        note = d.notification
        people = audience_people(self._engine, note)
        reached = _Reached()
        system: str | None = None
        with Session(self._engine) as session:
            rows = session.exec(
                select(
                    t.DeliveryAttempt.recipient,
                    t.DeliveryAttempt.outcome,
                    t.DeliveryAttempt.status_code,
                ).where(
                    t.DeliveryAttempt.delivery_id == d.delivery_id,
                    col(t.DeliveryAttempt.recipient).is_not(None),
                )
            ).all()
            if note.project_id:
                project = session.get(t.Project, note.project_id)
                system = project.business_name if project is not None else None
        for recipient, outcome, status in rows:
            key = (recipient or "").lower()
            if outcome == "delivered":
                reached.delivered.add(key)
            elif status is not None and 500 <= status < 600:
                reached.rejected.add(key)
        return people, reached, system

    def _queue(self, people: Sequence[t.Person], note: Notification, link: str) -> None:
        """A line of the next round-up for each person, once per notice (a retry adds none)."""
        ids = [p.id for p in people]
        with Session(self._engine) as session:
            have = set(
                session.exec(
                    select(t.MailQueue.person_id).where(
                        t.MailQueue.notification_id == note.id,
                        col(t.MailQueue.person_id).in_(ids),
                    )
                ).all()
            )
            now = datetime.now(UTC)
            for person in people:
                if person.id is not None and person.id not in have:
                    session.add(
                        t.MailQueue(
                            person_id=person.id,
                            notification_id=note.id,
                            project_id=note.project_id,
                            subject=note.subject,
                            text=note.text,
                            link=link,
                            queued_at=now,
                        )
                    )
            session.commit()

    def _record(self, d: Delivery, attempt: int, recipient: str, error: MailError | None) -> None:
        outcome = "delivered" if error is None else "failed"
        code = error.code if error is not None else None
        reason = error.reason if error is not None else None
        record_attempt(self._engine, d, attempt, outcome, code, reason, recipient)


@dataclass
class _Round:
    person: t.Person
    items: list[t.MailQueue]


def daily_subject(day: date, count: int) -> str:
    return f"【本日のお知らせ {count}件】{day.month}月{day.day}日"


def daily_body(r: _Round, day: date, public_url: str) -> str:
    lines = [f"{r.person.name} 様", ""]
    lines.append(f"{day.isoformat()} までに届いたお知らせ {len(r.items)}件をまとめてお送りします。")
    for item in r.items:
        lines += ["", f"■ {item.subject}", item.text, item.link]
    lines += [""] + _footer(public_url)
    return "\n".join(lines) + "\n"


class MailActivities:
    """The daily round-up; the sender and the read-model engine are built by the worker."""

    def __init__(self, engine: Engine, sender: MailSender, public_url: str) -> None:
        self._engine = engine
        self._sender = sender
        self._public_url = public_url.rstrip("/")

    @activity.defn(name=DAILY_MAIL_ACTIVITY)
    async def send_daily_mail(self, req: DailyMailRequest) -> int:
        """One message to each active person with queued notices (notify not ``none``),
        listing them all; a notice is marked sent once its message went, so a retry sends
        only to those not yet reached. Nothing on a Japanese holiday unless ``any_day``:
        the queue waits for the next working morning."""
        if not req.any_day and not is_working_day(req.day):
            return 0
        rounds = await asyncio.to_thread(self._pending)
        sent = 0
        failed: list[MailError] = []
        if rounds:
            async with self._sender.session() as mail:
                for r in rounds:
                    assert r.person.id is not None
                    last = max(i.id or 0 for i in r.items)
                    mid = message_id(
                        f"daily.{req.day.isoformat()}.{r.person.id}.{last}", self._public_url
                    )
                    subject = daily_subject(req.day, len(r.items))
                    body = daily_body(r, req.day, self._public_url)
                    try:
                        await mail.send(r.person.email, subject, body, mid, r.person.name)
                    except MailError as exc:
                        failed.append(exc)
                        continue
                    sent += 1
                    await asyncio.to_thread(self._mark_sent, [i.id for i in r.items])
        log.info(
            "daily mail",
            day=req.day.isoformat(),
            sent=sent,
            failed=len(failed),
            destination=self._sender.destination,
        )
        if failed:
            raise ApplicationError(
                f"daily mail {req.day}: {len(failed)} of {len(rounds)} messages did not go",
                type="MailNotSent",
            )
        return sent

    def _pending(self) -> list[_Round]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(t.MailQueue, t.Person)
                .join(t.Person, col(t.Person.id) == col(t.MailQueue.person_id))
                .where(
                    col(t.MailQueue.sent_at).is_(None),
                    col(t.Person.active).is_(True),
                    col(t.Person.notify) != NOTIFY_NONE,
                )
                .order_by(col(t.MailQueue.person_id), col(t.MailQueue.id))
            ).all()
        rounds: dict[int, _Round] = {}
        for item, person in rows:
            rounds.setdefault(item.person_id, _Round(person, [])).items.append(item)
        return list(rounds.values())

    def _mark_sent(self, ids: list[Any]) -> None:
        now = datetime.now(UTC)
        with Session(self._engine) as session:
            for item in session.exec(select(t.MailQueue).where(col(t.MailQueue.id).in_(ids))):
                item.sent_at = now
                session.add(item)
            session.commit()
