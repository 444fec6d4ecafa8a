"""A body's DX plan follows its migrations: item ② (情報システムの標準化) is not reported by
hand but done once every one of the body's migration projects is live (its cutover done or
not applicable, or the project completed), so nobody reports the same fact twice.

A Temporal Schedule starts ProgrammeFollowWorkflow every ten minutes; its activity finds the
plans whose item is still open while their body's migrations are all live, and completes the
item in each plan's own workflow (the plan's rules decide: an item whose steps before it are
not done yet waits for the next run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

FOLLOW_ACTIVITY = "follow_programme_items"
SCHEDULE_ID = "programme-follow"
# Who the plan's audit trail says completed the item.
FOLLOWER = "system:標準化の移行プロジェクト"


@dataclass
class FollowInput:
    pass


@dataclass
class FollowResult:
    completed: list[str]  # the plans whose item was completed now
    waiting: list[str]  # the plans whose item could not be yet (steps before it open)


@workflow.defn
class ProgrammeFollowWorkflow:
    @workflow.run
    async def run(self, inp: FollowInput) -> FollowResult:
        result: FollowResult = await workflow.execute_activity(
            FOLLOW_ACTIVITY,
            inp,
            result_type=FollowResult,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result
