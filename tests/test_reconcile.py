"""The nightly reconciliation finds a live project's read model changed behind its back,
puts it back from the workflow, and counts it in the worker's metrics."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import date, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import checked_tonight, projects_query
from benchmarks.harness import free_port
from runtime.settings import Settings
from runtime.temporal import connect, worker_runtime
from tests.workflows.helpers import finish, new_input, start
from worker.runner import build_worker, ensure_reconcile_schedule
from workflows.reconcile import SCHEDULE_ID, ReconcileInput, ReconcileResult, ReconcileWorkflow


def _held(engine: Engine, pid: str) -> tuple[object, ...]:
    with engine.connect() as conn:
        project = conn.execute(
            text("SELECT stage, health, done, seq FROM project WHERE id = :p"), {"p": pid}
        ).one()
        task = conn.execute(
            text("SELECT status FROM task WHERE project_id = :p AND key = 'setup_governance'"),
            {"p": pid},
        ).scalar_one()
        events = conn.execute(
            text("SELECT count(*) FROM event WHERE project_id = :p"), {"p": pid}
        ).scalar_one()
    return (*project, task, events)


async def test_reconciliation_repairs_a_corrupted_read_model_and_counts_it(
    dev_env: WorkflowEnvironment, engine: Engine
) -> None:
    address = f"127.0.0.1:{free_port()}"
    queue = f"reconcile-{uuid.uuid4().hex}"
    settings = Settings(
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=queue,
        worker_metrics_address=address,
    )
    client = await connect(settings, runtime=worker_runtime(settings))
    async with build_worker(client, engine, settings) as worker, worker:
        handle = await start(client, queue, new_input())
        await finish(handle, "setup_governance")
        pid = "131016-resident_registry"
        truth = _held(engine, pid)
        assert truth[4] == "done"
        for _ in range(300):  # the visibility store lists a new workflow a moment later
            if [wf async for wf in client.list_workflows(projects_query(queue))]:
                break
            await asyncio.sleep(0.1)

        # A read model that agrees with its workflows is left as it is: no false drift.
        clean: ReconcileResult = await client.execute_workflow(
            ReconcileWorkflow.run,
            ReconcileInput(share=1),
            id=f"rc-{uuid.uuid4().hex}",
            task_queue=queue,
        )
        assert (clean.checked, clean.repaired, clean.failed) == (1, 0, 0)

        # Rows changed behind the workflow's back: a status, the derived figures, an event.
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE project SET stage = 'completed', health = 'completed', done = 0 "
                    "WHERE id = :p"
                ),
                {"p": pid},
            )
            conn.execute(
                text(
                    "UPDATE task SET status = 'not_started' "
                    "WHERE project_id = :p AND key = 'setup_governance'"
                ),
                {"p": pid},
            )
            conn.execute(
                text(
                    "DELETE FROM event WHERE project_id = :p AND seq = "
                    "(SELECT max(seq) FROM event WHERE project_id = :p)"
                ),
                {"p": pid},
            )
        assert _held(engine, pid) != truth

        # The nightly Schedule's own action, triggered now instead of at 03:00 JST.
        schedule = client.get_schedule_handle(SCHEDULE_ID)
        with contextlib.suppress(RPCError):  # one a worker of another test left behind
            await schedule.delete()
        await ensure_reconcile_schedule(client, queue, share=1)  # every project tonight
        try:
            described = await schedule.describe()
            assert isinstance(described.schedule.action, ScheduleActionStartWorkflow)
            assert described.schedule.action.workflow == "ReconcileWorkflow"
            assert described.schedule.spec.time_zone_name == "Asia/Tokyo"
            assert described.schedule.spec.calendars[0].hour[0].start == 3
            await schedule.trigger()
            for _ in range(300):
                described = await schedule.describe()
                if described.info.recent_actions:
                    break
                await asyncio.sleep(0.1)
            run = described.info.recent_actions[-1].action
            repaired: ReconcileResult = await asyncio.wait_for(
                client.get_workflow_handle_for(ReconcileWorkflow.run, run.workflow_id).result(), 60
            )
        finally:
            await schedule.delete()

        assert (repaired.checked, repaired.repaired, repaired.failed) == (1, 1, 0)
        assert repaired.drift == {pid: ["event", "project", "task"]}
        assert _held(engine, pid) == truth

        text_metrics = ""
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                text_metrics = (await http.get(f"http://{address}/metrics")).text
                if "hyojunka_read_model_drift" in text_metrics:
                    break
                await asyncio.sleep(0.2)
        counted = dict(
            re.findall(r'hyojunka_read_model_drift\{[^}]*table="(\w+)"[^}]*\} (\d+)', text_metrics)
        )
        assert counted == {"event": "1", "project": "1", "task": "1"}, text_metrics[:3000]


def test_the_nightly_run_deletes_page_sessions_a_month_after_they_ended(
    database_url: str,
) -> None:
    """Signed-out and expired sessions go a month later; a browser still signed in keeps its
    session, and so does one that signed out last week."""
    from datetime import UTC, datetime, timedelta

    from sqlmodel import Session, select

    from activities.reconcile import prune_page_sessions
    from api.auth import (
        caller_for_page,
        create_token,
        end_page_session,
        hash_token,
        open_page_session,
    )
    from readmodel import tables as t
    from readmodel.db import make_engine

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            _, token = create_token(session, role="pm", name="pm", lg_code="131016")
            signed_in = open_page_session(session, token, hours=8)
            last_week = open_page_session(session, token, hours=8)
            long_ago = open_page_session(session, token, hours=8)
            expired = open_page_session(session, token, hours=8)
            assert signed_in and last_week and long_ago and expired
            end_page_session(session, last_week)
            end_page_session(session, long_ago)
        now = datetime.now(UTC)
        with engine.begin() as conn:  # as if they had ended, or expired, that long ago
            for secret, column, when in (
                (last_week, "ended_at", now - timedelta(days=7)),
                (long_ago, "ended_at", now - timedelta(days=31)),
                (expired, "expires_at", now - timedelta(days=40)),
            ):
                conn.execute(
                    t.PageSession.__table__.update()  # type: ignore[attr-defined]
                    .where(t.PageSession.id == hash_token(secret))
                    .values({column: when})
                )

        assert prune_page_sessions(engine) == 2
        assert prune_page_sessions(engine) == 0  # nothing more to do the next night
        with Session(engine) as session:
            assert caller_for_page(session, signed_in) is not None
            left = set(session.exec(select(t.PageSession.id)).all())
        assert left == {hash_token(signed_in), hash_token(last_week)}
    finally:
        engine.dispose()


def test_each_project_is_checked_once_a_week_and_each_night_a_seventh() -> None:
    """The default night checks one project in seven: over any seven nights in a row every
    project exactly once, and about as many each night."""
    ids = [f"migration-{1000 + i}-resident_registry" for i in range(7000)]
    nights = [date(2026, 12, 28) + timedelta(days=n) for n in range(7)]  # over a year-end
    share = ReconcileInput().share
    assert share == 7
    per_night = [sum(checked_tonight(i, share, night) for i in ids) for night in nights]
    for i in ids:
        assert sum(checked_tonight(i, share, night) for night in nights) == 1
    assert sum(per_night) == len(ids) and min(per_night) > 800
    assert all(checked_tonight(i, 1, nights[0]) for i in ids)
