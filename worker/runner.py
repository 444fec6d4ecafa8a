"""The worker: workflows plus activities built once with their shared dependencies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.notifications import NotificationActivities
from activities.projection import ReadModelActivities
from readmodel.channels import parse_channels
from readmodel.settings import Settings
from workflows.migration import MigrationWorkflow
from workflows.notification import NotificationWorkflow
from workflows.survey import SCHEDULE_ID, SurveyReminderInput, SurveyReminderWorkflow

WORKFLOWS = [MigrationWorkflow, NotificationWorkflow, SurveyReminderWorkflow]


@contextlib.asynccontextmanager
async def build_worker(
    client: Client, engine: Engine, settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A worker with every workflow and activity; closes its HTTP client on exit."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
        readmodel = ReadModelActivities(engine)
        notifications = NotificationActivities(
            engine, http, parse_channels(settings.channels), settings.public_url
        )
        with ThreadPoolExecutor(max_workers=8) as executor:
            yield Worker(
                client,
                task_queue=task_queue or settings.task_queue,
                workflows=WORKFLOWS,
                activities=[
                    readmodel.project_migration,
                    readmodel.find_stale_tasks,
                    notifications.resolve_channels,
                    notifications.deliver_notification,
                ],
                activity_executor=executor,
                workflow_runner=SandboxedWorkflowRunner(
                    restrictions=SandboxRestrictions.default.with_passthrough_modules(
                        "workflows", "jpholiday"
                    )
                ),
            )


async def ensure_survey_schedule(client: Client, task_queue: str) -> None:
    """The monthly reminder schedule: 09:00 JST on days 1-7; created once, kept if present."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            SurveyReminderWorkflow.run,
            SurveyReminderInput(),
            id="survey-reminder-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_month=[ScheduleRange(1, 7)],
                    hour=[ScheduleRange(9)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                )
            ],
            time_zone_name="Asia/Tokyo",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        pass
