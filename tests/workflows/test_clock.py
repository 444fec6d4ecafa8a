"""Health and forecast move with the clock alone: a project nobody touches still shows in the
lists, filters and search attributes what it is today, not what it was at its last rung."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from readmodel import tables as t
from tests.workflows.helpers import describe, new_input, start, worker_on
from workflows import search_attributes as sa
from workflows.calendar import JST, add_months
from workflows.core import TaskProgress
from workflows.model import DONE, ForecastTerms, forecast_go_live, forecast_on, next_rung


@pytest.fixture
async def task_queue(clock_env: WorkflowEnvironment, engine: Engine) -> AsyncIterator[str]:
    async with worker_on(clock_env, engine) as queue:
        yield queue


async def test_an_untouched_project_turns_at_risk_in_the_lists_when_its_forecast_slips(
    clock_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    env = clock_env
    today = (await env.get_current_time()).astimezone(JST).date()
    # The extended track's situation: the deadline is the planned go-live, governance is
    # done, and the survey (planned to start once governance was due, in three months) has
    # three months of work in it; from then on each day it has not started moves the
    # forecast past the deadline, months before the survey's first rung.
    target = add_months(today, 27)
    inp = replace(
        new_input(target),
        deadline=target,
        progress={"setup_governance": TaskProgress(DONE, today)},
    )
    handle = await start(env.client, task_queue, inp)
    snap = await describe(handle)
    assert snap.health == "on_track"
    rung = next_rung(snap.state)
    assert rung is not None
    # Four months on: still weeks before any rung.
    await env.sleep(timedelta(days=122))
    now = await env.get_current_time()
    assert now < rung - timedelta(days=30)
    project_id = snap.state.project_id
    with Session(engine) as session:
        row = session.get(t.Project, project_id)
        assert row is not None
        assert row.health == "at_risk"
        written = row.seq
        slipped = forecast_of(row, now)
        assert slipped > target
        assert slipped == forecast_go_live((await describe(handle)).state, now)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.HEALTH) == "at_risk"
    # Days later the forecast read from the same row has moved on, as the project's has,
    # and the workflow wrote nothing to get there.
    await env.sleep(timedelta(days=3))
    now = await env.get_current_time()
    with Session(engine) as session:
        row = session.get(t.Project, project_id)
        assert row is not None and row.seq == written
        assert forecast_of(row, now) > slipped
        assert forecast_of(row, now) == forecast_go_live((await describe(handle)).state, now)


def forecast_of(row: t.Project, now: datetime) -> date:
    terms = ForecastTerms(row.forecast_slip_days, row.forecast_slips_from)
    return forecast_on(row.target_go_live, terms, now.astimezone(JST).date())
