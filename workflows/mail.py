"""The daily mail: once a working day, each person who reads notices once a day (notify =
daily) gets one message with what was queued for them since the last one.

A Temporal Schedule starts DailyMailWorkflow at 09:30 JST Monday to Friday, after the 09:00
wave of rungs has gathered; its activity leaves out Japanese holidays (no calendar spec can say
them) and does the sending, marking a queued notice sent only once its message went.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.calendar import jst_today

DAILY_MAIL_ACTIVITY = "send_daily_mail"
SCHEDULE_ID = "daily-mail"


@dataclass
class DailyMailInput:
    # Send now whatever the day, holiday or not (an operator's catch-up; tests).
    any_day: bool = False


@dataclass
class DailyMailRequest:
    day: date  # the JST day the messages are for
    any_day: bool = False


@workflow.defn
class DailyMailWorkflow:
    @workflow.run
    async def run(self, inp: DailyMailInput) -> int:
        """How many people were sent their day's message (0 on a holiday)."""
        sent: int = await workflow.execute_activity(
            DAILY_MAIL_ACTIVITY,
            DailyMailRequest(jst_today(workflow.now()), inp.any_day),
            result_type=int,
            start_to_close_timeout=timedelta(minutes=30),
            # A mail server down in the morning is retried through the day; a message that
            # went is not sent again (the activity marks what it sent). Over before the next
            # morning's run, which the schedule would otherwise skip.
            schedule_to_close_timeout=timedelta(hours=20),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=30),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(minutes=30),
            ),
        )
        return sent
