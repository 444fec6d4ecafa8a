"""Monthly snapshots of MIC's figures and their trend, with the real worker and server."""

from __future__ import annotations

import uuid
from datetime import date

from tests.api.conftest import Api, ProjectCtx, fresh_project
from workflows.snapshot import ProgressSnapshotWorkflow, SnapshotInput


async def snapshot(api: Api, month: date) -> int:
    return await api.env.client.execute_workflow(
        ProgressSnapshotWorkflow.run,
        SnapshotInput(month),
        id=f"snapshot-{uuid.uuid4().hex}",
        task_queue=api.settings.task_queue,
    )


async def test_month_end_snapshots_show_the_trend_within_the_callers_scope(
    api: Api, project: ProjectCtx
) -> None:
    other, business = fresh_project()
    while other[:2] == project.lg_code[:2]:
        other, business = fresh_project()
    assert (await api.create(other, business)).status_code == 201
    assert await snapshot(api, date(2026, 9, 1)) >= 2
    moved = await api.http.post(
        f"/api/v1/projects/{project.id}/tasks/setup_governance",
        json={"status": "done"},
        headers=api.auth("pm"),
    )
    assert moved.status_code == 200, moved.text
    await snapshot(api, date(2026, 10, 1))
    assert await snapshot(api, date(2026, 10, 1)) >= 2  # again: replaced, not doubled

    trend = (await api.http.get("/api/v1/reports/trend", headers=api.auth("admin"))).json()
    months = [r["month"] for r in trend["items"]]
    assert months == ["2026-09", "2026-10"]
    september, october = trend["items"]
    assert october["done"] == september["done"] + 1
    assert october["steps"] == september["steps"]
    # The latest month is what the progress report says today.
    now = (await api.http.get("/api/v1/reports/progress", headers=api.auth("admin"))).json()
    assert october["done"] == sum(r["done"] for r in now["items"])
    # A prefecture sees its own bodies only, and per prefecture by name.
    pref = (
        await api.http.get(
            "/api/v1/reports/trend",
            params={"group_by": "prefecture"},
            headers=api.auth("prefecture"),
        )
    ).json()["items"]
    assert {r["group"] for r in pref} == {project.lg_code[:2]}
    assert all(not r["name"].isdigit() for r in pref)
    bad = await api.http.get(
        "/api/v1/reports/trend", params={"months": 0}, headers=api.auth("admin")
    )
    assert bad.status_code == 422
