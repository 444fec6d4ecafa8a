"""Notices handed over by a project's workflow (workflows.digest.hand_over_all): to their
digest by signal-with-start (a prefecture's gathering takes a turn's notices in one signal),
or to a NotificationWorkflow of its own, from the worker's Temporal client, on the
workflow's own task queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from workflows.digest import (
    GATHERING_RULES,
    HAND_OVER_ACTIVITY,
    DigestInput,
    DigestWorkflow,
    HandOver,
    gathering_id,
)
from workflows.model import Notification
from workflows.notification import NotificationWorkflow

log = structlog.get_logger(__name__)


@dataclass
class _Batch:
    """Notices waiting for their gathering's next signal, and who waits for it."""

    start: DigestInput
    notes: list[Notification] = field(default_factory=list)
    # Settled when a signal carrying ``notes`` is accepted, or has failed.
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class HandOverActivities:
    """Group commit per gathering: while one signal to a gathering is in flight, the notices
    that come for it wait and go together in the next one (a wave's projects all hand over at
    once, a prefecture's to the same gathering), so the gathering takes one signal, and one
    workflow task, for many projects' notices. Each hand-over returns once a signal carrying
    its notices has been accepted; a failed signal fails every hand-over it carried, which
    retry (the gathering drops a notice it holds)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._waiting: dict[str, _Batch] = {}  # by gathering id: the next signal's notices
        self._sending: set[str] = set()  # gathering ids with a signal in flight

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
        wid = gathering_id(queue, first.key)
        batch = self._waiting.get(wid)
        if batch is None:
            start = DigestInput(
                first.key, first.window_seconds, split_hour=first.split_hour, rules=GATHERING_RULES
            )
            batch = self._waiting[wid] = _Batch(start)
        batch.notes.extend(item.note for item in group)
        done = batch.done
        if wid not in self._sending:
            self._sending.add(wid)
            asyncio.get_running_loop().create_task(self._send(wid, queue))
        # Shielded: a hand-over cancelled meanwhile leaves the signal to the others.
        await asyncio.shield(done)

    async def _send(self, wid: str, queue: str) -> None:
        """Signal the gathering with what waits for it, again while more came meanwhile."""
        try:
            while (batch := self._waiting.pop(wid, None)) is not None:
                try:
                    await self._client.start_workflow(
                        DigestWorkflow.run,
                        batch.start,
                        id=wid,
                        task_queue=queue,
                        start_signal="add_all",
                        start_signal_args=[batch.notes],
                        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    )
                except BaseException as exc:
                    batch.done.set_exception(exc)
                    batch.done.exception()  # retrieved: each waiter raises it itself
                    if not isinstance(exc, Exception):
                        raise
                else:
                    batch.done.set_result(None)
        finally:
            self._sending.discard(wid)

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
