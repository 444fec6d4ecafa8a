"""Notices handed over by a project's workflow (workflows.digest.hand_over_all): to their
digest by signal-with-start (a prefecture's gathering takes a turn's notices in one signal),
or to a NotificationWorkflow of its own, from the worker's Temporal client, on the
workflow's own task queue."""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from workflows.digest import (
    HAND_OVER_ACTIVITY,
    DigestInput,
    DigestWorkflow,
    HandOver,
    gathering_id,
)
from workflows.notification import NotificationWorkflow

log = structlog.get_logger(__name__)


class HandOverActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name=HAND_OVER_ACTIVITY)
    async def hand_over_notices(self, items: list[HandOver]) -> int:
        """Hand every notice over; how many went to a digest."""
        queue = activity.info().task_queue
        # A prefecture's gathering takes the turn's notices for it in one signal.
        gathered: dict[str, list[HandOver]] = {}
        singles: list[HandOver] = []
        for item in items:
            if item.key is not None and item.split_hour is not None:
                gathered.setdefault(item.key, []).append(item)
            else:
                singles.append(item)
        await asyncio.gather(
            *(self._gathering(group, queue) for group in gathered.values()),
            *(self._one(item, queue) for item in singles),
        )
        return sum(1 for item in items if item.key is not None)

    async def _gathering(self, group: list[HandOver], queue: str) -> None:
        """Signal-with-start: the gathering running now takes them (dropping any it holds);
        one that has gone is followed by a new one, started with them."""
        first = group[0]
        assert first.key is not None
        await self._client.start_workflow(
            DigestWorkflow.run,
            DigestInput(first.key, first.window_seconds, split_hour=first.split_hour),
            id=gathering_id(queue, first.key),
            task_queue=queue,
            start_signal="add_all",
            start_signal_args=[[item.note for item in group]],
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )

    async def _one(self, item: HandOver, queue: str) -> None:
        if item.key is not None:
            # The digest gathering now takes it (it drops a notice it holds); a digest that
            # has gone is followed by a new one, started with it.
            await self._client.start_workflow(
                DigestWorkflow.run,
                DigestInput(item.key, item.window_seconds),
                id=f"digest-{item.key}",
                task_queue=queue,
                start_signal="add",
                start_signal_args=[item.note],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            return
        try:
            await self._client.start_workflow(
                NotificationWorkflow.run,
                item.note,
                id=f"notify-{item.note.id}",
                task_queue=queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.debug("notice already sent", notification_id=item.note.id)
