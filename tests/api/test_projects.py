"""Creating, listing and reading projects, scope, and bad input: problem+json, nothing changed."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, func, select

from readmodel import tables as t
from readmodel.registry import registry
from tests.api.conftest import TARGET, Api, ProjectCtx, fresh_project


def assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def project_count(api: Api) -> int:
    with Session(api.engine) as session:
        return session.exec(select(func.count()).select_from(t.Project)).one()


async def test_create_project_returns_the_whole_project(api: Api) -> None:
    lg_code, business = fresh_project()
    resp = await api.create(lg_code, business)
    assert resp.status_code == 201, resp.text
    p = resp.json()
    assert p["id"] == f"{lg_code}-{business}"
    assert p["workflow_id"] == f"migration-{lg_code}-{business}"
    assert p["prefecture"] == lg_code[:2]
    assert p["stage"] == "current_state"
    assert p["template"] == "mic-handbook@1.0"
    assert p["deadline"] == "2026-03-31"
    assert p["target_go_live"] == TARGET.isoformat()
    assert p["past_deadline"] is True
    assert len(p["tasks"]) == 23
    rfp = next(x for x in p["tasks"] if x["key"] == "rfp")
    assert rfp["status"] == "not_applicable"
    assert p["progress"]["not_applicable"] == 1
    assert p["progress"]["completion_rate"] == round(1 / 23, 4)
    # read-your-writes: the list shows it at once
    listed = await api.http.get(
        "/api/v1/projects", params={"lg_code": lg_code}, headers=api.auth("observer")
    )
    assert [x["id"] for x in listed.json()["items"]] == [p["id"]]
    assert "tasks" not in listed.json()["items"][0] or listed.json()["items"][0]["tasks"] is None


async def test_create_project_twice_conflicts(api: Api, project: ProjectCtx) -> None:
    assert_problem(await api.create(project.lg_code, project.business), 409)
    assert project_count(api) == 1


@pytest.mark.parametrize(
    ("lg_code", "business", "extra", "field"),
    [
        ("131017", "resident_registry", {}, "lg_code"),  # wrong check digit
        ("13101", "resident_registry", {}, "lg_code"),  # too short
        ("139998", "resident_registry", {}, "lg_code"),  # check digit fine, no such body
        ("131016", "bookkeeping", {}, "business"),
        ("131016", "resident_registry", {"vendor_id": "nobody"}, "vendor_id"),
        ("130001", "resident_registry", {}, "business"),  # a prefecture does not run this
        ("131016", "resident_registry", {"target_go_live": "2020-04-01"}, "target_go_live"),
        ("131016", "resident_registry", {"target_go_live": "2031-04-01"}, "target_go_live"),
        ("131016", "resident_registry", {"target_go_live": "2027-02-30"}, "target_go_live"),
    ],
)
async def test_create_project_refuses_bad_input(
    api: Api, lg_code: str, business: str, extra: dict, field: str
) -> None:
    body = assert_problem(await api.create(lg_code, business, **extra), 422)
    assert any(field in e["loc"] for e in body["errors"]), body
    assert project_count(api) == 0


async def test_malformed_json_is_400(api: Api) -> None:
    resp = await api.http.post(
        "/api/v1/projects",
        content=b'{"lg_code": ',
        headers={**api.auth("admin"), "content-type": "application/json"},
    )
    assert_problem(resp, 400)


async def test_tokens_are_required_and_checked(api: Api) -> None:
    assert_problem(await api.http.get("/api/v1/projects"), 401)
    resp = await api.http.get("/api/v1/projects", headers={"Authorization": "Bearer hyj_nope"})
    assert_problem(resp, 401)


async def test_pm_creates_only_for_its_own_body(api: Api) -> None:
    lg_code, business = fresh_project()
    api.token("pm", "pm", lg_code="011002" if lg_code != "011002" else "012025")
    resp = await api.http.post(
        "/api/v1/projects",
        json={"lg_code": lg_code, "business": business, "target_go_live": TARGET.isoformat()},
        headers=api.auth("pm"),
    )
    assert_problem(resp, 403)
    api.token("pm2", "pm", lg_code=lg_code)
    resp = await api.http.post(
        "/api/v1/projects",
        json={"lg_code": lg_code, "business": business, "target_go_live": TARGET.isoformat()},
        headers=api.auth("pm2"),
    )
    assert resp.status_code == 201, resp.text


async def test_prefecture_can_own_its_own_projects(api: Api) -> None:
    lg_code, business = fresh_project(prefecture_owned=True)
    resp = await api.create(lg_code, business)
    assert resp.status_code == 201, resp.text
    assert resp.json()["body_name"] == registry().get(lg_code).name  # e.g. 東京都


async def test_visibility_follows_the_role_table(api: Api, project: ProjectCtx) -> None:
    path = f"/api/v1/projects/{project.id}"
    for who in ("observer", "admin", "pm", "approver", "prefecture", "vendor"):
        assert (await api.http.get(path, headers=api.auth(who))).status_code == 200, who
    for who in ("pm_elsewhere", "other_vendor"):
        assert_problem(await api.http.get(path, headers=api.auth(who)), 404)
        listed = await api.http.get("/api/v1/projects", headers=api.auth(who))
        assert listed.json() == {"items": [], "total": 0}
    assert_problem(await api.http.get("/api/v1/projects/999999-x", headers=api.auth("admin")), 404)


async def test_list_filters_and_paginates(api: Api) -> None:
    ids = []
    for _ in range(3):
        lg_code, business = fresh_project()
        resp = await api.create(lg_code, business)
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    page = await api.http.get("/api/v1/projects", params={"limit": 2}, headers=api.auth("observer"))
    assert page.json()["total"] == 3
    assert len(page.json()["items"]) == 2
    rest = await api.http.get(
        "/api/v1/projects", params={"limit": 2, "offset": 2}, headers=api.auth("observer")
    )
    assert [p["id"] for p in page.json()["items"] + rest.json()["items"]] == sorted(ids)
    none = await api.http.get(
        "/api/v1/projects", params={"stage": "cutover"}, headers=api.auth("observer")
    )
    assert none.json()["total"] == 0
    ext = await api.http.get(
        "/api/v1/projects", params={"extended": "false"}, headers=api.auth("observer")
    )
    assert ext.json()["total"] == 3
    bad = await api.http.get(
        "/api/v1/projects", params={"limit": 501}, headers=api.auth("observer")
    )
    assert_problem(bad, 422)


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.http.get("/healthz")).status_code == 200
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}


async def test_openapi_describes_the_contract(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/api/v1/projects",
        "/api/v1/projects/{project_id}",
        "/api/v1/projects/{project_id}/tasks/{key}",
        "/api/v1/projects/{project_id}/milestones",
        "/api/v1/projects/{project_id}/gates/{key}/decision",
        "/api/v1/projects/{project_id}/replan",
        "/api/v1/projects/{project_id}/extended-track",
        "/api/v1/approvals",
        "/api/v1/escalations",
        "/api/v1/escalations/{escalation_id}/ack",
        "/api/v1/projects/{project_id}/events",
        "/api/v1/reports/progress",
        "/api/v1/vendors",
        "/api/v1/tokens",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path


@pytest.mark.parametrize("progress", ["fresh", "late"])
async def test_a_created_project_is_listed_by_its_search_attributes_from_its_start(
    api: Api, progress: str
) -> None:
    """The creation sets the search attributes with the start, so the workflow's first turn
    does not upsert them, and an operator finds the project by body, stage and health at
    once; a late project imported mid-way (overdue, in a later stage) alike."""
    from datetime import date

    from temporalio.api.enums.v1 import EventType

    from workflows import search_attributes as sa
    from workflows.calendar import add_months

    lg_code, business = fresh_project()
    extra: dict[str, object] = {}
    if progress == "late":
        extra = {
            # Three months away: the early tasks' due dates are long past.
            "target_go_live": add_months(date.today(), 3).isoformat(),
            "progress": {
                "setup_governance": {"status": "done", "on": "2024-04-01"},
                "current_system_survey": {"status": "done", "on": "2024-09-30"},
            },
        }
    resp = await api.create(lg_code, business, **extra)
    assert resp.status_code == 201, resp.text
    made = resp.json()
    handle = api.env.client.get_workflow_handle(made["workflow_id"])
    history = await handle.fetch_history()
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in kinds
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.LG_CODE) == lg_code and attrs.get(sa.BUSINESS) == business
    assert attrs.get(sa.STAGE) == made["stage"] and attrs.get(sa.HEALTH) == made["health"]
    if progress == "late":
        assert made["health"] == "overdue"
