"""The daily round-up: its Schedule (09:30 JST, Monday to Friday), and its activity, which
sends nothing on a Japanese holiday and sends each reader's queue once."""

from __future__ import annotations

import email.policy
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.mail import MailActivities
from readmodel import tables as t
from runtime.mail import MailSender
from runtime.settings import Settings
from tests.mail.conftest import MailServer
from worker.runner import ensure_daily_mail_schedule
from workflows.calendar import JST
from workflows.mail import SCHEDULE_ID, DailyMailRequest

NEW_YEAR = date(2027, 1, 1)  # 元日, a Friday
WORKING_DAY = date(2027, 1, 6)  # a Wednesday


async def test_schedule_runs_at_half_past_nine_tokyo_on_weekdays(
    dev_env: WorkflowEnvironment,
) -> None:
    await ensure_daily_mail_schedule(dev_env.client, "migrations")
    await ensure_daily_mail_schedule(dev_env.client, "migrations")  # idempotent
    desc = await dev_env.client.get_schedule_handle(SCHEDULE_ID).describe()
    spec = desc.schedule.spec
    assert spec.time_zone_name == "Asia/Tokyo"
    [cal] = spec.calendars
    assert [(r.start, r.end) for r in cal.day_of_week] == [(1, 5)]
    assert [r.start for r in cal.hour] == [9] and [r.start for r in cal.minute] == [30]
    assert isinstance(desc.schedule.action, ScheduleActionStartWorkflow)
    assert desc.schedule.action.workflow == "DailyMailWorkflow"
    upcoming = [u.astimezone(JST) for u in desc.info.next_action_times]
    assert upcoming and all(u.weekday() < 5 and (u.hour, u.minute) == (9, 30) for u in upcoming)


def queue_for(engine: Engine, person: t.Person, *notices: str) -> None:
    with Session(engine) as session:
        for n in notices:
            session.add(
                t.MailQueue(
                    person_id=person.id or 0,
                    notification_id=n,
                    project_id="131016-resident_registry",
                    subject=f"【期限超過】千代田区 住民基本台帳: {n}",
                    text=f"本文 {n}",
                    link="https://hyojunka.example.lg.jp/projects/131016-resident_registry",
                    queued_at=datetime.now(UTC),
                )
            )
        session.commit()


def person(engine: Engine, email: str, **fields: object) -> t.Person:
    with Session(engine) as session:
        row = t.Person(
            name="佐藤 花子",
            email=email,
            email_key=email,
            role="pm",
            lg_code="131016",
            notify="daily",
        )
        for k, v in fields.items():
            setattr(row, k, v)
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


async def test_round_up_waits_out_holidays_and_goes_once(
    engine: Engine, smtp_server: MailServer, tmp_path: Path
) -> None:
    settings = Settings(smtp_url=SecretStr(smtp_server.url), data_dir=tmp_path)
    mails = MailActivities(engine, MailSender.from_settings(settings), "https://h.example.lg.jp")
    reader = person(engine, "hanako@example.jp")
    left = person(engine, "left@example.jp", active=False)
    silent = person(engine, "silent@example.jp", notify="none")
    for p in (reader, left, silent):
        queue_for(engine, p, "a", "b")
    env = ActivityEnvironment()

    assert await env.run(mails.send_daily_mail, DailyMailRequest(NEW_YEAR)) == 0
    assert smtp_server.received == []
    assert await env.run(mails.send_daily_mail, DailyMailRequest(NEW_YEAR, any_day=True)) == 1
    assert await env.run(mails.send_daily_mail, DailyMailRequest(WORKING_DAY)) == 0  # sent
    [got] = smtp_server.received
    assert got.recipients == ["hanako@example.jp"]
    assert got.message["Subject"] == "【本日のお知らせ 2件】1月1日"
    raw = got.message.as_bytes(policy=email.policy.SMTP)
    assert b"hanako@example.jp" in raw
    text = got.message.get_content()
    assert "住民基本台帳: a" in text and "住民基本台帳: b" in text

    queue_for(engine, reader, "c")
    assert await env.run(mails.send_daily_mail, DailyMailRequest(WORKING_DAY)) == 1
    assert smtp_server.received[-1].message["Subject"] == "【本日のお知らせ 1件】1月6日"
    with Session(engine) as session:
        rows = session.exec(select(t.MailQueue)).all()
    # What was sent is marked; what the inactive and the silent had waits, unsent.
    assert sorted((r.person_id, r.notification_id, r.sent_at is not None) for r in rows) == sorted(
        [(reader.id, n, True) for n in "abc"]
        + [(p.id, n, False) for p in (left, silent) for n in "ab"]
    )
