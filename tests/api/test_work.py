"""Moving a project: tasks, milestones, gate decisions, approvals and the audit trail."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta
from typing import Any

import pytest
import structlog
from sqlmodel import Session, func, select
from temporalio.api.enums.v1 import EventType

from cli.main import rebuild_read_model
from readmodel import tables as t
from tests.api.conftest import Api, ProjectCtx
from tests.api.test_projects import assert_problem
from workflows.procedure import DEFAULT_TEMPLATE


def counts(api: Api, project_id: str) -> tuple[int, int]:
    """Events in the read model and the workflow's recorded seq: both must stay put on errors."""
    with Session(api.engine) as session:
        events = session.exec(
            select(func.count()).select_from(t.Event).where(t.Event.project_id == project_id)
        ).one()
        project = session.get(t.Project, project_id)
        assert project is not None
        return events, project.seq


async def accepted_updates(api: Api, project: ProjectCtx) -> int:
    """Updates the workflow ever accepted: a refused request must never add one. (The raw
    history length is no measure: child notification workflows report back at any time.)"""
    handle = api.env.client.get_workflow_handle(f"migration-{project.id}")
    return len(
        [
            e
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
    )


async def task(api: Api, project: ProjectCtx, key: str, status: str, who: str = "pm", **extra: Any):
    return await api.http.post(
        f"/api/v1/projects/{project.id}/tasks/{key}",
        json={"status": status, **extra},
        headers=api.auth(who),
    )


async def milestone(api: Api, project: ProjectCtx, key: str, body: dict, who: str = "vendor"):
    headers = {**api.auth(who), "Idempotency-Key": key}
    return await api.http.post(
        f"/api/v1/projects/{project.id}/milestones", json=body, headers=headers
    )


async def decide(
    api: Api,
    project: ProjectCtx,
    gate: str,
    outcome: str,
    who: str = "approver",
    comment: str | None = None,
    **extra: Any,
):
    return await api.http.post(
        f"/api/v1/projects/{project.id}/gates/{gate}/decision",
        json={"outcome": outcome, "comment": comment, **extra},
        headers=api.auth(who),
    )


async def events(api: Api, project: ProjectCtx, who: str = "observer") -> list[dict]:
    resp = await api.http.get(
        f"/api/v1/projects/{project.id}/events", params={"limit": 500}, headers=api.auth(who)
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


async def get_task(api: Api, project: ProjectCtx, key: str) -> dict:
    resp = await api.http.get(f"/api/v1/projects/{project.id}", headers=api.auth("observer"))
    return next(x for x in resp.json()["tasks"] if x["key"] == key)


async def complete(api: Api, project: ProjectCtx, key: str) -> None:
    spec = DEFAULT_TEMPLATE.task(key)
    if spec.gate:
        resp = await decide(api, project, key, "approve")
    elif spec.owner == "vendor":
        resp = await milestone(api, project, f"done-{key}", {"task_key": key, "status": "done"})
    else:
        resp = await task(api, project, key, "done")
    assert resp.status_code == 200, (key, resp.text)


async def complete_until(api: Api, project: ProjectCtx, stop_before: str | None = None) -> None:
    for spec in DEFAULT_TEMPLATE.tasks:
        if spec.key == stop_before:
            return
        if (await get_task(api, project, spec.key))["status"] in ("done", "not_applicable"):
            continue
        await complete(api, project, spec.key)


async def test_task_moves_and_get_shows_it_at_once(api: Api, project: ProjectCtx) -> None:
    resp = await task(api, project, "setup_governance", "in_progress", note="体制表を作成中")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "in_progress"
    assert resp.json()["started_at"] is not None
    assert (await get_task(api, project, "setup_governance"))["status"] == "in_progress"
    resp = await task(api, project, "setup_governance", "done")
    assert resp.json()["status"] == "done"
    assert (await get_task(api, project, "setup_governance"))["completed_at"] is not None
    body = (await api.http.get(f"/api/v1/projects/{project.id}", headers=api.auth("pm"))).json()
    assert body["progress"]["done"] == 1


@pytest.mark.parametrize(
    ("key", "status", "who", "expected"),
    [
        ("fit_gap_analysis", "done", "pm", 409),  # dependencies not done
        ("gate_migration_plan", "done", "pm", 409),  # a gate
        ("setup_governance", "in_progress", "approver", 403),  # approvers only decide gates
        ("setup_governance", "in_progress", "observer", 403),
        ("setup_governance", "in_progress", "prefecture", 403),
        ("setup_governance", "in_progress", "vendor", 403),  # a municipality task
        ("system_setup", "in_progress", "pm", 403),  # a vendor task
        ("setup_governance", "in_progress", "pm_elsewhere", 404),
        ("setup_governance", "in_progress", "other_vendor", 404),
        ("no_such_task", "in_progress", "pm", 404),
        ("setup_governance", "started", "pm", 422),
    ],
)
async def test_forbidden_moves_change_nothing(
    api: Api, project: ProjectCtx, key: str, status: str, who: str, expected: int
) -> None:
    before, accepted_before = counts(api, project.id), await accepted_updates(api, project)
    assert_problem(await task(api, project, key, status, who=who), expected)
    assert counts(api, project.id) == before
    assert await accepted_updates(api, project) == accepted_before


async def test_done_task_cannot_be_redone(api: Api, project: ProjectCtx) -> None:
    assert (await task(api, project, "setup_governance", "done")).status_code == 200
    assert_problem(await task(api, project, "setup_governance", "in_progress"), 409)
    assert_problem(await task(api, project, "setup_governance", "done"), 409)


async def test_milestone_replay_returns_first_answer_and_changes_nothing(
    api: Api, project: ProjectCtx
) -> None:
    await complete_until(api, project, stop_before="system_setup")
    body = {"task_key": "system_setup", "status": "in_progress", "percent": 40}
    first = await milestone(api, project, "vendor-run-17", body)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    assert first.json()["task"]["percent"] == 40
    state = counts(api, project.id)
    again = await milestone(api, project, "vendor-run-17", body)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["milestone_id"] == first.json()["milestone_id"]
    assert again.json()["task"] == first.json()["task"]
    assert counts(api, project.id) == state
    # The same key with another body is a client bug, said plainly.
    other = await milestone(api, project, "vendor-run-17", {**body, "percent": 90})
    assert_problem(other, 409)
    assert (await get_task(api, project, "system_setup"))["percent"] == 40


async def test_forty_vendors_reporting_at_once_to_one_project_are_all_answered(
    api: Api, project: ProjectCtx
) -> None:
    """Temporal takes ten updates in flight per workflow; the API queues the rest in turn
    instead of passing Temporal's refusal (and its seconds of backoff) on to vendors."""
    await complete_until(api, project, stop_before="system_setup")
    bodies = [
        {"task_key": "system_setup", "status": "in_progress", "percent": n} for n in range(40)
    ]
    answers = await asyncio.gather(
        *(milestone(api, project, f"burst-{n}", b) for n, b in enumerate(bodies))
    )
    assert [a.status_code for a in answers] == [200] * 40, [
        a.text for a in answers if a.status_code != 200
    ]
    ids = {a.json()["milestone_id"] for a in answers}
    assert len(ids) == 40
    with Session(api.engine) as session:
        stored = session.exec(
            select(func.count())
            .select_from(t.Milestone)
            .where(t.Milestone.project_id == project.id)
        ).one()
    assert stored >= 40


@pytest.mark.parametrize(
    ("body", "who", "headers_key", "expected"),
    [
        ({"task_key": "system_setup", "status": "in_progress"}, "vendor", None, 400),
        ({"task_key": "system_setup", "status": "in_progress", "percent": 101}, "vendor", "k", 422),
        ({"task_key": "system_setup", "status": "paused"}, "vendor", "k", 422),
        ({"task_key": "system_setup", "status": "failed"}, "vendor", "k", 422),  # not cutover
        ({"task_key": "system_setup", "status": "done"}, "vendor", "k", 409),  # deps not done
        ({"task_key": "setup_governance", "status": "in_progress"}, "vendor", "k", 403),
        ({"task_key": "nothing", "status": "in_progress"}, "vendor", "k", 404),
        ({"task_key": "system_setup", "status": "in_progress"}, "other_vendor", "k", 404),
        ({"task_key": "system_setup", "status": "in_progress"}, "pm", "k", 403),
    ],
)
async def test_bad_milestones_change_nothing(
    api: Api, project: ProjectCtx, body: dict, who: str, headers_key: str | None, expected: int
) -> None:
    before, accepted_before = counts(api, project.id), await accepted_updates(api, project)
    headers = api.auth(who)
    if headers_key:
        headers["Idempotency-Key"] = headers_key
    resp = await api.http.post(
        f"/api/v1/projects/{project.id}/milestones", json=body, headers=headers
    )
    assert_problem(resp, expected)
    assert counts(api, project.id) == before
    assert await accepted_updates(api, project) == accepted_before


async def test_gate_decisions_follow_four_eyes(api: Api, project: ProjectCtx) -> None:
    assert_problem(await decide(api, project, "gate_migration_plan", "approve"), 409)  # not waiting
    await complete_until(api, project, stop_before="gate_migration_plan")
    approvals = await api.http.get("/api/v1/approvals", headers=api.auth("approver"))
    items = approvals.json()["items"]
    assert [(a["project_id"], a["gate_key"]) for a in items] == [
        (project.id, "gate_migration_plan")
    ]
    assert items[0]["waiting_since"] is not None
    assert (await api.http.get("/api/v1/approvals", headers=api.auth("pm_elsewhere"))).json()[
        "total"
    ] == 0
    state = counts(api, project.id)
    for who in ("pm", "vendor", "admin", "observer"):
        assert_problem(await decide(api, project, "gate_migration_plan", "approve", who=who), 403)
    assert_problem(await decide(api, project, "gate_migration_plan", "reject"), 422)  # no comment
    assert_problem(await decide(api, project, "migration_plan", "approve"), 404)  # not a gate
    assert counts(api, project.id) == state
    rejected = await decide(api, project, "gate_migration_plan", "reject", comment="連携が未整理")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["decision"]["outcome"] == "reject"
    assert rejected.json()["decision"]["comment"] == "連携が未整理"
    plan = await get_task(api, project, "migration_plan")
    assert plan["status"] == "in_progress" and plan["note"] == "連携が未整理"
    assert (await api.http.get("/api/v1/approvals", headers=api.auth("approver"))).json()[
        "total"
    ] == 0
    await complete(api, project, "migration_plan")
    approved = await decide(api, project, "gate_migration_plan", "approve", comment="承認")
    assert approved.json()["status"] == "done"


async def test_whole_procedure_over_the_api(api: Api, project: ProjectCtx) -> None:
    await complete_until(api, project, stop_before="cutover")
    failed = await milestone(
        api,
        project,
        "cut-1",
        {"task_key": "cutover", "status": "failed", "note": "移行データ不整合"},
    )
    assert failed.status_code == 200, failed.text
    assert (await get_task(api, project, "go_no_go"))["status"] == "in_progress"
    await complete_until(api, project)
    body = (await api.http.get(f"/api/v1/projects/{project.id}", headers=api.auth("pm"))).json()
    assert body["stage"] == "completed"
    assert body["health"] == "completed"
    assert body["progress"]["completion_rate"] == 1.0
    events = (
        await api.http.get(
            f"/api/v1/projects/{project.id}/events",
            params={"limit": 500},
            headers=api.auth("observer"),
        )
    ).json()
    seqs = [e["seq"] for e in events["items"]]
    assert seqs == sorted(seqs) and events["total"] == len(seqs)
    kinds = [e["kind"] for e in events["items"]]
    assert kinds[0] == "project_created" and kinds[-1] == "project_completed"
    assert kinds.count("gate_decided") == 4  # three approvals and the reopened go/no-go
    # A closed project takes no more changes, and says so.
    assert_problem(await task(api, project, "decommission", "in_progress", who="vendor"), 409)


async def test_report_reproduces_mic_rates(api: Api, project: ProjectCtx) -> None:
    await task(api, project, "setup_governance", "done")
    await task(api, project, "current_system_survey", "in_progress")
    resp = await api.http.get(
        "/api/v1/reports/progress", params={"group_by": "business"}, headers=api.auth("prefecture")
    )
    [row] = resp.json()["items"]
    assert row["steps"] == 23
    assert row["done"] == 1 and row["not_applicable"] == 1 and row["in_progress"] == 1
    assert row["completion_rate"] == round(2 / 23, 4)
    assert row["in_progress_rate"] == round(1 / 23, 4)
    assert row["not_started_rate"] == round(20 / 23, 4)
    csv_resp = await api.http.get(
        "/api/v1/reports/progress",
        params={"group_by": "task", "format": "csv"},
        headers=api.auth("observer"),
    )
    assert csv_resp.headers["content-type"].startswith("text/csv")
    assert len(csv_resp.content.decode("utf-8-sig").strip().splitlines()) == 24


async def test_vendor_and_token_administration(api: Api) -> None:
    made = await api.http.post(
        "/api/v1/vendors",
        json={"id": "fujimi", "name": "富士見システム"},
        headers=api.auth("admin"),
    )
    assert made.status_code == 201
    assert_problem(
        await api.http.post(
            "/api/v1/vendors", json={"id": "fujimi", "name": "x"}, headers=api.auth("admin")
        ),
        409,
    )
    assert_problem(
        await api.http.post(
            "/api/v1/vendors", json={"id": "Bad Id!", "name": "x"}, headers=api.auth("admin")
        ),
        422,
    )
    assert_problem(
        await api.http.post(
            "/api/v1/vendors", json={"id": "x", "name": "x"}, headers=api.auth("observer")
        ),
        403,
    )
    tok = await api.http.post(
        "/api/v1/tokens",
        json={"role": "vendor", "vendor_id": "fujimi", "name": "ci"},
        headers=api.auth("admin"),
    )
    assert tok.status_code == 201
    secret = tok.json()["token"]
    me = await api.http.get("/api/v1/projects", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["total"] == 0
    with Session(api.engine) as session:
        stored = session.exec(select(t.ApiToken.token_hash)).all()
    assert secret not in stored
    for body in (
        {"role": "pm", "name": "x"},
        {"role": "pm", "name": "x", "lg_code": "131017"},
        {"role": "prefecture", "name": "x", "prefecture": "48"},
        {"role": "vendor", "name": "x", "vendor_id": "ghost"},
        {"role": "root", "name": "x"},
    ):
        assert_problem(
            await api.http.post("/api/v1/tokens", json=body, headers=api.auth("admin")), 422
        )


async def test_tokens_are_listed_without_secrets_and_revoked_or_expired_at_once(
    api: Api,
) -> None:
    made = await api.http.post(
        "/api/v1/tokens",
        json={"role": "observer", "name": "監査", "expires_on": "2099-03-31"},
        headers=api.auth("admin"),
    )
    assert made.status_code == 201, made.text
    token_id, secret = made.json()["id"], made.json()["token"]
    theirs = {"Authorization": f"Bearer {secret}"}
    assert (await api.http.get("/api/v1/projects", headers=theirs)).status_code == 200

    listed = await api.http.get("/api/v1/tokens", headers=api.auth("admin"))
    assert listed.status_code == 200
    mine = next(x for x in listed.json()["items"] if x["id"] == token_id)
    assert mine["expires_on"] == "2099-03-31" and mine["last_used_at"] is not None
    assert secret not in listed.text and "token" not in mine
    assert_problem(await api.http.get("/api/v1/tokens", headers=api.auth("observer")), 403)
    past = {"role": "observer", "name": "x", "expires_on": "2020-01-01"}
    assert_problem(await api.http.post("/api/v1/tokens", json=past, headers=api.auth("admin")), 422)

    # Revoked: refused at once, on every route.
    gone = await api.http.delete(f"/api/v1/tokens/{token_id}", headers=api.auth("admin"))
    assert gone.status_code == 204
    assert_problem(await api.http.get("/api/v1/projects", headers=theirs), 401)
    assert_problem(await api.http.delete("/api/v1/tokens/999999", headers=api.auth("admin")), 404)

    # Expired: the day after its last valid day.
    made = await api.http.post(
        "/api/v1/tokens", json={"role": "observer", "name": "短期"}, headers=api.auth("admin")
    )
    short = {"Authorization": f"Bearer {made.json()['token']}"}
    assert (await api.http.get("/api/v1/projects", headers=short)).status_code == 200
    with Session(api.engine) as session:
        row = session.get(t.ApiToken, made.json()["id"])
        assert row is not None
        row.expires_on = date.today() - timedelta(days=2)
        session.add(row)
        session.commit()
    assert_problem(await api.http.get("/api/v1/projects", headers=short), 401)


async def test_request_id_follows_a_write_into_workflow_and_activity_logs(
    api: Api, project: ProjectCtx, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs() as logs:
        resp = await api.http.post(
            f"/api/v1/projects/{project.id}/tasks/setup_governance",
            json={"status": "in_progress"},
            headers={**api.auth("pm"), "X-Request-ID": "req-7f3a"},
        )
    assert resp.status_code == 200
    assert resp.headers["X-Request-ID"] == "req-7f3a"
    workflow_lines = [r for r in caplog.records if getattr(r, "request_id", None) == "req-7f3a"]
    assert workflow_lines and workflow_lines[0].name.startswith("temporalio.workflow")
    assert any(e["event"] == "projected" and e.get("request_id") == "req-7f3a" for e in logs)
    assert any(e["event"] == "request" and e.get("status") == 200 for e in logs)


async def test_read_model_rebuilds_from_the_workflows(api: Api, project: ProjectCtx) -> None:
    await task(api, project, "setup_governance", "done")
    await task(api, project, "current_system_survey", "in_progress", note="調査票を配布")
    url = f"/api/v1/projects/{project.id}"
    before = (await api.http.get(url, headers=api.auth("pm"))).json()
    events_before = (await api.http.get(f"{url}/events", headers=api.auth("pm"))).json()
    with Session(api.engine) as session:
        for table in (t.Task, t.Event, t.Escalation, t.GateDecision, t.Milestone, t.Project):
            for row in session.exec(select(table)):
                session.delete(row)
        session.commit()
    assert_problem(await api.http.get(url, headers=api.auth("pm")), 404)
    rebuilt = 0
    for _ in range(300):  # the server's list of workflows lags their start a little
        rebuilt = await rebuild_read_model(api.env.client, api.engine, api.settings.task_queue)
        if rebuilt:
            break
        await asyncio.sleep(0.1)
    assert rebuilt == 1
    after = (await api.http.get(url, headers=api.auth("pm"))).json()
    assert after == before
    assert (await api.http.get(f"{url}/events", headers=api.auth("pm"))).json() == events_before


async def test_not_applicable_is_decided_when_a_task_is_reached(
    api: Api, project: ProjectCtx
) -> None:
    # A cutover cannot be waved through before go/no-go: it counts as complete.
    assert_problem(await task(api, project, "cutover", "not_applicable", who="vendor"), 409)
    assert_problem(await task(api, project, "interface_inventory", "not_applicable"), 409)
    await task(api, project, "setup_governance", "in_progress")
    assert_problem(await task(api, project, "setup_governance", "not_applicable"), 409)
    await task(api, project, "setup_governance", "done")
    resp = await task(api, project, "interface_inventory", "not_applicable", note="連携なし")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "not_applicable"


async def test_replay_with_the_same_request_id_header_is_still_a_duplicate(
    api: Api, project: ProjectCtx
) -> None:
    await complete_until(api, project, stop_before="system_setup")
    headers = {**api.auth("vendor"), "Idempotency-Key": "gw-1", "X-Request-ID": "gateway-77"}
    body = {"task_key": "system_setup", "status": "in_progress", "percent": 5}
    url = f"/api/v1/projects/{project.id}/milestones"
    first = await api.http.post(url, json=body, headers=headers)
    again = await api.http.post(url, json=body, headers=headers)
    assert first.json()["duplicate"] is False
    assert again.json()["duplicate"] is True


async def test_odd_input_is_refused_not_crashed_on(api: Api, project: ProjectCtx) -> None:
    body = assert_problem(await api.create("13101²", "resident_registry"), 422)
    assert any("lg_code" in e["loc"] for e in body["errors"])
    assert_problem(await api.create("１３１０１６", "resident_registry"), 422)
    assert_problem(
        await api.http.post(
            "/api/v1/tokens",
            headers=api.auth("admin"),
            json={"role": "pm", "name": "x", "lg_code": "１３１０１６"},
        ),
        422,
    )
    assert_problem(
        await api.http.get(
            "/api/v1/projects", params={"offset": 10**20}, headers=api.auth("admin")
        ),
        422,
    )
    plain = await api.http.post(
        f"/api/v1/projects/{project.id}/tasks/setup_governance",
        content=b"done",
        headers={**api.auth("pm"), "content-type": "text/plain"},
    )
    assert_problem(plain, 400)
    listed = await api.http.get("/api/v1/vendors", headers=api.auth("vendor"))
    assert [v["id"] for v in listed.json()["items"]] == ["acme"]
    # Bounded input: over-long strings are 422 naming the field; an over-large body is 413
    # before it is read. Nothing changes either way.
    before = counts(api, project.id)
    long_key = {"task_key": "x" * 65, "status": "in_progress"}
    answer = assert_problem(
        await api.http.post(
            f"/api/v1/projects/{project.id}/milestones",
            json=long_key,
            headers={**api.auth("vendor"), "Idempotency-Key": "long"},
        ),
        422,
    )
    assert any("task_key" in e["loc"] for e in answer["errors"])
    huge = await api.http.post(
        f"/api/v1/projects/{project.id}/tasks/setup_governance",
        json={"status": "in_progress", "note": "x" * 2_000_000},
        headers=api.auth("pm"),
    )
    assert_problem(huge, 413)
    assert counts(api, project.id) == before


async def test_operators_can_find_projects_by_search_attributes(
    api: Api, project: ProjectCtx
) -> None:
    client = api.env.client

    async def found(query: str) -> list[str]:
        return [wf.id async for wf in client.list_workflows(query)]

    wid = f"migration-{project.id}"
    base = f"HyojunkaLgCode = '{project.lg_code}' AND HyojunkaBusiness = '{project.business}'"
    await complete_until(api, project, stop_before="fit_gap_analysis")
    wanted = (
        f"{base} AND HyojunkaStage = 'fit_gap' AND HyojunkaHealth = 'at_risk'"
        f" AND HyojunkaPrefecture = '{project.lg_code[:2]}' AND HyojunkaVendor = 'acme'"
        f" AND HyojunkaTargetGoLive > '{date.today().isoformat()}T00:00:00Z'"
    )
    hits: list[str] = []
    for _ in range(300):  # the server's visibility store follows shortly after
        hits = await found(wanted)
        if hits:
            break
        await asyncio.sleep(0.1)
    assert hits == [wid]
    assert await found(f"{base} AND HyojunkaStage = 'current_state'") == []


async def test_identical_creations_at_once_are_one_success_and_conflicts(api: Api) -> None:
    """Twenty admins creating the same vendor in the same instant: one 201, the rest 409
    problem+json; never a 500."""
    body = {"id": "simul", "name": "同時登録"}
    answers = await asyncio.gather(
        *(api.http.post("/api/v1/vendors", json=body, headers=api.auth("admin")) for _ in range(20))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 19, codes
    for a in answers:
        if a.status_code == 409:
            assert_problem(a, 409)
