"""Joint procurement (共同調達) over the API, on the dev server with the real worker: three
bodies of one prefecture procure one system; one leaves before selection; the selection
completes the joint steps in the other two and gives them the vendor."""

from __future__ import annotations

import random
import uuid
from contextvars import ContextVar

from sqlalchemy import event
from sqlmodel import Session

from api.auth import PAGE_COOKIE, open_page_session
from readmodel.registry import registry
from tests.api.conftest import _USED, Api, fresh_project
from tests.api.test_projects import assert_problem
from tests.workflows.helpers import judged_by

JOINT = ["rfi_preparation", "rfi", "rfi_analysis", "rfp", "vendor_selection"]


def _three_bodies() -> tuple[list[str], str]:
    """Three municipalities of one prefecture, and a business none of them has used."""
    lead, business = fresh_project()
    same = [
        b.lg_code
        for b in registry().bodies
        if b.prefecture_code == lead[:2]
        and not b.is_prefecture
        and b.lg_code != lead
        and (b.lg_code, business) not in _USED
    ]
    others = random.sample(same, 2)
    _USED.update((c, business) for c in others)
    return [lead, *others], business


async def _task(api: Api, project_id: str, key: str, who: str = "observer") -> dict[str, object]:
    body = (await api.http.get(f"/api/v1/projects/{project_id}", headers=api.auth(who))).json()
    return next(x for x in body["tasks"] if x["key"] == key)


async def test_three_bodies_procure_together_and_one_leaves(api: Api) -> None:
    bodies, business = _three_bodies()
    proc_id = f"kyodo-{uuid.uuid4().hex[:8]}"  # one Temporal server serves every database
    # Each has its migration plan approved, no vendor yet.
    plan = {
        k: {"status": "done"} for k in [*judged_by("gate_migration_plan"), "gate_migration_plan"]
    }
    ids = []
    for code in bodies:
        made = await api.create(code, business, vendor_id=None, progress=plan)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    lead, second, third = ids
    api.token("pm", "pm", lg_code=bodies[0])
    api.token("approver", "approver", lg_code=bodies[0])
    api.token("pm3", "pm", lg_code=bodies[2])
    api.token("pref", "prefecture", prefecture=bodies[0][:2])

    # Bad input changes nothing: a member of another business, a project listed twice.
    wrong, wrong_business = fresh_project()
    while wrong_business == business:  # another business, or the member would be a fit
        wrong, wrong_business = fresh_project()
    assert (await api.create(wrong, wrong_business)).status_code == 201
    bad = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": "bad-1",
            "name": "誤り",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": [lead, f"{wrong}-{wrong_business}"],
        },
        headers=api.auth("admin"),
    )
    assert_problem(bad, 422)
    assert bad.json()["errors"][0]["loc"] == ["body", "members", 1]
    assert (
        await api.http.get("/api/v1/procurements/bad-1", headers=api.auth("admin"))
    ).status_code == 404

    made = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": proc_id,
            "name": "共同調達 第1グループ",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": ids,
        },
        headers=api.auth("pref"),
    )
    assert made.status_code == 201, made.text
    proc = made.json()
    assert proc["status"] == "open" and [t["key"] for t in proc["tasks"]] == JOINT
    assert sorted(m["project_id"] for m in proc["members"]) == sorted(ids)

    # While the procurement holds them, a member cannot move its joint steps or pick a
    # vendor on its own, and a project in one open procurement cannot join another.
    moved = await api.http.post(
        f"/api/v1/projects/{third}/tasks/rfi_preparation",
        json={"status": "in_progress"},
        headers=api.auth("pm3"),
    )
    assert_problem(moved, 409)
    assigned = await api.http.post(
        f"/api/v1/projects/{lead}/vendor",
        json={"vendor_id": "acme", "reason": "独自に決めたい"},
        headers=api.auth("pm"),
    )
    assert_problem(assigned, 409)
    again = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": "kyodo-2",
            "name": "重複",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": [lead],
        },
        headers=api.auth("pm"),
    )
    assert_problem(again, 422)

    # The third body leaves and goes on alone from where it stands.
    left = await api.http.delete(
        f"/api/v1/procurements/{proc_id}/members/{third}", headers=api.auth("pm")
    )
    assert left.status_code == 200, left.text
    assert {m["project_id"]: m["status"] for m in left.json()["members"]}[third] == "left"
    moved = await api.http.post(
        f"/api/v1/projects/{third}/tasks/rfi_preparation",
        json={"status": "in_progress"},
        headers=api.auth("pm3"),
    )
    assert moved.status_code == 200, moved.text

    # The lead body works the joint steps; only the lead's approver decides the gate.
    for key in JOINT[:-1]:
        step = await api.http.post(
            f"/api/v1/procurements/{proc_id}/tasks/{key}",
            json={"status": "done"},
            headers=api.auth("pm"),
        )
        assert step.status_code == 200, step.text
    not_lead = await api.http.post(
        f"/api/v1/procurements/{proc_id}/tasks/{JOINT[0]}",
        json={"status": "done"},
        headers=api.auth("pm3"),
    )
    assert not_lead.status_code in (403, 404)
    approved = await api.http.post(
        f"/api/v1/procurements/{proc_id}/gates/vendor_selection/decision",
        json={"outcome": "approve", "comment": "総合評価で決定", "vendor_id": "acme"},
        headers=api.auth("approver"),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "selected" and approved.json()["vendor_id"] == "acme"

    # In each remaining member the joint steps are done by the procurement, with its vendor.
    for pid in (lead, second):
        project = (
            await api.http.get(f"/api/v1/projects/{pid}", headers=api.auth("observer"))
        ).json()
        assert project["vendor_id"] == "acme"
        tasks = {x["key"]: x for x in project["tasks"]}
        for key in JOINT:
            assert tasks[key]["status"] in ("done", "not_applicable"), (pid, key)
        assert "共同調達" in (tasks["rfi"]["note"] or "")
        assert tasks["budget_request"]["status"] != "done"  # stays with the member
        events = (
            await api.http.get(f"/api/v1/projects/{pid}/events", headers=api.auth("observer"))
        ).json()["items"]
        kinds = [e["kind"] for e in events]
        assert "procurement_joined" in kinds and "procurement_completed" in kinds
    # The one that left kept its own way: no vendor, its own step in progress.
    alone = (await api.http.get(f"/api/v1/projects/{third}", headers=api.auth("observer"))).json()
    assert alone["vendor_id"] is None
    assert (await _task(api, third, "rfi_preparation"))["status"] == "in_progress"

    # Once the vendor is selected, nobody leaves.
    late = await api.http.delete(
        f"/api/v1/procurements/{proc_id}/members/{second}", headers=api.auth("pm")
    )
    assert_problem(late, 409)


async def test_a_member_page_shows_the_procurement_and_offers_no_joint_step(api: Api) -> None:
    bodies, business = _three_bodies()
    plan = {
        k: {"status": "done"} for k in [*judged_by("gate_migration_plan"), "gate_migration_plan"]
    }
    ids = []
    for code in bodies[:2]:
        made = await api.create(code, business, vendor_id=None, progress=plan)
        ids.append(made.json()["id"])
    made = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": f"kyodo-{bodies[0]}",
            "name": "共同調達 表示確認",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": ids,
        },
        headers=api.auth("admin"),
    )
    assert made.status_code == 201, made.text
    project = (await api.http.get(f"/api/v1/projects/{ids[1]}", headers=api.auth("admin"))).json()
    assert project["procurement_id"] == f"kyodo-{bodies[0]}"
    listed = (await api.http.get("/api/v1/procurements", headers=api.auth("observer"))).json()
    assert f"kyodo-{bodies[0]}" in [p["id"] for p in listed["items"]]
    # Another body's pm does not see it.
    api.token("stranger", "pm", lg_code="011002" if bodies[0][:2] != "01" else "131016")
    hidden = await api.http.get(
        f"/api/v1/procurements/kyodo-{bodies[0]}", headers=api.auth("stranger")
    )
    assert hidden.status_code == 404
    # The member's page says so, and offers no button on the steps the procurement carries.
    api.token("member_pm", "pm", lg_code=bodies[1])
    with Session(api.engine) as session:
        cookie = open_page_session(session, api.tokens["member_pm"], 1.0)
    page = await api.http.get(f"/projects/{ids[1]}", cookies={PAGE_COOKIE: cookie or ""})
    assert page.status_code == 200
    html = page.text
    assert "共同調達「共同調達 表示確認」" in html
    row = html[html.index('id="task-rfi"') : html.index('id="task-rfi_analysis"')]
    assert "共同調達で実施" in row and "<button" not in row


async def _procurements(api: Api, n: int) -> tuple[list[str], list[str], str]:
    """``n`` procurements of one body each, led by three bodies of one prefecture: their
    ids, the bodies and the business."""
    bodies, business = _three_bodies()
    plan = {
        k: {"status": "done"} for k in [*judged_by("gate_migration_plan"), "gate_migration_plan"]
    }
    ids = []
    for i, code in enumerate(bodies[:n]):
        made = await api.create(code, business, vendor_id=None, progress=plan)
        assert made.status_code == 201, made.text
        proc_id = f"kyodo-{uuid.uuid4().hex[:8]}-{i}"
        created = await api.http.post(
            "/api/v1/procurements",
            json={
                "id": proc_id,
                "name": f"調達 {i}",
                "lead_lg_code": code,
                "business": business,
                "members": [made.json()["id"]],
            },
            headers=api.auth("admin"),
        )
        assert created.status_code == 201, created.text
        ids.append(proc_id)
    return sorted(ids), bodies, business


async def test_the_procurement_list_is_paged_and_read_in_a_fixed_number_of_queries(
    api: Api,
) -> None:
    ids, _, _ = await _procurements(api, 3)
    url = "/api/v1/procurements"
    first = await api.http.get(url, params={"limit": 2}, headers=api.auth("observer"))
    assert first.status_code == 200, first.text
    assert first.json()["total"] == 3
    assert [p["id"] for p in first.json()["items"]] == ids[:2]
    rest = (
        await api.http.get(url, params={"limit": 2, "offset": 2}, headers=api.auth("observer"))
    ).json()
    assert [p["id"] for p in rest["items"]] == ids[2:] and rest["total"] == 3
    assert all(len(p["members"]) == 1 for p in first.json()["items"] + rest["items"])
    assert_problem(await api.http.get(url, params={"limit": 501}, headers=api.auth("admin")), 422)

    # Only the requests' own statements: the worker shares the engine, and its activities
    # (the members' notices being delivered, say) may read meanwhile. The API's threads run
    # in a copy of the request's context, the worker's do not.
    statements: list[str] = []
    requesting: ContextVar[bool] = ContextVar("requesting", default=False)

    def count(*args: object) -> None:
        if requesting.get():
            statements.append(str(args[2]))

    event.listen(api.engine, "before_cursor_execute", count)
    token = requesting.set(True)
    try:
        await api.http.get(url, params={"limit": 1}, headers=api.auth("admin"))
        one = len(statements)
        assert one > 0  # the requests' statements are seen
        statements.clear()
        await api.http.get(url, params={"limit": 3}, headers=api.auth("admin"))
        assert len(statements) == one, statements
    finally:
        requesting.reset(token)
        event.remove(api.engine, "before_cursor_execute", count)


async def test_a_procurement_id_in_use_elsewhere_is_not_revealed(api: Api) -> None:
    """A pm of another prefecture learns nothing of a procurement it cannot see: not from a
    creation that could not have succeeded anyway, not from one that collides, and every
    address under its id is 404."""
    [taken], bodies, business = await _procurements(api, 1)
    stranger_code = next(
        b.lg_code
        for b in registry().bodies
        if b.prefecture_code != bodies[0][:2]
        and not b.is_prefecture
        and (b.lg_code, business) not in _USED
    )
    _USED.add((stranger_code, business))
    api.token("stranger", "pm", lg_code=stranger_code)
    api.token("stranger_approver", "approver", lg_code=stranger_code)
    stranger = api.auth("stranger")
    body = {
        "name": "別の共同調達",
        "lead_lg_code": stranger_code,
        "business": business,
        "members": [f"{stranger_code}-{business}"],  # not created yet: no such project
    }
    # A creation that fails validation fails alike whether or not the id is in use.
    fresh = await api.http.post(
        "/api/v1/procurements", json={**body, "id": "kyodo-unused-x"}, headers=stranger
    )
    probe = await api.http.post(
        "/api/v1/procurements", json={**body, "id": taken}, headers=stranger
    )
    assert_problem(fresh, 422)
    assert_problem(probe, 422)
    assert probe.json()["errors"] == fresh.json()["errors"]

    # A valid creation whose id is in use is a conflict that says nothing of the other one,
    # in the very words the owner's own conflict gets.
    plan = {
        k: {"status": "done"} for k in [*judged_by("gate_migration_plan"), "gate_migration_plan"]
    }
    assert (await api.create(stranger_code, business, vendor_id=None, progress=plan)).is_success
    collided = await api.http.post(
        "/api/v1/procurements", json={**body, "id": taken}, headers=stranger
    )
    assert_problem(collided, 409)
    for secret in (bodies[0], "調達 0"):
        assert secret not in collided.text
    assert (await api.create(bodies[1], business, vendor_id=None, progress=plan)).is_success
    own = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": taken,
            "name": "x",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": [f"{bodies[1]}-{business}"],
        },
        headers=api.auth("admin"),
    )
    assert_problem(own, 409)
    assert own.json()["detail"] == collided.json()["detail"]
    project = (
        await api.http.get(f"/api/v1/projects/{stranger_code}-{business}", headers=stranger)
    ).json()
    assert project["procurement_id"] is None  # nothing changed

    # Out of scope, every address under the id is not found (never 403 or 409).
    base = f"/api/v1/procurements/{taken}"
    assert_problem(await api.http.get(base, headers=stranger), 404)
    for path, json, who in (
        (f"{base}/tasks/rfi_preparation", {"status": "in_progress"}, "stranger"),
        (f"{base}/members", {"project_id": f"{stranger_code}-{business}"}, "stranger"),
        (
            f"{base}/gates/vendor_selection/decision",
            {"outcome": "approve", "comment": "x", "vendor_id": "acme"},
            "stranger_approver",
        ),
    ):
        assert_problem(await api.http.post(path, json=json, headers=api.auth(who)), 404)
    assert_problem(
        await api.http.delete(f"{base}/members/{bodies[0]}-{business}", headers=stranger), 404
    )
