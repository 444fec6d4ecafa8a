"""MigrationWorkflow on the time-skipping server, with the real read model on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import repair, workflow_truth
from readmodel import tables as t
from tests.workflows.helpers import (
    describe,
    finish,
    finish_until,
    future_target,
    new_input,
    start,
    worker_on,
)
from workflows.core import CONFLICT, GateDecisionInput, MilestoneReport, TaskChange
from workflows.migration import MigrationResult, MigrationWorkflow


@pytest.fixture
async def task_queue(time_skipping_env: WorkflowEnvironment, engine: Engine) -> AsyncIterator[str]:
    async with worker_on(time_skipping_env, engine) as queue:
        yield queue


async def _start(env: WorkflowEnvironment, queue: str, **kw: object) -> WorkflowHandle:
    # The time-skipping server's clock is shared and moves on: plan from where it stands.
    target = await future_target(env)
    return await start(env.client, queue, new_input(target, **kw))  # type: ignore[arg-type]


async def test_happy_path_reaches_completed(
    time_skipping_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    handle = await _start(time_skipping_env, task_queue)
    snap = await describe(handle)
    assert snap.stage == "current_state"
    assert snap.state.tasks["rfp"].status == "not_applicable"
    await finish_until(handle)
    result = await handle.result()
    assert isinstance(result, MigrationResult)
    assert result.completed_at is not None
    with Session(engine) as session:
        project = session.exec(select(t.Project)).one()
        assert project.stage == "completed"
        assert project.health == "completed"
        assert project.completion_rate == 1.0
        tasks = session.exec(select(t.Task).where(t.Task.project_id == project.id)).all()
        assert {task.status for task in tasks} <= {"done", "not_applicable"}
        kinds = [e.kind for e in session.exec(select(t.Event).order_by(t.Event.seq))]
    assert kinds[0] == "project_created"
    assert kinds[-1] == "project_completed"


async def test_rejected_gate_reopens_its_prerequisites(
    time_skipping_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    handle = await _start(time_skipping_env, task_queue)
    await finish_until(handle, stop_before="gate_migration_plan")
    snap = await describe(handle)
    assert snap.state.tasks["gate_migration_plan"].status == "in_progress"  # awaiting decision
    gate = await handle.execute_update(
        MigrationWorkflow.decide_gate,
        GateDecisionInput("gate_migration_plan", "reject", "approver:cio", "連携一覧が不足"),
    )
    assert gate.status == "not_started"
    assert gate.decision is not None and gate.decision.outcome == "reject"
    snap = await describe(handle)
    assert snap.state.tasks["migration_plan"].status == "in_progress"
    assert snap.state.tasks["migration_plan"].note == "連携一覧が不足"
    # The gate cannot be decided again until its prerequisite is done once more.
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            MigrationWorkflow.decide_gate,
            GateDecisionInput("gate_migration_plan", "approve", "approver:cio"),
        )
    await finish(handle, "migration_plan")
    approved = await handle.execute_update(
        MigrationWorkflow.decide_gate,
        GateDecisionInput("gate_migration_plan", "approve", "approver:cio"),
    )
    assert approved.status == "done"
    with Session(engine) as session:
        decisions = session.exec(select(t.GateDecision).order_by(t.GateDecision.seq)).all()
    assert [d.outcome for d in decisions] == ["reject", "approve"]


async def test_failed_cutover_reopens_go_no_go(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    handle = await _start(time_skipping_env, task_queue)
    await finish_until(handle, stop_before="cutover")
    result = await handle.execute_update(
        MigrationWorkflow.report_milestone,
        MilestoneReport("cut-1", "cutover", "failed", "vendor:acme", note="データ不整合"),
    )
    assert result.task.status == "not_started"
    snap = await describe(handle)
    gate = snap.state.tasks["go_no_go"]
    assert gate.status == "in_progress"
    assert gate.decision is None
    assert snap.stage == "cutover"
    await finish(handle, "go_no_go")
    await finish_until(handle)
    await handle.result()


async def test_switching_vendor_makes_rfp_applicable(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    handle = await _start(time_skipping_env, task_queue, switching_vendor=True)
    snap = await describe(handle)
    assert snap.state.tasks["rfp"].status == "not_started"
    assert snap.state.tasks["rfp"].due_date is not None
    await finish_until(handle, stop_before="vendor_selection")
    snap = await describe(handle)
    assert snap.state.tasks["rfp"].status == "done"
    assert snap.state.tasks["vendor_selection"].status == "in_progress"


async def test_rejected_update_never_enters_history(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    handle = await _start(time_skipping_env, task_queue)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(
            MigrationWorkflow.change_task, TaskChange("fit_gap_analysis", "done", "pm:x", "pm")
        )
    assert isinstance(err.value.cause, ApplicationError)
    assert err.value.cause.type == CONFLICT
    accepted = [
        e
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == "change_task"
    ]
    assert accepted == []
    snap = await describe(handle)
    assert snap.state.tasks["fit_gap_analysis"].status == "not_started"


async def test_continue_as_new_carries_the_whole_project(
    time_skipping_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    inp = new_input(await future_target(time_skipping_env))
    inp.history_limit = 60  # a long-lived project, in miniature
    handle = await start(time_skipping_env.client, task_queue, inp)
    first_run = (await handle.describe()).run_id
    report = MilestoneReport("key-1", "system_setup", "in_progress", "vendor:acme", percent=10)
    await finish_until(handle, stop_before="system_setup")
    first = await handle.execute_update(MigrationWorkflow.report_milestone, report)
    await finish_until(handle, stop_before="go_no_go")
    for _ in range(600):
        if (await handle.describe()).run_id != first_run:
            break
        await asyncio.sleep(0.05)
    assert (await handle.describe()).run_id != first_run
    snap = await describe(handle)
    assert snap.state.tasks["testing"].status == "done"
    assert snap.state.tasks["go_no_go"].status == "in_progress"
    # The same Idempotency-Key in the new run returns the first answer, changing nothing.
    again = await handle.execute_update(MigrationWorkflow.report_milestone, report)
    assert again.milestone_id == first.milestone_id
    journal = await handle.query(MigrationWorkflow.journal)
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
    await finish_until(handle)
    await handle.result()
    journal = await handle.query(MigrationWorkflow.journal)
    assert journal[-1].kind == "project_completed"
    with Session(engine) as session:
        events = session.exec(select(t.Event).order_by(t.Event.seq)).all()
    assert [(e.seq, e.kind) for e in events] == [(e.seq, e.kind) for e in journal]


async def test_a_long_lived_project_lets_written_history_go_and_still_knows_old_keys(
    time_skipping_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    inp = new_input(await future_target(time_skipping_env))
    inp.history_limit, inp.journal_kept, inp.answers_kept = 50, 5, 1
    handle = await start(time_skipping_env.client, task_queue, inp)
    await finish_until(handle, stop_before="system_setup")
    old = MilestoneReport("key-old", "system_setup", "in_progress", "vendor:acme", percent=10)
    first = await handle.execute_update(MigrationWorkflow.report_milestone, old)
    newer = MilestoneReport("key-new", "system_setup", "in_progress", "vendor:acme", percent=20)
    await handle.execute_update(MigrationWorkflow.report_milestone, newer)
    # The project continues as new (perhaps more than once) on its way; the first time after
    # both keys were recorded lets the older answer go.
    run_with_both = (await handle.describe()).run_id
    await finish_until(handle, stop_before="go_no_go")
    for _ in range(600):
        if (await handle.describe()).run_id != run_with_both:
            break
        await asyncio.sleep(0.05)
    assert (await handle.describe()).run_id != run_with_both
    snap = await describe(handle)
    assert "key-old" not in snap.state.milestones  # its answer was let go
    journal = await handle.query(MigrationWorkflow.journal)
    # The new run carries only the newest of what the read model already holds ...
    assert journal[0].seq > 6  # the oldest events were let go
    assert [e.seq for e in journal] == list(range(journal[0].seq, snap.state.seq + 1))
    # ... while the read model keeps the whole audit trail.
    with Session(engine) as session:
        seqs = [e.seq for e in session.exec(select(t.Event).order_by(t.Event.seq)).all()]
    assert seqs == list(range(1, snap.state.seq + 1))
    # An old key (as the API finds it in the read model) is still a repeat: nothing changes.
    again = await handle.execute_update(
        MigrationWorkflow.report_milestone, replace(old, recorded_id=first.milestone_id)
    )
    assert again.milestone_id == first.milestone_id and again.duplicate
    assert (await describe(handle)).state.seq == snap.state.seq
    # The nightly reconciliation leaves the older events be.
    truth = await workflow_truth(time_skipping_env.client, handle.id)
    assert await asyncio.to_thread(repair, engine, truth) == []
    with Session(engine) as session:
        assert len(session.exec(select(t.Event)).all()) == snap.state.seq
