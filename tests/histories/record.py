"""Record workflow histories for the replay test: ``python -m tests.histories.record``.

Run it when a release changes workflow code on purpose; commit the new files beside the old
ones, which must keep replaying (old histories are what running projects are made of).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.workflows.helpers import (
    describe,
    finish,
    finish_until,
    future_target,
    judged_by,
    new_input,
    own_worker,
    start,
    started_late,
)
from workflows.calendar import JST
from workflows.core import (
    AcknowledgeInput,
    ExtendedTrackInput,
    GateDecisionInput,
    MilestoneReport,
    ReplanInput,
    TaskProgress,
    VendorAssignment,
)
from workflows.ladder import rung_instant
from workflows.migration import MigrationWorkflow

HERE = Path(__file__).parent


async def scenario_full(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Reject and rework, a failed cutover, milestones with a replayed key, to completion."""
    h = await start(env.client, queue, new_input(await future_target(env), switching_vendor=True))
    await finish_until(h, stop_before="gate_migration_plan")
    await h.execute_update(
        MigrationWorkflow.decide_gate,
        GateDecisionInput("gate_migration_plan", "reject", "approver:cio", "再検討"),
    )
    await finish(h, "migration_plan")
    await finish_until(h, stop_before="system_setup")
    report = MilestoneReport("k1", "system_setup", "in_progress", "vendor:acme", percent=50)
    await h.execute_update(MigrationWorkflow.report_milestone, report, id="milestone-k1")
    await h.execute_update(MigrationWorkflow.report_milestone, report, id="milestone-k1")
    await finish_until(h, stop_before="cutover")
    await h.execute_update(
        MigrationWorkflow.report_milestone,
        MilestoneReport("k2", "cutover", "failed", "vendor:acme"),
    )
    await finish_until(h)
    await h.result()
    return h


async def scenario_ladder(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Rungs fire, one is acknowledged, a task completes, the plan moves, extended track."""
    h, snap, due = await started_late(env, queue, await future_target(env, months=25))
    at = rung_instant(due, "approver", snap.state.ladder)
    await env.sleep(at - await env.get_current_time() + timedelta(hours=1))
    snap = await describe(h)
    await h.execute_update(
        MigrationWorkflow.acknowledge_escalation,
        AcknowledgeInput(snap.state.escalations[0].id, "prefecture:tokyo"),
    )
    await finish(h, "setup_governance")
    await h.execute_update(
        MigrationWorkflow.replan, ReplanInput(await future_target(env, 28), "遅延", "pm:x")
    )
    await h.execute_update(
        MigrationWorkflow.declare_extended_track,
        ExtendedTrackInput("mainframe", await future_target(env, 30), "メインフレーム", "pm:x"),
    )
    await env.sleep(timedelta(days=60))
    return h


async def scenario_procurement(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Registered under way and late, without a vendor: the vendor is chosen at the gate,
    then replaced; rungs of tasks behind the RFI wait until they can be acted on."""
    today = (await env.get_current_time()).astimezone(JST).date()
    on = today - timedelta(days=100)
    progress = {k: TaskProgress("done", on) for k in judged_by("gate_migration_plan")}
    progress["gate_migration_plan"] = TaskProgress("done", on)
    inp = replace(new_input(await future_target(env, months=9)), vendor_id=None)
    h = await start(env.client, queue, replace(inp, progress=progress))
    await env.sleep(timedelta(days=3))
    await finish_until(h, stop_before="vendor_selection")
    await h.execute_update(
        MigrationWorkflow.decide_gate,
        GateDecisionInput("vendor_selection", "approve", "approver:cio", vendor_id="acme"),
    )
    await h.execute_update(
        MigrationWorkflow.assign_vendor, VendorAssignment("beta", "契約解除", "pm:x")
    )
    await finish_until(h, stop_before="cutover")
    await env.sleep(timedelta(days=40))
    return h


SCENARIOS = {
    "full": scenario_full,
    "ladder": scenario_ladder,
    "procurement": scenario_procurement,
}


async def main(tag: str) -> None:
    async with own_worker("record") as (env, queue):
        for name, scenario in SCENARIOS.items():
            handle = await scenario(env, queue)
            history = await handle.fetch_history()
            path = HERE / f"{tag}-{name}.json"
            path.write_text(history.to_json())
            print(f"wrote {path.name}: {len(history.events)} events")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "v1"))
