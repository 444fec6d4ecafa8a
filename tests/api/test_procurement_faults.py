"""Joint procurement when a member's project has closed under it: a creation cut short is
carried on by sending it again, and a selection reaches every member that can take it
instead of retrying the closed one for ever."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from activities.notifications import notice_link
from api.auth import PAGE_COOKIE, open_page_session
from readmodel import tables as t
from tests.api.conftest import Api
from tests.api.test_procurement import _three_bodies
from tests.api.test_projects import assert_problem
from tests.workflows.helpers import judged_by

PLAN = {k: {"status": "done"} for k in [*judged_by("gate_migration_plan"), "gate_migration_plan"]}


async def _members(api: Api) -> tuple[list[str], list[str], str]:
    bodies, business = _three_bodies()
    ids = []
    for code in bodies:
        made = await api.create(code, business, vendor_id=None, progress=PLAN)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    api.token("pm", "pm", lg_code=bodies[0])
    api.token("approver", "approver", lg_code=bodies[0])
    api.token("pref", "prefecture", prefecture=bodies[0][:2])
    return bodies, ids, business


async def _close(api: Api, project_id: str) -> None:
    """An operator ends a member's workflow (a project withdrawn from the programme)."""
    await api.env.client.get_workflow_handle(f"migration-{project_id}").terminate("withdrawn")


async def test_a_creation_cut_short_by_a_closed_member_carries_on_when_sent_again(
    api: Api,
) -> None:
    bodies, (lead, second, closed), business = await _members(api)
    await _close(api, closed)
    body = {
        "id": f"kyodo-{uuid.uuid4().hex[:8]}",
        "name": "共同調達 再送",
        "lead_lg_code": bodies[0],
        "business": business,
        "members": [lead, second, closed],
    }
    first = await api.http.post("/api/v1/procurements", json=body, headers=api.auth("pref"))
    assert_problem(first, 409)  # the closed member cannot join, and says so at once
    # Sent again without it: the same procurement, its two members once each.
    again = await api.http.post(
        "/api/v1/procurements", json={**body, "members": [lead, second]}, headers=api.auth("pref")
    )
    assert again.status_code == 201, again.text
    got = again.json()
    assert sorted(m["project_id"] for m in got["members"]) == sorted([lead, second])
    assert got["status"] == "open"
    # Someone else's creation under the same id is still refused.
    other = await api.http.post(
        "/api/v1/procurements",
        json={**body, "name": "別の調達", "members": [lead]},
        headers=api.auth("pref"),
    )
    assert_problem(other, 409)


async def test_a_selection_reaches_every_member_but_one_that_has_closed(api: Api) -> None:
    bodies, (lead, second, third), business = await _members(api)
    proc = f"kyodo-{uuid.uuid4().hex[:8]}"
    made = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": proc,
            "name": "共同調達 終了した参加団体",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": [lead, second, third],
        },
        headers=api.auth("pref"),
    )
    assert made.status_code == 201, made.text
    await _close(api, third)
    for key in ("rfi_preparation", "rfi", "rfi_analysis", "rfp"):
        moved = await api.http.post(
            f"/api/v1/procurements/{proc}/tasks/{key}",
            json={"status": "done"},
            headers=api.auth("pm"),
        )
        assert moved.status_code == 200, moved.text
    decided = await api.http.post(
        f"/api/v1/procurements/{proc}/gates/vendor_selection/decision",
        json={"outcome": "approve", "comment": "決定", "vendor_id": "acme"},
        headers=api.auth("approver"),
    )
    assert decided.status_code == 200, decided.text
    for member in (lead, second):
        project = await api.http.get(f"/api/v1/projects/{member}", headers=api.auth("admin"))
        assert project.json()["vendor_id"] == "acme"
        statuses = {t["key"]: t["status"] for t in project.json()["tasks"]}
        assert statuses["vendor_selection"] == "done"
    got = await api.http.get(f"/api/v1/procurements/{proc}", headers=api.auth("admin"))
    assert got.json()["status"] == "selected"
    with Session(api.engine) as session:
        row = session.get(t.Procurement, proc)
        assert row is not None
        unreachable = [e["data"] for e in row.events or [] if e["kind"] == "member_unreachable"]
    assert [d["workflow_id"] for d in unreachable] == [f"migration-{third}"]


async def test_a_procurement_s_notices_link_to_its_own_page_in_japanese(api: Api) -> None:
    bodies, (lead, second, _), business = await _members(api)
    proc = f"kyodo-{uuid.uuid4().hex[:8]}"
    made = await api.http.post(
        "/api/v1/procurements",
        json={
            "id": proc,
            "name": "共同調達 通知の宛先",
            "lead_lg_code": bodies[0],
            "business": business,
            "members": [lead, second],
        },
        headers=api.auth("pref"),
    )
    assert made.status_code == 201, made.text
    link = notice_link("https://hyojunka.example.lg.jp", f"procurement:{proc}")
    path = link.removeprefix("https://hyojunka.example.lg.jp")
    assert path == f"/procurements/{proc}"
    with Session(api.engine) as session:
        cookie = open_page_session(session, api.tokens["pm"], 1.0)
    page = await api.http.get(path, cookies={PAGE_COOKIE: cookie or ""})
    assert page.status_code == 200
    assert "共同調達　共同調達 通知の宛先" in page.text and "調達中" in page.text
    assert f'href="/projects/{second}"' in page.text
    # A body outside it gets the Japanese "not found" page, as for a project.
    api.token("stranger", "pm", lg_code="011002" if bodies[0][:2] != "01" else "131016")
    with Session(api.engine) as session:
        other = open_page_session(session, api.tokens["stranger"], 1.0)
    hidden = await api.http.get(path, cookies={PAGE_COOKIE: other or ""})
    assert hidden.status_code == 404 and "見つかりません" in hidden.text
