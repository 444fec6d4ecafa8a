"""Stored templates and moving a running project to a newer version, on the dev server."""

from __future__ import annotations

from dataclasses import asdict

import httpx

from tests.api.conftest import Api, ProjectCtx, fresh_project
from tests.api.test_projects import assert_problem
from workflows.procedure import DEFAULT_TEMPLATE

BASE = [asdict(spec) for spec in DEFAULT_TEMPLATE.tasks]
SECURITY = {
    "key": "security_review",
    "name": "セキュリティ対策の確認",
    "stage": "fit_gap",
    "owner": "municipality",
    "depends_on": ["fit_gap_analysis"],
    "due_offset_months": -20,
}


def version(v: str, tasks: list[dict[str, object]]) -> dict[str, object]:
    return {"id": "city-handbook", "version": v, "name": "市の手順書", "tasks": tasks}


async def test_a_running_project_moves_to_a_newer_version_of_its_template(
    api: Api, project: ProjectCtx
) -> None:
    admin = api.auth("admin")
    listed = (await api.http.get("/api/v1/templates", headers=api.auth("observer"))).json()
    assert [(x["id"], x["version"], x["builtin"]) for x in listed][0] == (
        "mic-handbook",
        "1.0",
        True,
    )
    # Bad templates are refused, naming what is wrong, and nothing is stored.
    cycle = [dict(t) for t in BASE]
    cycle[0] = {**cycle[0], "depends_on": ["decommission"]}
    for tasks in (cycle, [{**BASE[0], "owner": "mayor"}]):
        bad = await api.http.post("/api/v1/templates", json=version("x", tasks), headers=admin)
        assert_problem(bad, 422)
        assert bad.json()["errors"][0]["loc"] == ["body", "tasks"]
    assert_problem(
        await api.http.post("/api/v1/templates", json=version("1", BASE), headers=api.auth("pm")),
        403,
    )
    without_training = [t for t in BASE if t["key"] != "training"]
    without_training = [
        {**t, "depends_on": [d for d in t["depends_on"] if d != "training"]}
        for t in without_training
    ]
    v2 = [*without_training[:4], SECURITY, *without_training[4:]]
    v3 = [t for t in v2 if t["key"] != "setup_governance"]
    v3 = [{**t, "depends_on": [d for d in t["depends_on"] if d != "setup_governance"]} for t in v3]
    for v, tasks in (("1", BASE), ("2", v2), ("3", v3)):
        stored = await api.http.post("/api/v1/templates", json=version(v, tasks), headers=admin)
        assert stored.status_code == 201, stored.text
    again = await api.http.post("/api/v1/templates", json=version("1", BASE), headers=admin)
    assert_problem(again, 409)

    lg_code, business = fresh_project()
    made = await api.create(lg_code, business, template="city-handbook@1")
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    assert made.json()["template"] == "city-handbook@1"
    api.token("pm2", "pm", lg_code=lg_code)
    done = await api.http.post(
        f"/api/v1/projects/{pid}/tasks/setup_governance",
        json={"status": "done"},
        headers=api.auth("pm2"),
    )
    assert done.status_code == 200, done.text

    async def move(to: str, who: str = "pm2") -> httpx.Response:
        return await api.http.post(
            f"/api/v1/projects/{pid}/template",
            json={"template": to, "reason": "手順書の改訂"},
            headers=api.auth(who),
        )

    # A version that drops a task already done is refused, and nothing moves.
    assert_problem(await move("city-handbook@3"), 409)
    assert_problem(await move("mic-handbook@1.0"), 422)
    assert_problem(await move("city-handbook@9"), 422)
    assert_problem(await move("city-handbook@2", "observer"), 403)
    moved = await move("city-handbook@2")
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["template"] == "city-handbook@2"
    tasks = {x["key"]: x for x in body["tasks"]}
    assert "training" not in tasks and tasks["security_review"]["status"] == "not_started"
    assert tasks["setup_governance"]["status"] == "done"  # kept by key, with its state
    assert [x["key"] for x in body["tasks"]][4] == "security_review"  # in the new order
    assert body["progress"]["done"] == 1
    assert_problem(await move("city-handbook@2"), 409)
    trail = (
        await api.http.get(f"/api/v1/projects/{pid}/events", headers=api.auth("observer"))
    ).json()["items"]
    upgraded = [e for e in trail if e["kind"] == "template_upgraded"]
    assert upgraded and upgraded[0]["data"]["dropped"] == ["training"]
    # The new task's rules hold: it waits for Fit&Gap like the template says.
    early = await api.http.post(
        f"/api/v1/projects/{pid}/tasks/security_review",
        json={"status": "done"},
        headers=api.auth("pm2"),
    )
    assert_problem(early, 409)
