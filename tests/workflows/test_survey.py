"""The monthly survey reminder: on the first working day only, listing tasks that sat still."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from runtime.settings import Settings
from tests.receiver import Receiver
from tests.workflows.helpers import future_target, new_input, start
from worker.runner import build_worker, ensure_survey_schedule
from workflows.calendar import JST, add_months
from workflows.core import TaskChange
from workflows.migration import MigrationWorkflow
from workflows.survey import (
    SCHEDULE_ID,
    SurveyReminderInput,
    SurveyReminderWorkflow,
    first_working_day,
)


@pytest.fixture
async def setup(
    clock_env: WorkflowEnvironment, engine: Engine
) -> AsyncIterator[tuple[str, Receiver]]:
    with Receiver(fail_first=0) as receiver:
        channels = json.dumps([{"id": "hook", "kind": "webhook", "url": receiver.url}])
        queue = f"tq-{uuid.uuid4().hex}"
        settings = Settings(channels=channels, outbound_allow="127.0.0.0/8")  # a local receiver
        async with build_worker(clock_env.client, engine, settings, task_queue=queue) as w:
            async with w:
                yield queue, receiver


async def run_survey(env: WorkflowEnvironment, queue: str) -> int:
    """Run one reminder at the server's current time. Awaiting a result lets the
    time-skipping server jump to the next timer, so poll until it has finished."""
    handle = await env.client.start_workflow(
        SurveyReminderWorkflow.run,
        SurveyReminderInput(),
        id=f"s-{uuid.uuid4().hex}",
        task_queue=queue,
    )
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    # Even a finished handle's result() unlocks skipping for a moment; read history instead.
    events = [e async for e in handle.fetch_history_events()]
    done = events[-1].workflow_execution_completed_event_attributes
    [told] = await env.client.data_converter.decode(done.result.payloads, [int])
    return int(told)


async def test_first_working_day_lists_tasks_unmoved_for_a_month(
    clock_env: WorkflowEnvironment, setup: tuple[str, Receiver]
) -> None:
    env = clock_env
    queue, receiver = setup
    handle = await start(env.client, queue, new_input(await future_target(env, months=30)))
    now = (await env.get_current_time()).astimezone(JST)
    month = add_months(now.date().replace(day=1), 2)
    survey_day = first_working_day(month.year, month.month)
    await env.sleep(datetime.combine(survey_day - timedelta(days=3), time(9), JST) - now)
    # Any other day it stays quiet.
    quiet = await run_survey(env, queue)
    assert quiet == 0
    # Touched three days before the survey: not stale.
    await handle.execute_update(
        MigrationWorkflow.change_task,
        TaskChange("setup_governance", "in_progress", "pm:test", "pm"),
    )
    await env.sleep(datetime.combine(survey_day, time(9, 0), JST) - await env.get_current_time())
    told = await run_survey(env, queue)
    assert told == 1
    note_id = f"survey.131016.{survey_day.strftime('%Y-%m')}"
    assert await env.client.get_workflow_handle(f"notify-{note_id}").result() == 1
    [call] = [c for c in receiver.calls if c["body"]["kind"] == "survey.reminder"]
    listed = {t["task_key"] for t in call["body"]["data"]["tasks"]}
    assert "setup_governance" not in listed
    assert "current_system_survey" in listed and "rfp" not in listed
    assert len(listed) == 21  # 23 tasks, less RFP (not applicable) and the one just touched
    assert "1か月以上動いていない作業が21件" in call["body"]["subject"]


async def test_schedule_runs_on_days_one_to_seven_at_nine_tokyo(
    dev_env: WorkflowEnvironment,
) -> None:
    await ensure_survey_schedule(dev_env.client, "migrations")
    await ensure_survey_schedule(dev_env.client, "migrations")  # idempotent
    desc = await dev_env.client.get_schedule_handle(SCHEDULE_ID).describe()
    spec = desc.schedule.spec
    assert spec.time_zone_name == "Asia/Tokyo"
    [cal] = spec.calendars
    assert [(r.start, r.end) for r in cal.day_of_month] == [(1, 7)]
    assert [r.start for r in cal.hour] == [9]
    assert isinstance(desc.schedule.action, ScheduleActionStartWorkflow)
    assert desc.schedule.action.workflow == "SurveyReminderWorkflow"
    upcoming = desc.info.next_action_times
    assert upcoming and all(1 <= t.astimezone(JST).day <= 7 for t in upcoming)
