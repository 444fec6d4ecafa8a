"""The worker's hand-over of notices to their prefecture's gathering, against a real Temporal
dev server: concurrent hand-overs share the gathering's signals, and none is lost."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace

from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.handover import HandOverActivities
from workflows.digest import HandOver, gathering_id
from workflows.model import Notification

HOUR = "2027112609"


def notice(i: int) -> Notification:
    code = ("131016", "131024", "131032")[i % 3]
    return Notification(
        id=f"{code}-p{i}.task.2027-11-25.overdue",
        project_id=f"{code}-p{i}",
        lg_code=code,
        prefecture="13",
        vendor_id=None,
        kind="escalation.overdue",
        audience=["pm"],
        subject=f"【期限超過】{i}",
        text="",
    )


async def test_forty_projects_handing_over_at_once_share_their_gathering_s_signals(
    dev_env: WorkflowEnvironment,
) -> None:
    queue = f"hand-over-{uuid.uuid4().hex}"
    env = ActivityEnvironment()
    env.info = replace(env.info, task_queue=queue)
    activities = HandOverActivities(dev_env.client)
    notes = [notice(i) for i in range(40)]
    # Forty projects' turns at the same moment, each handing over its own notice.
    handed = await asyncio.gather(
        *(
            env.run(activities.hand_over_notices, [HandOver(n, f"13.{HOUR}", 60.0, HOUR)])
            for n in notes
        )
    )
    assert handed == [1] * 40

    # No worker serves this queue: the gathering holds exactly what it was signalled.
    handle = dev_env.client.get_workflow_handle(gathering_id(queue, f"13.{HOUR}"))
    history = await handle.fetch_history()
    signals = [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    carried = [
        item["id"]
        for s in signals
        for payload in s.input.payloads
        for item in json.loads(payload.data)
    ]
    assert sorted(carried) == sorted(n.id for n in notes)  # every notice, once
    assert {s.signal_name for s in signals} == {"add_all"}
    assert len(signals) < len(notes) / 4  # shared: not one signal a project
    await handle.terminate("test over")
