"""Notifications reach a real HTTP receiver that is down at first, with stable delivery ids."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.handover import HandOverActivities
from readmodel import tables as t
from runtime.settings import Settings
from tests.receiver import Receiver
from tests.workflows.helpers import describe, finish, future_target, new_input, start
from worker.runner import build_worker
from workflows.calendar import JST
from workflows.digest import gathering_id, wave_hour
from workflows.ladder import rung_instant
from workflows.model import Notification
from workflows.notification import NotificationWorkflow


async def sent(env: WorkflowEnvironment, messages: list[str]) -> None:
    """Wait until each message's own NotificationWorkflow has delivered it (time skipping
    through its channels' retries)."""
    for message in messages:
        handle = env.client.get_workflow_handle(f"notify-{message}")
        for _ in range(120):
            try:
                if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                    break
            except RPCError:
                pass  # not started yet
            await env.sleep(timedelta(seconds=30))
        await handle.result()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=5) as r:
        yield r


@pytest.fixture
async def task_queue(
    clock_env: WorkflowEnvironment, engine: Engine, receiver: Receiver
) -> AsyncIterator[str]:
    channels = json.dumps(
        [
            {"id": "hook", "kind": "webhook", "url": f"{receiver.url}/hook"},
            {"id": "chat", "kind": "slack", "url": f"{receiver.url}/slack"},
        ]
    )
    # The receiver is on loopback, which only an allow-list opens.
    settings = Settings(
        channels=channels,
        public_url="https://hyojunka.example.lg.jp",
        outbound_allow="127.0.0.0/8",
    )
    queue = f"tq-{uuid.uuid4().hex}"
    async with build_worker(clock_env.client, engine, settings, task_queue=queue) as w:
        async with w:
            yield queue


async def test_receiver_down_at_first_still_gets_every_notification_once_recovered(
    clock_env: WorkflowEnvironment, task_queue: str, engine: Engine, receiver: Receiver
) -> None:
    env = clock_env
    target = await future_target(env, months=25)
    handle = await start(env.client, task_queue, new_input(target))
    snap = await describe(handle)
    # The channel is failing, yet the project moves on.
    await finish(handle, "setup_governance")
    due = snap.state.tasks["current_system_survey"].due_date
    assert due is not None
    reminder_at = rung_instant(due, "reminder", snap.state.ladder)
    await env.sleep(reminder_at - await env.get_current_time() + timedelta(minutes=5))
    snap = await describe(handle)
    reminders = [e.id for e in snap.state.escalations]
    assert len(reminders) == 2  # the survey's and the inventory's, in the same wave
    # The two reminders to the pm go out as one message: the digest of the body's wave.
    # They gather with the prefecture's wave, and go out as the body's message to its pm.
    hour = reminder_at.astimezone(JST).strftime("%Y%m%d%H")
    key = f"{snap.state.lg_code}.pm..{hour}"
    wave = gathering_id(task_queue, f"{snap.state.prefecture}.{hour}")
    gathered = await env.client.get_workflow_handle(wave).result()
    assert sorted(gathered) == sorted(reminders)
    digest = f"digest.{key}.2.{gathered[-1]}"
    # The deadline notice went at registration through the gathering of that hour, alone in
    # it, and so as it is.
    deadline = f"{snap.state.project_id}.deadline.2026-03-31"
    registered = f"{snap.state.prefecture}.{wave_hour(snap.state.created_at)}"
    registration = env.client.get_workflow_handle(gathering_id(task_queue, registered))
    assert await registration.result() == [deadline]
    notes = [deadline, digest]
    await sent(env, notes)  # each message by a workflow of its own, through the failures

    calls = receiver.calls
    assert [c["answered"] for c in calls[:5]] == [503] * 5
    by_delivery: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        by_delivery.setdefault(c["delivery"], []).append(c)
    assert set(by_delivery) == {f"{n}/{ch}" for n in notes for ch in ("hook", "chat")}
    for delivery, attempts in by_delivery.items():
        assert attempts[-1]["answered"] == 200, delivery
        assert [a["answered"] for a in attempts[:-1]] == [503] * (len(attempts) - 1)
        assert all(a["body"] == attempts[0]["body"] for a in attempts)  # a true repeat
    hook = by_delivery[f"{digest}/hook"][-1]["body"]
    assert hook["kind"] == "escalation.digest"
    survey = next(i for i in hook["data"]["items"] if i["task_key"] == "current_system_survey")
    assert survey["due_date"] == due.isoformat()
    slack = by_delivery[f"{digest}/chat"][-1]["body"]["text"]
    assert "現行システム環境の基礎調査" in slack and "連携一覧の作成" in slack
    assert "千代田区" in slack and "2件" in slack
    assert "https://hyojunka.example.lg.jp/escalations" in slack

    with Session(engine) as session:
        attempts = session.exec(select(t.DeliveryAttempt).order_by(t.DeliveryAttempt.id)).all()
    assert len(attempts) == len(calls)
    assert sum(a.outcome == "failed" for a in attempts) == 5
    assert {a.delivery_id for a in attempts if a.outcome == "delivered"} == set(by_delivery)


async def test_a_bodys_projects_registered_past_the_deadline_tell_its_pm_in_one_message(
    clock_env: WorkflowEnvironment, task_queue: str, receiver: Receiver
) -> None:
    """An import of a body's projects, each going live after the legal deadline: one
    message to the body's PM lists every system, instead of one message per project."""
    from dataclasses import replace

    from workflows.businesses import BY_SLUG

    env = clock_env
    target = await future_target(env, months=25)
    slugs = ["resident_registry", "individual_resident_tax", "child_allowance"]
    handles = [
        await start(
            env.client,
            task_queue,
            replace(new_input(target), business=slug, business_name=BY_SLUG[slug].name),
        )
        for slug in slugs
    ]
    snap = await describe(handles[0])
    key = f"{snap.state.prefecture}.{wave_hour(snap.state.created_at)}"
    digest = env.client.get_workflow_handle(gathering_id(task_queue, key))
    for _ in range(60):  # it gathers, then delivers through a receiver failing at first
        if (await digest.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await env.sleep(timedelta(minutes=1))
    gathered = await digest.result()
    deadlines = {f"131016-{slug}.deadline.2026-03-31" for slug in slugs}
    assert deadlines <= set(gathered)
    body_key = f"{snap.state.lg_code}.pm..{wave_hour(snap.state.created_at)}"
    await sent(env, [f"digest.{body_key}.{len(gathered)}.{gathered[-1]}"])
    messages = [c["body"] for c in receiver.calls if c["answered"] == 200 and c["path"] == "/hook"]
    [message] = [m for m in messages if m["kind"] == "digest"]
    assert message["subject"].startswith(f"【期限のお知らせ {len(gathered)}件】")
    assert message["data"]["kinds"].count("deadline.exceeded") == 3
    for name in ("住民基本台帳", "個人住民税", "児童手当"):
        assert name in message["text"]
    # And no notification of its own for any of them.
    for note in deadlines:
        with pytest.raises(RPCError):
            await env.client.get_workflow_handle(f"notify-{note}").describe()


def _projection_outcomes(history: Any) -> list[str]:
    """What each of a project's projections answered, as its markers recorded it."""
    out = []
    for e in history.events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = e.marker_recorded_event_attributes.details
        if b'"activity_type":"project_migration"' in details["data"].payloads[0].data:
            out.append(json.loads(details["result"].payloads[0].data))
    return out


async def test_a_hand_over_that_fails_is_retried_with_its_projection_and_each_notice_goes_once(
    clock_env: WorkflowEnvironment,
    task_queue: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A project of the sixth rules hands a turn's notices over in the local activity that
    writes the turn. When the gathering cannot be signalled (Temporal unavailable for a
    moment), the activity fails after its write; its retry finds the write applied, so the
    whole truth is written again with the same notices, and each notice is gathered once."""
    failed: list[list[str]] = []
    signal = HandOverActivities._gathering

    async def unavailable_once(self: HandOverActivities, group: list[Any], queue: str) -> None:
        ids = [item.note.id for item in group]
        if ids not in failed:
            failed.append(ids)
            raise RPCError("the gathering could not be signalled", RPCStatusCode.UNAVAILABLE, b"")
        await signal(self, group, queue)

    monkeypatch.setattr(HandOverActivities, "_gathering", unavailable_once)
    env = clock_env
    target = await future_target(env, months=25)  # past the legal deadline: a notice at once
    handle = await start(env.client, task_queue, new_input(target))
    snap = await describe(handle)
    deadline = f"{snap.state.project_id}.deadline.2026-03-31"
    registered = f"{snap.state.prefecture}.{wave_hour(snap.state.created_at)}"
    registration = env.client.get_workflow_handle(gathering_id(task_queue, registered))
    for _ in range(60):  # it gathers for its window, then delivers
        if (await registration.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await env.sleep(timedelta(minutes=1))
    assert await registration.result() == [deadline]  # once, though its first signal failed

    # A later turn: the reminders' wave, written as a change since the last write.
    await finish(handle, "setup_governance")
    due = snap.state.tasks["current_system_survey"].due_date
    assert due is not None
    reminder_at = rung_instant(due, "reminder", snap.state.ladder)
    await env.sleep(reminder_at - await env.get_current_time() + timedelta(minutes=5))
    reminders = sorted(e.id for e in (await describe(handle)).state.escalations)
    assert len(reminders) == 2
    hour = reminder_at.astimezone(JST).strftime("%Y%m%d%H")
    wave = env.client.get_workflow_handle(
        gathering_id(task_queue, f"{snap.state.prefecture}.{hour}")
    )
    assert sorted(await wave.result()) == reminders
    assert failed == [[deadline], reminders]

    outcomes = _projection_outcomes(await handle.fetch_history())
    # Registration: its whole write applied again on the retry, then handed over. The wave:
    # the retried change found the read model moved (resync), so the whole truth went again
    # with the reminders.
    assert outcomes[0] == "applied-and-handed-over"
    assert ["resync", "applied-and-handed-over"] in [
        outcomes[i : i + 2] for i in range(len(outcomes))
    ]
    with Session(engine) as session:
        rows = session.exec(
            select(t.Escalation.id).where(t.Escalation.project_id == snap.state.project_id)
        ).all()
    assert sorted(rows) == reminders


async def test_a_prefecture_s_bodies_late_in_the_same_hour_gather_once_and_each_pm_hears_its_own(
    clock_env: WorkflowEnvironment, task_queue: str, receiver: Receiver
) -> None:
    """Two Tokyo bodies register two late systems each within the hour: one gathering for
    the prefecture's hour takes all four notices, and each body's pm gets one message that
    lists its own systems and nothing of the other body's."""
    from workflows.businesses import BY_SLUG

    env = clock_env
    target = await future_target(env, months=25)
    bodies = {"131016": "千代田区", "131024": "中央区"}
    slugs = ["resident_registry", "child_allowance"]
    handles = [
        await start(
            env.client,
            task_queue,
            replace(
                new_input(target, lg_code=code),
                body_name=name,
                business=slug,
                business_name=BY_SLUG[slug].name,
            ),
        )
        for code, name in bodies.items()
        for slug in slugs
    ]
    snap = await describe(handles[0])
    gathering = env.client.get_workflow_handle(
        gathering_id(task_queue, f"13.{wave_hour(snap.state.created_at)}")
    )
    for _ in range(60):  # it gathers, then delivers through a receiver failing at first
        if (await gathering.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await env.sleep(timedelta(minutes=1))
    gathered = await gathering.result()
    assert sorted(gathered) == sorted(
        f"{code}-{slug}.deadline.2026-03-31" for code in bodies for slug in slugs
    )
    hour = wave_hour(snap.state.created_at)
    each = {code: [n for n in gathered if n.startswith(code)] for code in bodies}
    await sent(env, [f"digest.{c}.pm..{hour}.2.{notes[-1]}" for c, notes in each.items()])
    messages = [c["body"] for c in receiver.calls if c["answered"] == 200 and c["path"] == "/hook"]
    by_body = {m["lg_code"]: m for m in messages}
    assert len(messages) == len(by_body) == 2, [m["subject"] for m in messages]
    for code, name in bodies.items():
        message = by_body[code]
        assert message["kind"] == "digest"
        assert message["subject"].startswith("【期限のお知らせ 2件】")
        assert message["data"]["notifications"] == [
            f"{code}-{slug}.deadline.2026-03-31" for slug in slugs
        ]
        other = next(n for c, n in bodies.items() if c != code)
        assert name in message["text"] and other not in message["text"]
    # No gathering of a body's own was started.
    for code in bodies:
        with pytest.raises(RPCError):
            key = f"{code}.pm..{wave_hour(snap.state.created_at)}"
            await env.client.get_workflow_handle(f"digest-{key}").describe()


async def test_a_channel_s_address_never_enters_a_history_and_a_removed_one_hears_nothing(
    clock_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    """A Slack hook's address is its secret: the notification's history names the channel by
    id only (the Temporal UI shows histories to its users), and the delivery looks the
    address up as it sends, so a channel removed meanwhile hears nothing more."""
    secret = uuid.uuid4().hex
    with Receiver(fail_first=0) as body_receiver:
        with Session(engine) as session:
            session.add(
                t.NotificationChannel(
                    id=f"slack-{secret[:6]}",
                    kind="slack",
                    url=f"{body_receiver.url}/services/T000/{secret}",
                    lg_code="131016",
                )
            )
            session.commit()
        note = Notification(
            f"n-{secret[:8]}",
            "131016-resident_registry",
            "131016",
            "13",
            "acme",
            "escalation.overdue",
            ["pm"],
            "【期限超過】千代田区",
            "【期限超過】千代田区 本文",
        )
        first = await clock_env.client.execute_workflow(
            NotificationWorkflow.run, note, id=f"notify-{note.id}", task_queue=task_queue
        )
        assert first == 3  # the two configured channels and the body's
        assert [c["path"] for c in body_receiver.calls] == [f"/services/T000/{secret}"]
        history = await clock_env.client.get_workflow_handle(f"notify-{note.id}").fetch_history()
        assert secret not in history.to_json()
        with Session(engine) as session:
            session.delete(session.get(t.NotificationChannel, f"slack-{secret[:6]}"))
            session.commit()
        # Removed: a later notice does not reach it.
        later = replace(note, id=f"n2-{secret[:8]}")
        second = await clock_env.client.execute_workflow(
            NotificationWorkflow.run, later, id=f"notify-{later.id}", task_queue=task_queue
        )
        assert second == 2 and len(body_receiver.calls) == 1
