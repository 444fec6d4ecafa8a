"""Record workflow histories for the replay test: ``python -m tests.histories.record``.

Run it when a release changes workflow code on purpose; commit the new files beside the old
ones, which must keep replaying (old histories are what running projects are made of).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import replace
from datetime import date, timedelta
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
    newer_template,
    own_worker,
    start,
    started_late,
)
from workflows.calendar import JST, add_months
from workflows.core import (
    DEADLINE_NOTICE,
    AcknowledgeInput,
    ExtendedTrackInput,
    GateDecisionInput,
    Holding,
    JointCompletion,
    MilestoneBatch,
    MilestoneReport,
    ReplanInput,
    TaskChange,
    TaskProgress,
    TemplateUpgrade,
    VendorAssignment,
)
from workflows.digest import DigestWorkflow, gathering_id, wave_hour
from workflows.ladder import rung_instant
from workflows.migration import MigrationWorkflow, start_attributes
from workflows.model import DEFAULT_DEADLINE, Notification, workflow_id_for
from workflows.procedure import DEFAULT_TEMPLATE, DX_PLAN_TEMPLATE
from workflows.procurement import (
    JOINT_STEPS,
    JointProcurementWorkflow,
    Membership,
    ProcurementDecision,
    ProcurementInput,
    ProcurementTaskChange,
)
from workflows.programme import FollowInput, ProgrammeFollowWorkflow
from workflows.rollout import RolloutInput, RolloutWorkflow
from workflows.rollout import workflow_id as rollout_workflow_id
from workflows.snapshot import ProgressSnapshotWorkflow, SnapshotInput

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


async def _plan_approved(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    today = (await env.get_current_time()).astimezone(JST).date()
    on = today - timedelta(days=30)
    progress = {k: TaskProgress("done", on) for k in judged_by("gate_migration_plan")}
    progress["gate_migration_plan"] = TaskProgress("done", on)
    inp = replace(new_input(await future_target(env, months=30)), vendor_id=None)
    return await start(env.client, queue, replace(inp, progress=progress))


async def scenario_member(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A member's side of a joint procurement: held, given back, held again, completed."""
    h = await _plan_approved(env, queue)
    held = Holding("kyodo-r", "pm:lead", list(JOINT_STEPS))
    await h.execute_update(MigrationWorkflow.hold_for_procurement, held)
    await h.execute_update(MigrationWorkflow.release_from_procurement, held)
    await h.execute_update(MigrationWorkflow.hold_for_procurement, held)
    await env.sleep(timedelta(days=20))
    done = JointCompletion("kyodo-r", "acme", "approver:lead", "procurement:kyodo-r", "選定")
    await h.execute_update(MigrationWorkflow.complete_joint_procurement, done)
    await finish_until(h, stop_before="system_setup")
    return h


async def scenario_joint(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A joint procurement of two members, one of which leaves; a step runs late (its
    lead hears of it); the RFP is sent back once, then the vendor is selected."""
    members = [await _plan_approved(env, queue) for _ in range(2)]
    today = (await env.get_current_time()).astimezone(JST).date()
    due = {k: today + timedelta(days=10 + 30 * i) for i, k in enumerate(JOINT_STEPS)}
    opening = ProcurementInput(
        "kyodo-r",
        "記録用",
        "131016",
        "東京都千代田区",
        "13",
        "resident_registry",
        "住民基本台帳",
        "prefecture:tokyo",
        due,
    )
    p = await env.client.start_workflow(
        JointProcurementWorkflow.run,
        opening,
        id=f"procurement-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
    )
    for m in members:
        await p.execute_update(JointProcurementWorkflow.join, Membership(m.id, "pm:lead"))
    await p.execute_update(JointProcurementWorkflow.leave, Membership(members[1].id, "pm:lead"))
    await env.sleep(timedelta(days=15))
    for key in JOINT_STEPS[:-1]:
        await p.execute_update(
            JointProcurementWorkflow.change_task, ProcurementTaskChange(key, "done", "pm:lead")
        )
    await p.execute_update(
        JointProcurementWorkflow.decide, ProcurementDecision("reject", "approver:lead", "再検討")
    )
    await p.execute_update(
        JointProcurementWorkflow.change_task, ProcurementTaskChange("rfp", "done", "pm:lead")
    )
    await p.execute_update(
        JointProcurementWorkflow.decide,
        ProcurementDecision("approve", "approver:lead", "決定", vendor_id="acme"),
    )
    await p.result()
    return p


async def scenario_template(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A running project moves to a newer version of its template: one task added, one
    not yet started dropped; then it goes on under the new version."""
    h = await start(env.client, queue, new_input(await future_target(env, months=30)))
    await finish(h, "setup_governance")
    newer = newer_template()
    await h.execute_update(
        MigrationWorkflow.upgrade_template, TemplateUpgrade(newer, "改訂版", "pm:x")
    )
    await finish_until(h, stop_before="spec_mapping")
    await env.sleep(timedelta(days=30))
    return h


async def scenario_snapshot(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A month's end: the progress of every project stored for the trend."""
    await start(env.client, queue, new_input(await future_target(env, months=30)))
    h = await env.client.start_workflow(
        ProgressSnapshotWorkflow.run,
        SnapshotInput(date(2026, 11, 1)),
        id=f"snapshot-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
    )
    await h.result()
    return h


async def scenario_long(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A long-lived project in miniature: continue-as-new lets written history go; an old
    milestone key is still answered as a repeat."""
    inp = new_input(await future_target(env))
    inp.history_limit, inp.journal_kept, inp.answers_kept = 80, 5, 1
    h = await start(env.client, queue, inp)
    first_run = (await h.describe()).run_id
    await finish_until(h, stop_before="system_setup")
    old = MilestoneReport("k-old", "system_setup", "in_progress", "vendor:acme", percent=10)
    first = await h.execute_update(MigrationWorkflow.report_milestone, old)
    await h.execute_update(
        MigrationWorkflow.report_milestone,
        MilestoneReport("k-new", "system_setup", "in_progress", "vendor:acme", percent=20),
    )
    await finish_until(h, stop_before="go_no_go")
    await h.execute_update(
        MigrationWorkflow.report_milestone, replace(old, recorded_id=first.milestone_id)
    )
    await finish_until(h)
    await h.result()
    return env.client.get_workflow_handle(h.id, run_id=first_run)  # the run that let go


async def scenario_digest(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Two reminders of one project in the same 09:00 wave go to the body's digest."""
    h, snap, _ = await started_late(env, queue, await future_target(env, months=25))
    await finish(h, "setup_governance")
    due = (await describe(h)).state.tasks["current_system_survey"].due_date
    assert due is not None
    at = rung_instant(due, "reminder", snap.state.ladder)
    await env.sleep(at - await env.get_current_time() + timedelta(hours=1))
    return h


async def scenario_gathering(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A prefecture's gathering (the DigestWorkflow's own history): two Tokyo bodies register
    a late system each in the same hour; it splits their notices by body. Since its first
    rules (v13), after its messages went, a notice handed over again is dropped, and it
    closes a while later."""
    target = await future_target(env, months=25)
    first = await start(env.client, queue, new_input(target))
    await start(env.client, queue, replace(new_input(target, lg_code="131024"), body_name="中央区"))
    snap = await describe(first)
    key = f"13.{wave_hour(snap.state.created_at)}"
    gathering = env.client.get_workflow_handle(gathering_id(queue, key))
    inp = new_input(target)
    await env.sleep(timedelta(seconds=inp.digest_window_seconds + 5))  # its messages went
    again = Notification(
        id=f"{snap.state.project_id}.deadline.2026-03-31",
        project_id=snap.state.project_id,
        lg_code="131016",
        prefecture="13",
        vendor_id=None,
        kind=DEADLINE_NOTICE,
        audience=["pm"],
        subject="",
        text="",
    )
    await gathering.signal(DigestWorkflow.add_all, [again])  # a retried turn's hand-over
    await env.sleep(timedelta(minutes=5))
    await gathering.result()
    return gathering


async def scenario_attributes(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Started as the API starts a project, its search attributes set with the start (the
    first turn upserts nothing); later changes of stage and health upsert them."""
    inp = new_input(await future_target(env, months=25))
    wid = f"attributes-{uuid.uuid4().hex[:8]}"
    attrs = start_attributes(inp, await env.get_current_time())
    h = await env.client.start_workflow(
        MigrationWorkflow.run, inp, id=wid, task_queue=queue, search_attributes=attrs
    )
    await h.execute_update(MigrationWorkflow.sync)
    await finish_until(h, stop_before="fit_gap_analysis")
    await env.sleep(timedelta(days=120))  # the next task's rungs: health moves
    return h


async def scenario_clock(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Nobody touches it: its forecast slips past the deadline (at risk) months before any
    rung, and the project wakes each night the forecast moves (rules of generation 3)."""
    today = (await env.get_current_time()).astimezone(JST).date()
    target = add_months(today, 27)
    inp = replace(
        new_input(target),
        deadline=target,
        progress={"setup_governance": TaskProgress("done", today)},
    )
    h = await start(env.client, queue, inp)
    await env.sleep(timedelta(days=100))
    return h


async def scenario_bulk(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A vendor's bulk feed: a batch of milestones in one update, one of them refused, and
    the same batch again (every report a repeat)."""
    h = await start(env.client, queue, new_input(await future_target(env)))
    await finish_until(h, stop_before="system_setup")
    reports = [
        MilestoneReport(f"b{n}", "system_setup", "in_progress", "vendor:acme", percent=10 * n)
        for n in range(3)
    ]
    reports.append(MilestoneReport("b-bad", "training", "done", "vendor:acme"))
    reports.append(MilestoneReport("b-done", "system_setup", "done", "vendor:acme"))
    batch = MilestoneBatch(reports)
    await h.execute_update(MigrationWorkflow.report_milestones, batch, id="milestones-1")
    await h.execute_update(MigrationWorkflow.report_milestones, batch, id="milestones-2")
    return h


async def scenario_live(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A system already live, registered as the API registers it: gone live after the
    deadline (never told it is late), its late review escalating at once, the
    decommissioning waiting behind it, both then done: completed."""
    today = (await env.get_current_time()).astimezone(JST).date()
    on = today - timedelta(days=40)
    assert on > DEFAULT_DEADLINE
    progress = {
        k: TaskProgress("done", on - timedelta(days=30)) for k in judged_by("cutover") if k != "rfp"
    }
    progress["cutover"] = TaskProgress("done", on)
    inp = replace(new_input(on), progress=progress)
    wid = f"live-{uuid.uuid4().hex[:8]}"
    attrs = start_attributes(inp, await env.get_current_time())
    h = await env.client.start_workflow(
        MigrationWorkflow.run, inp, id=wid, task_queue=queue, search_attributes=attrs
    )
    await h.execute_update(MigrationWorkflow.sync)
    await env.sleep(timedelta(days=3))
    await finish(h, "post_go_live_review")
    await env.sleep(timedelta(days=30))
    await finish(h, "decommission")
    await h.result()
    return h


async def scenario_rollout(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A revised template rolled out to a prefecture's three running projects, two at a time
    and two to a run (continue-as-new): two move, the one with training under way is
    refused and left as it was."""
    target = await future_target(env, months=30)
    projects = []
    for lg_code in ("011002", "012025", "012033"):
        inp = new_input(target, lg_code=lg_code)
        wid = workflow_id_for(inp.lg_code, inp.business)
        h = await env.client.start_workflow(MigrationWorkflow.run, inp, id=wid, task_queue=queue)
        await h.execute_update(MigrationWorkflow.sync)
        projects.append(h)
    await projects[1].execute_update(
        MigrationWorkflow.change_task, TaskChange("training", "in_progress", "pm:x", "pm")
    )
    newer = newer_template()
    rollout = RolloutInput(
        id=uuid.uuid4().hex[:12],
        template=DEFAULT_TEMPLATE.name,
        from_version=DEFAULT_TEMPLATE.version,
        to_version=newer.version,
        reason="改訂版",
        created_by="admin:x",
        owner="token:1",
        prefecture="01",
        target=newer,
        concurrency=2,
        per_run=2,
    )
    h = await env.client.start_workflow(
        RolloutWorkflow.run, rollout, id=rollout_workflow_id(rollout.id), task_queue=queue
    )
    first_run = (await h.describe()).run_id
    done = await env.client.get_workflow_handle_for(RolloutWorkflow.run, h.id).result()
    assert (done.moved, [r.project_id for r in done.refused]) == (2, ["012025-resident_registry"])
    assert done.runs == 2
    return env.client.get_workflow_handle(h.id, run_id=first_run)


async def scenario_programme(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A body's DX plan (the programme template) with a step done, and the follower's turn
    over the read model (no plan's item ② yet to complete)."""
    inp = replace(
        new_input(await future_target(env, months=40)),
        business="dx-plan",
        business_name="自治体DX推進計画",
        template=DX_PLAN_TEMPLATE,
    )
    h = await start(env.client, queue, inp)
    await h.execute_update(
        MigrationWorkflow.change_task,
        TaskChange("dx_leadership_awareness", "done", "pm:x", "pm"),
    )
    follow = await env.client.start_workflow(
        ProgrammeFollowWorkflow.run,
        FollowInput(),
        id=f"follow-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
    )
    await follow.result()
    return follow


SCENARIOS = {
    "full": scenario_full,
    "ladder": scenario_ladder,
    "procurement": scenario_procurement,
    "member": scenario_member,
    "joint": scenario_joint,
    "template": scenario_template,
    "snapshot": scenario_snapshot,
    "long": scenario_long,
    "digest": scenario_digest,
    "gathering": scenario_gathering,
    "attributes": scenario_attributes,
    "clock": scenario_clock,
    "bulk": scenario_bulk,
    "rollout": scenario_rollout,
    "live": scenario_live,
    "programme": scenario_programme,
}


async def main(tag: str, names: list[str]) -> None:
    async with own_worker("record") as (env, queue):
        for name, scenario in SCENARIOS.items():
            if names and name not in names:
                continue
            handle = await scenario(env, queue)
            history = await handle.fetch_history()
            path = HERE / f"{tag}-{name}.json"
            path.write_text(history.to_json())
            print(f"wrote {path.name}: {len(history.events)} events")


if __name__ == "__main__":
    # python -m tests.histories.record TAG [SCENARIO ...]: all scenarios unless named.
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "v1", sys.argv[2:]))
