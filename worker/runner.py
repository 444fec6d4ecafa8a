"""The worker: workflows plus activities built once with their shared dependencies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.handover import HandOverActivities
from activities.mail import MailActivities
from activities.notifications import NotificationActivities
from activities.outbound import guarded_client
from activities.procurement import ProcurementActivities
from activities.programme import ProgrammeActivities
from activities.projection import ReadModelActivities
from activities.reconcile import ReconcileActivities
from activities.rollout import RolloutActivities
from activities.snapshot import SnapshotActivities
from readmodel.channels import parse_channels
from runtime.mail import MailSender
from runtime.settings import Settings
from worker.health import serving_health
from worker.payload_passes import install as skip_inert_payload_passes
from workflows.digest import DigestWorkflow
from workflows.mail import SCHEDULE_ID as DAILY_MAIL_SCHEDULE_ID
from workflows.mail import DailyMailInput, DailyMailWorkflow
from workflows.migration import MigrationWorkflow
from workflows.notification import NotificationWorkflow
from workflows.procurement import JointProcurementWorkflow
from workflows.programme import SCHEDULE_ID as PROGRAMME_SCHEDULE_ID
from workflows.programme import FollowInput, ProgrammeFollowWorkflow
from workflows.reconcile import SCHEDULE_ID as RECONCILE_SCHEDULE_ID
from workflows.reconcile import ReconcileInput, ReconcileWorkflow
from workflows.rollout import RolloutWorkflow
from workflows.snapshot import SCHEDULE_ID as SNAPSHOT_SCHEDULE_ID
from workflows.snapshot import ProgressSnapshotWorkflow, SnapshotInput
from workflows.survey import SCHEDULE_ID, SurveyReminderInput, SurveyReminderWorkflow

WORKFLOWS = [
    MigrationWorkflow,
    NotificationWorkflow,
    SurveyReminderWorkflow,
    ReconcileWorkflow,
    JointProcurementWorkflow,
    ProgressSnapshotWorkflow,
    DigestWorkflow,
    DailyMailWorkflow,
    RolloutWorkflow,
    ProgrammeFollowWorkflow,
]


@contextlib.asynccontextmanager
async def build_worker(
    client: Client, engine: Engine, settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A worker with every workflow and activity; closes its HTTP client on exit."""
    skip_inert_payload_passes()
    policy = settings.outbound_policy
    queue = task_queue or settings.task_queue
    # Checking the channels may resolve their names: not on the event loop.
    channels = await asyncio.to_thread(parse_channels, settings.channels, policy)
    # A malformed HYOJUNKA_SMTP_URL stops the worker here, naming the setting.
    mail = MailSender.from_settings(settings)
    async with guarded_client(policy, timeout=httpx.Timeout(10.0)) as http:
        hand_overs = HandOverActivities(client)
        readmodel = ReadModelActivities(engine, hand_overs.hand_over_notices)
        notifications = NotificationActivities(
            engine, http, channels, settings.public_url, mail=mail
        )
        mails = MailActivities(engine, mail, settings.public_url)
        reconcile = ReconcileActivities(client, engine, queue)
        procurements = ProcurementActivities(client, engine)
        snapshots = SnapshotActivities(engine)
        rollouts = RolloutActivities(client, engine)
        programmes = ProgrammeActivities(client, engine)
        # Every activity is async (blocking work goes to threads inside it): no executor.
        try:
            worker = Worker(
                client,
                task_queue=queue,
                workflows=WORKFLOWS,
                activities=[
                    readmodel.project_migration,
                    readmodel.find_stale_tasks,
                    notifications.resolve_channels,
                    notifications.deliver_notification,
                    hand_overs.hand_over_notices,
                    mails.send_daily_mail,
                    reconcile.reconcile_read_model,
                    procurements.project_procurement,
                    procurements.procurement_member_update,
                    snapshots.snapshot_progress,
                    programmes.follow_programme_items,
                    rollouts.rollout_page,
                    rollouts.rollout_move_project,
                    rollouts.project_rollout,
                ],
                max_cached_workflows=settings.worker_max_cached_workflows,
                max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                max_concurrent_local_activities=settings.worker_max_concurrent_local_activities,
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                sticky_queue_schedule_to_start_timeout=timedelta(
                    seconds=settings.worker_sticky_timeout
                ),
                # Workflows run without the sandbox: it re-imported our modules for every new
                # run and wraps every payload conversion in its import guard, together most of
                # the worker's CPU under load (README.md, "Under load and faults"). What the
                # sandbox guarded is kept by tests instead: workflows/ imports nothing that does
                # I/O (tests/test_workflow_purity.py) and recorded histories replay in CI.
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
            async with serving_health(settings.worker_health_address, worker, client):
                yield worker
        finally:
            readmodel.close()


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
    await _keep_schedule(client, SCHEDULE_ID, schedule)


async def _keep_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Create ``schedule`` unless it exists (an operator's changes to it are kept)."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        pass


async def ensure_schedules(client: Client, task_queue: str) -> None:
    """Every Schedule this deployment runs, created once and kept if present.

    Every worker calls it as it starts, several at once under ``up --workers N`` or with
    replicas: a schedule's id is unique on the server, which creates it for one caller and
    tells the others it exists (tests/test_workers.py)."""
    await ensure_survey_schedule(client, task_queue)
    await ensure_reconcile_schedule(client, task_queue)
    await ensure_snapshot_schedule(client, task_queue)
    await ensure_daily_mail_schedule(client, task_queue)
    await ensure_programme_follow_schedule(client, task_queue)


async def ensure_programme_follow_schedule(client: Client, task_queue: str) -> None:
    """Every ten minutes: a body's DX plan follows its migration projects (its item ②)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ProgrammeFollowWorkflow.run,
            FollowInput(),
            id="programme-follow-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=10))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await _keep_schedule(client, PROGRAMME_SCHEDULE_ID, schedule)


async def ensure_daily_mail_schedule(client: Client, task_queue: str) -> None:
    """The daily round-up of notices by mail: 09:30 JST Monday to Friday, after the 09:00
    wave of rungs has gathered (its activity leaves out holidays)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            DailyMailWorkflow.run,
            DailyMailInput(),
            id="daily-mail-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_week=[ScheduleRange(1, 5)],
                    hour=[ScheduleRange(9)],
                    minute=[ScheduleRange(30)],
                    second=[ScheduleRange(0)],
                )
            ],
            time_zone_name="Asia/Tokyo",
        ),
        # A round-up still retrying a mail server that is down is left to finish.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await _keep_schedule(client, DAILY_MAIL_SCHEDULE_ID, schedule)


async def ensure_snapshot_schedule(client: Client, task_queue: str) -> None:
    """The monthly progress snapshot: 23:30 JST on days 28-31 (the run on a month's last
    day stores it; the others end at once)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ProgressSnapshotWorkflow.run,
            SnapshotInput(),
            id="monthly-progress-snapshot-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_month=[ScheduleRange(28, 31)],
                    hour=[ScheduleRange(23)],
                    minute=[ScheduleRange(30)],
                    second=[ScheduleRange(0)],
                )
            ],
            time_zone_name="Asia/Tokyo",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await _keep_schedule(client, SNAPSHOT_SCHEDULE_ID, schedule)


async def ensure_reconcile_schedule(
    client: Client, task_queue: str, share: int = ReconcileInput.share
) -> None:
    """The nightly reconciliation of the read model: 03:00 JST, when nobody is at work; each
    night one project in ``share``."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            ReconcileInput(share=share),
            id="read-model-reconciliation-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(3)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                )
            ],
            time_zone_name="Asia/Tokyo",
        ),
        # A night's run still going the next night is left to finish.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await _keep_schedule(client, RECONCILE_SCHEDULE_ID, schedule)
