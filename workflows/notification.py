"""NotificationWorkflow: deliver one notification on every channel that should hear it.

Each notification is a workflow of its own, abandoned by its parent, so a channel that is
down for days retries here with backoff while the migration goes on untouched.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.model import Channel, Delivery, Notification

RESOLVE_ACTIVITY = "resolve_channels"
DELIVER_ACTIVITY = "deliver_notification"

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
)
# How long a channel may stay down before its message is given up (and logged as such).
DELIVERY_GIVE_UP = timedelta(days=14)


async def deliver(note: Notification) -> int:
    """From a workflow: deliver ``note`` on every channel that should hear it, each retried
    with backoff for up to two weeks; how many channels took it."""
    channels: list[Channel] = await workflow.execute_activity(
        RESOLVE_ACTIVITY,
        note,
        result_type=list[Channel],
        start_to_close_timeout=timedelta(seconds=30),
    )
    results = await asyncio.gather(
        *(
            workflow.execute_activity(
                DELIVER_ACTIVITY,
                Delivery(f"{note.id}/{ch.id}", ch, note),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=DELIVERY_GIVE_UP,
                retry_policy=DELIVERY_RETRY,
            )
            for ch in channels
        ),
        return_exceptions=True,
    )
    delivered = sum(1 for r in results if not isinstance(r, BaseException))
    if delivered < len(channels):
        workflow.logger.warning(
            "notification %s: %d of %d channels gave up",
            note.id,
            len(channels) - delivered,
            len(channels),
        )
    return delivered


@workflow.defn
class NotificationWorkflow:
    @workflow.run
    async def run(self, note: Notification) -> int:
        return await deliver(note)


async def send(note: Notification) -> None:
    """Start the notification's own workflow from the current one and let it go on alone;
    one whose id was already started (by an earlier run, say) was sent already."""
    try:
        await workflow.start_child_workflow(
            NotificationWorkflow.run,
            note,
            id=f"notify-{note.id}",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
    except WorkflowAlreadyStartedError:
        pass
