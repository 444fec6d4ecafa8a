"""The monthly nudge before MIC's survey: each body's PM hears of tasks that have not moved.

A Temporal Schedule starts SurveyReminderWorkflow at 09:00 JST on days 1-7 of every month;
the workflow acts only on the month's first working day, which no cron expression can say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from temporalio import workflow

from workflows import notification
from workflows.calendar import is_working_day, jst_today
from workflows.model import Notification

STALE_TASKS_ACTIVITY = "find_stale_tasks"
SCHEDULE_ID = "survey-reminder"


def first_working_day(year: int, month: int) -> date:
    d = date(year, month, 1)
    while not is_working_day(d):
        d += timedelta(days=1)
    return d


@dataclass
class StaleTask:
    project_id: str
    business_name: str
    task_key: str
    task_name: str
    status: str
    updated_at: datetime | None


@dataclass
class StaleBody:
    lg_code: str
    prefecture: str
    body_name: str
    tasks: list[StaleTask] = field(default_factory=list)


@dataclass
class SurveyReminderInput:
    stale_after_days: int = 30


@workflow.defn
class SurveyReminderWorkflow:
    @workflow.run
    async def run(self, inp: SurveyReminderInput) -> int:
        """Returns how many bodies were told; 0 on any day but the first working day."""
        today = jst_today(workflow.now())
        if today != first_working_day(today.year, today.month):
            return 0
        cutoff = workflow.now() - timedelta(days=inp.stale_after_days)
        bodies: list[StaleBody] = await workflow.execute_activity(
            STALE_TASKS_ACTIVITY,
            cutoff,
            result_type=list[StaleBody],
            start_to_close_timeout=timedelta(minutes=5),
        )
        for body in bodies:
            # Once a month a body: a repeat of this month's reminder was sent already.
            await notification.send(_reminder(body, today))
        return len(bodies)


def _reminder(body: StaleBody, today: date) -> Notification:
    projects = sorted({t.project_id for t in body.tasks})
    subject = (
        f"【月次調査前の確認】{body.body_name}: 1か月以上動いていない作業が{len(body.tasks)}件"
    )
    lines = [subject] + [
        f"・{t.business_name} {t.task_name}（{t.status}）" for t in body.tasks[:30]
    ]
    if len(body.tasks) > 30:
        lines.append(f"ほか{len(body.tasks) - 30}件")
    return Notification(
        id=f"survey.{body.lg_code}.{today.strftime('%Y-%m')}",
        project_id=projects[0],
        lg_code=body.lg_code,
        prefecture=body.prefecture,
        vendor_id=None,
        kind="survey.reminder",
        audience=["pm"],
        subject=subject,
        text="\n".join(lines),
        data={
            "month": today.strftime("%Y-%m"),
            "tasks": [
                {"project_id": t.project_id, "task_key": t.task_key, "status": t.status}
                for t in body.tasks
            ],
        },
    )
