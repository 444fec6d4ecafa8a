"""The escalation ladder under time skipping: every rung, once, in order, on working days."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from readmodel import tables as t
from tests.workflows.helpers import (
    describe,
    finish,
    new_input,
    start,
    started_late,
    timer_profile,
    worker_on,
)
from workflows.calendar import JST, add_months, previous_working_day
from workflows.core import ReplanInput
from workflows.ladder import LEVELS, EscalationLadder, rung_instant
from workflows.migration import MigrationWorkflow

# An independent oracle: the holidays of Golden Week and the new-year closure, by hand.
HAND_CHECKED_CLOSED = {
    date(2027, 4, 29),
    date(2027, 5, 3),
    date(2027, 5, 4),
    date(2027, 5, 5),
    date(2028, 4, 29),
    date(2028, 5, 3),
    date(2028, 5, 4),
    date(2028, 5, 5),
    date(2029, 4, 30),
    date(2029, 5, 3),
    date(2029, 5, 4),
    *(date(y, 12, d) for y in (2026, 2027, 2028, 2029) for d in (29, 30, 31)),
    *(date(y, 1, d) for y in (2027, 2028, 2029, 2030) for d in (1, 2, 3)),
    date(2027, 1, 11),
    date(2028, 1, 10),
    date(2029, 1, 8),
    date(2030, 1, 14),  # 成人の日
}


@pytest.fixture
async def task_queue(clock_env: WorkflowEnvironment, engine: Engine) -> AsyncIterator[str]:
    async with worker_on(clock_env, engine) as queue:
        yield queue


async def _target_after(env: WorkflowEnvironment, months: int, days: int = 20) -> date:
    now = await env.get_current_time()
    return previous_working_day(add_months(now.astimezone(JST).date(), months) + timedelta(days))


@pytest.mark.heavy
async def test_untouched_project_climbs_every_rung_once_in_order_on_working_days(
    clock_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    env = clock_env
    target = await _target_after(env, 24)
    handle = await start(env.client, task_queue, new_input(target))
    snap = await describe(handle)
    ladder = snap.state.ladder
    expected = sorted(
        (rung_instant(task.due_date, level, ladder), key, level)
        for key, task in snap.state.tasks.items()
        if task.due_date is not None
        for level in LEVELS
    )
    assert len(expected) == 22 * 4  # RFP does not apply
    assert expected[0][0] > await env.get_current_time()  # nothing was already due
    last = expected[-1][0]
    await env.sleep(last - await env.get_current_time() + timedelta(days=1))

    snap = await describe(handle)
    raised = sorted((e.raised_at, e.task_key, e.level) for e in snap.state.escalations)
    assert [(k, lvl) for _, k, lvl in raised] == [(k, lvl) for _, k, lvl in expected]
    for (got, _, _), (want, key, level) in zip(raised, expected, strict=True):
        assert abs(got - want) < timedelta(seconds=5), (key, level, got, want)
        day = got.astimezone(JST).date()
        assert day.weekday() < 5 and day not in HAND_CHECKED_CLOSED, (key, level, day)
    assert len({(k, lvl) for _, k, lvl in raised}) == len(raised)  # each exactly once
    for key in {k for _, k, _ in raised}:
        levels = [lvl for _, k, lvl in raised if k == key]
        assert levels == list(LEVELS)
    assert snap.health == "overdue"
    heard = {(e.task_key, e.level): e.audience for e in snap.state.escalations}
    assert heard[("setup_governance", "reminder")] == ["pm"]
    assert heard[("data_migration", "reminder")] == ["vendor"]
    assert heard[("data_migration", "overdue")] == ["pm", "vendor"]  # the vendor for its tasks
    assert heard[("go_no_go", "overdue")] == ["pm"]  # an undecided gate: the pm chases it
    assert heard[("go_no_go", "approver")] == ["approver"]
    assert heard[("testing", "prefecture")] == ["prefecture"]
    started, peak = await timer_profile(handle)
    assert peak == 1  # one next-deadline timer at a time, never one per task and rung
    assert started <= len({at for at, _, _ in expected}) + 2
    with Session(engine) as session:
        rows = session.exec(select(t.Escalation)).all()
    assert len(rows) == 88 and {r.status for r in rows} == {"open"}


@pytest.mark.heavy
async def test_completing_a_task_stops_its_ladder_and_replan_moves_the_rungs(
    clock_env: WorkflowEnvironment, task_queue: str
) -> None:
    env = clock_env
    handle, snap, gov_due = await started_late(env, task_queue, await _target_after(env, 24))
    target = snap.state.target_go_live
    ladder: EscalationLadder = snap.state.ladder
    overdue_at = rung_instant(gov_due, "overdue", ladder)
    await env.sleep(overdue_at - await env.get_current_time() + timedelta(hours=1))
    snap = await describe(handle)
    gov = [e for e in snap.state.escalations if e.task_key == "setup_governance"]
    assert [e.level for e in gov] == ["reminder", "overdue"]

    await finish(handle, "setup_governance")
    snap = await describe(handle)
    assert {e.status for e in snap.state.escalations if e.task_key == "setup_governance"} == {
        "resolved"
    }
    # Replan a year later: the survey's rungs move with its due date.
    survey_due_before = snap.state.tasks["current_system_survey"].due_date
    await handle.execute_update(
        MigrationWorkflow.replan, ReplanInput(add_months(target, 12), "予算の都合", "pm:test")
    )
    snap = await describe(handle)
    survey_due = snap.state.tasks["current_system_survey"].due_date
    assert survey_due is not None and survey_due_before is not None
    assert survey_due > survey_due_before
    prefecture_at = rung_instant(survey_due, "prefecture", ladder)
    await env.sleep(prefecture_at - await env.get_current_time() + timedelta(hours=1))
    snap = await describe(handle)
    gov_levels = [e.level for e in snap.state.escalations if e.task_key == "setup_governance"]
    assert gov_levels == ["reminder", "overdue"]  # its ladder stopped when it was done
    survey = [e for e in snap.state.escalations if e.task_key == "current_system_survey"]
    assert [(e.level, e.due_date) for e in survey] == [(lvl, survey_due) for lvl in LEVELS]
    for e in survey:
        assert abs(e.raised_at - rung_instant(survey_due, e.level, ladder)) < timedelta(seconds=5)
    kinds = [e.kind for e in await handle.query(MigrationWorkflow.journal)]
    assert "replanned" in kinds


async def test_project_past_its_deadline_says_so_once(
    clock_env: WorkflowEnvironment, task_queue: str
) -> None:
    env = clock_env
    handle = await start(env.client, task_queue, new_input(await _target_after(env, 30)))
    journal = await handle.query(MigrationWorkflow.journal)
    notices = [e for e in journal if e.kind == "deadline_exceeded"]
    assert len(notices) == 1 and notices[0].data["deadline"] == "2026-03-31"
    snap = await describe(handle)
    assert snap.health == "at_risk"
    assert snap.forecast_go_live == snap.state.target_go_live
    await finish(handle, "setup_governance")
    journal = await handle.query(MigrationWorkflow.journal)
    assert len([e for e in journal if e.kind == "deadline_exceeded"]) == 1


async def test_forecast_slips_with_a_late_task(
    clock_env: WorkflowEnvironment, task_queue: str
) -> None:
    env = clock_env
    handle, snap, gov_due = await started_late(env, task_queue, await _target_after(env, 24))
    # Nothing has moved when governance's last rung fires: the project runs that many days
    # late, and its go-live (forecast as of its latest wake-up) slips by as much.
    last_rung = rung_instant(gov_due, "prefecture", snap.state.ladder)
    await env.sleep(last_rung - await env.get_current_time() + timedelta(hours=1))
    snap = await describe(handle)
    assert snap.forecast_go_live is not None
    late_by = (last_rung.astimezone(JST).date() - gov_due).days
    slip = (snap.forecast_go_live - snap.state.target_go_live).days
    assert late_by - 3 <= slip <= late_by, (slip, late_by)  # less any non-working days
