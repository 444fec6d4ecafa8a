"""Monthly progress snapshots: MIC's figures as they stood at each month's end, kept so
that prefectures and MIC can see the trend (``GET /api/v1/reports/trend``).

A Temporal Schedule starts ProgressSnapshotWorkflow at 23:30 JST on days 28-31; the run
whose next day is the 1st of a month stores every project's counts for that month, and the
others end at once (a calendar has no "last day of the month").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.calendar import jst_today

SNAPSHOT_ACTIVITY = "snapshot_progress"
SCHEDULE_ID = "monthly-progress-snapshot"


@dataclass
class SnapshotInput:
    # Store this month now, whatever the day (an operator's catch-up; tests).
    month: date | None = None


@workflow.defn
class ProgressSnapshotWorkflow:
    @workflow.run
    async def run(self, inp: SnapshotInput) -> int:
        today = jst_today(workflow.now())
        month = inp.month
        if month is None:
            if (today + timedelta(days=1)).day != 1:
                return 0  # not the month's last day
            month = today.replace(day=1)
        stored: int = await workflow.execute_activity(
            SNAPSHOT_ACTIVITY,
            month,
            result_type=int,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=10),
        )
        workflow.logger.info("progress of %s stored for %d projects", month, stored)
        return stored
