"""Notices by mail, end to end: a late project on the time-skipping server and the real worker,
people in the read model, and a real SMTP server (aiosmtpd). Each person of a notice's
audience gets what they chose, once per digest, with a link to the page that acts on it;
addresses never enter a workflow's history; a mail server down at first is retried and each
person still gets exactly one message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.routing import Match
from temporalio.testing import WorkflowEnvironment

from activities.mail import audience_people
from readmodel import tables as t
from runtime.settings import Settings
from tests.mail.conftest import MailServer
from tests.workflows.helpers import describe, finish, future_target, new_input, start
from worker.runner import build_worker
from workflows.calendar import JST
from workflows.digest import gathering_id, wave_hour
from workflows.ladder import rung_instant
from workflows.mail import DailyMailInput, DailyMailWorkflow
from workflows.model import Notification
from workflows.notification import NotificationWorkflow

PUBLIC_URL = "https://hyojunka.example.lg.jp"
LG_CODE = "131016"  # 千代田区
PROJECT_ID = f"{LG_CODE}-resident_registry"


@dataclass
class People:
    each: t.Person
    daily: t.Person
    approver_none: t.Person
    elsewhere: t.Person
    inactive: t.Person


def add_person(engine: Engine, name: str, email: str, role: str, **fields: Any) -> t.Person:
    with Session(engine) as session:
        person = t.Person(name=name, email=email, email_key=email.lower(), role=role, **fields)
        session.add(person)
        session.commit()
        session.refresh(person)
        return person


def chiyoda_people(engine: Engine) -> People:
    return People(
        each=add_person(engine, "山田 太郎", "Taro.Yamada@example.jp", "pm", lg_code=LG_CODE),
        daily=add_person(
            engine, "佐藤 花子", "hanako@example.jp", "pm", lg_code=LG_CODE, notify="daily"
        ),
        approver_none=add_person(
            engine, "鈴木 部長", "bucho@example.jp", "approver", lg_code=LG_CODE, notify="none"
        ),
        elsewhere=add_person(engine, "中央 一郎", "ichiro@example.jp", "pm", lg_code="131024"),
        inactive=add_person(
            engine, "退職 次郎", "jiro@example.jp", "pm", lg_code=LG_CODE, active=False
        ),
    )


@pytest.fixture
async def mail_queue(
    clock_env: WorkflowEnvironment, engine: Engine, smtp_down: MailServer, tmp_path: Path
) -> AsyncIterator[str]:
    """The real worker, mailing through ``smtp_down`` (started by the test or by
    ``smtp_server``)."""
    settings = Settings(smtp_url=SecretStr(smtp_down.url), public_url=PUBLIC_URL, data_dir=tmp_path)
    queue = f"mail-{uuid.uuid4().hex}"
    async with build_worker(clock_env.client, engine, settings, task_queue=queue) as w, w:
        yield queue


def page_exists(link: str) -> bool:
    """Whether a link is one of the pages' routes (the project page, the escalations page)."""
    from api.web.pages import router

    scope = {"type": "http", "method": "GET", "path": urlsplit(link).path}
    return any(route.matches(scope)[0] == Match.FULL for route in router.routes)


def link_in(body: str) -> str:
    [link] = [line for line in body.splitlines() if line.startswith(PUBLIC_URL + "/")][:1]
    return link


async def test_each_person_of_the_audience_gets_one_message_per_digest_as_they_chose(
    clock_env: WorkflowEnvironment,
    engine: Engine,
    smtp_server: MailServer,
    mail_queue: str,
) -> None:
    env = clock_env
    people = chiyoda_people(engine)
    target = await future_target(env, months=25)
    handle = await start(env.client, mail_queue, new_input(target))
    snap = await describe(handle)
    await finish(handle, "setup_governance")
    due = snap.state.tasks["current_system_survey"].due_date
    assert due is not None
    reminder_at = rung_instant(due, "reminder", snap.state.ladder)
    await env.sleep(reminder_at - await env.get_current_time() + timedelta(minutes=5))
    # Two digests to the body's pm: the deadline notice at registration (alone in its hour,
    # so as it is) and the two reminders of the wave (combined).
    # They gathered with their prefecture's waves and went out as the body's messages.
    prefecture = snap.state.prefecture
    registered = gathering_id(mail_queue, f"{prefecture}.{wave_hour(snap.state.created_at)}")
    hour = reminder_at.astimezone(JST).strftime("%Y%m%d%H")
    wave = f"{LG_CODE}.pm..{hour}"
    gathering = gathering_id(mail_queue, f"{prefecture}.{hour}")
    [deadline] = await env.client.get_workflow_handle(registered).result()
    reminders = await env.client.get_workflow_handle(gathering).result()
    assert len(reminders) == 2
    combined = f"digest.{wave}.2.{reminders[-1]}"

    await smtp_server.wait_for(2)
    await asyncio.sleep(0.5)  # nothing more is coming
    to_taro = smtp_server.to("Taro.Yamada@example.jp")
    assert len(smtp_server.received) == len(to_taro) == 2
    by_subject = {str(m["Subject"]): m for m in to_taro}
    [alone] = [m for s, m in by_subject.items() if s.startswith("【移行期限超過】")]
    [both] = [m for s, m in by_subject.items() if s.startswith("【エスカレーション 2件】")]
    # One notice: its subject, body, system and task, and its project's page.
    body = alone.get_content()
    assert body.startswith("山田 太郎 様\n")
    assert "団体: 東京都千代田区（131016）" in body and "システム: 住民基本台帳" in body
    assert link_in(body) == f"{PUBLIC_URL}/projects/{PROJECT_ID}"
    # The combined one lists both tasks and links to the escalations page.
    body = both.get_content()
    assert "現行システム環境の基礎調査" in body and "連携一覧の作成" in body
    assert link_in(body) == f"{PUBLIC_URL}/escalations"
    for message in to_taro:
        assert page_exists(link_in(message.get_content()))
    # (A Message-ID may be folded onto its own line: the space before it is not part of it.)
    assert {str(m["Message-ID"]).strip() for m in to_taro} == {
        f"<{deadline}/mail.{people.each.id}@hyojunka.example.lg.jp>",
        f"<{combined.replace('..', '.-.')}/mail.{people.each.id}@hyojunka.example.lg.jp>",
    }
    with Session(engine) as session:
        project = session.get(t.Project, PROJECT_ID)
        attempts = session.exec(
            select(t.DeliveryAttempt).where(t.DeliveryAttempt.channel_id == "mail")
        ).all()
        queued = session.exec(select(t.MailQueue).order_by(col(t.MailQueue.id))).all()
    assert project is not None
    assert sorted((a.delivery_id, a.recipient, a.outcome) for a in attempts) == sorted(
        [
            (f"{deadline}/mail", "Taro.Yamada@example.jp", "delivered"),
            (f"{combined}/mail", "Taro.Yamada@example.jp", "delivered"),
        ]
    )
    # The daily reader has both waiting; the others nothing anywhere.
    assert [(q.person_id, q.notification_id) for q in queued] == [
        (people.daily.id, deadline),
        (people.daily.id, combined),
    ]
    # No address in any history: notices name an audience, the delivery finds the people.
    for wid in (registered, gathering, handle.id):
        history = await env.client.get_workflow_handle(wid).fetch_history()
        assert "@example.jp" not in history.to_json(), wid

    # The morning round-up: one message with both, once.
    sent = await env.client.execute_workflow(
        DailyMailWorkflow.run,
        DailyMailInput(any_day=True),
        id=f"daily-mail-{uuid.uuid4().hex[:8]}",
        task_queue=mail_queue,
    )
    assert sent == 1
    [daily] = smtp_server.to("hanako@example.jp")
    assert str(daily["Subject"]).startswith("【本日のお知らせ 2件】")
    text = daily.get_content()
    assert text.startswith("佐藤 花子 様\n")
    assert f"{PUBLIC_URL}/projects/{PROJECT_ID}" in text and f"{PUBLIC_URL}/escalations" in text
    again = await env.client.execute_workflow(
        DailyMailWorkflow.run,
        DailyMailInput(any_day=True),
        id=f"daily-mail-{uuid.uuid4().hex[:8]}",
        task_queue=mail_queue,
    )
    assert again == 0
    assert len(smtp_server.received) == 3
    with Session(engine) as session:
        assert all(q.sent_at is not None for q in session.exec(select(t.MailQueue)))
    for nobody in ("bucho@example.jp", "ichiro@example.jp", "jiro@example.jp"):
        assert smtp_server.to(nobody) == []


async def test_a_mail_server_down_at_first_still_gives_each_person_one_message(
    clock_env: WorkflowEnvironment, engine: Engine, smtp_down: MailServer, mail_queue: str
) -> None:
    """Down at first (nothing listening), then refusing one message (451): the delivery is
    retried, and a retry sends only to those not yet reached, with the same Message-ID."""
    first = add_person(engine, "山田 太郎", "taro@example.jp", "pm", lg_code=LG_CODE)
    second = add_person(engine, "田中 三郎", "saburo@example.jp", "pm", lg_code=LG_CODE)
    vendor = add_person(engine, "業者 四郎", "shiro@acme.example.jp", "vendor", vendor_id="acme")
    add_person(engine, "他社 五郎", "goro@other.example.jp", "vendor", vendor_id="other")
    daily = add_person(
        engine, "佐藤 花子", "hanako@example.jp", "pm", lg_code=LG_CODE, notify="daily"
    )
    note = Notification(
        f"n-{uuid.uuid4().hex[:8]}",
        PROJECT_ID,
        LG_CODE,
        "13",
        "acme",
        "escalation.overdue",
        ["pm", "vendor"],
        "【期限超過】千代田区 住民基本台帳: データ移行",
        "【期限超過】千代田区 住民基本台帳: データ移行（期限 2027-03-01）",
        {"task_key": "data_migration", "task_name": "データ移行", "due_date": "2027-03-01"},
    )
    handle = await clock_env.client.start_workflow(
        NotificationWorkflow.run, note, id=f"notify-{note.id}", task_queue=mail_queue
    )

    def attempts() -> list[tuple[int, str | None, str]]:
        with Session(engine) as session:
            rows = session.exec(select(t.DeliveryAttempt).order_by(col(t.DeliveryAttempt.id))).all()
        return [(a.attempt, a.recipient, a.outcome) for a in rows]

    for _ in range(200):  # the first attempt fails at once; its retry is 10 s away
        if len(attempts()) == 3:
            break
        await asyncio.sleep(0.05)
    assert attempts() == [
        (1, "taro@example.jp", "failed"),
        (1, "saburo@example.jp", "failed"),
        (1, "shiro@acme.example.jp", "failed"),
    ]
    smtp_down.refuse_first = 1  # the next message is refused for now
    await asyncio.to_thread(smtp_down.start)
    assert await handle.result() == 1  # the one channel (mail) delivered

    assert attempts()[3:] == [
        (2, "taro@example.jp", "failed"),
        (2, "saburo@example.jp", "delivered"),
        (2, "shiro@acme.example.jp", "delivered"),
        (3, "taro@example.jp", "delivered"),
    ]
    for address in ("taro@example.jp", "saburo@example.jp", "shiro@acme.example.jp"):
        [message] = smtp_down.to(address)
        assert str(message["Subject"]) == note.subject
        assert "作業: データ移行（期限 2027-03-01）" in message.get_content()
    assert smtp_down.to("goro@other.example.jp") == smtp_down.to("hanako@example.jp") == []
    [taro] = smtp_down.to("taro@example.jp")
    assert str(taro["Message-ID"]).strip() == f"<{note.id}/mail.{first.id}@hyojunka.example.lg.jp>"
    with Session(engine) as session:
        queued = session.exec(select(t.MailQueue)).all()
    assert [(q.person_id, q.notification_id) for q in queued] == [(daily.id, note.id)]
    assert second.id != first.id and vendor.id is not None


def test_an_audience_means_the_active_people_of_its_roles_and_scope(engine: Engine) -> None:
    pm = add_person(engine, "pm", "pm@example.jp", "pm", lg_code=LG_CODE)
    approver = add_person(engine, "approver", "ap@example.jp", "approver", lg_code=LG_CODE)
    add_person(engine, "approver elsewhere", "ap2@example.jp", "approver", lg_code="131024")
    liaison = add_person(engine, "liaison", "pref@example.jp", "prefecture", prefecture="13")
    add_person(engine, "other liaison", "pref27@example.jp", "prefecture", prefecture="27")
    vendor = add_person(engine, "vendor", "v@acme.example.jp", "vendor", vendor_id="acme")
    add_person(engine, "admin", "admin@example.jp", "admin")
    add_person(engine, "left", "left@example.jp", "approver", lg_code=LG_CODE, active=False)

    def to(*audience: str, vendor_id: str | None = "acme") -> list[int | None]:
        note = Notification("n", PROJECT_ID, LG_CODE, "13", vendor_id, "k", list(audience), "", "")
        return [p.id for p in audience_people(engine, note)]

    assert to("pm") == [pm.id]
    assert to("approver") == [approver.id]
    assert to("prefecture") == [liaison.id]
    assert to("pm", "vendor") == [pm.id, vendor.id]
    assert to("pm", "vendor", vendor_id=None) == [pm.id]
    assert to("observer") == []
