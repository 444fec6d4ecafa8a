"""Procurement as it happens: the vendor chosen mid-way or replaced, and projects registered
when their migration is already under way. Over the API, on the dev server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.api.conftest import Api, ProjectCtx, fresh_project
from tests.api.test_deadlines import escalations
from tests.api.test_projects import assert_problem
from tests.api.test_work import (
    complete,
    complete_until,
    decide,
    events,
    get_task,
    milestone,
    task,
)
from tests.workflows.helpers import judged_by
from workflows.calendar import JST, add_months, jst_today
from workflows.procedure import DEFAULT_TEMPLATE


async def _without_vendor(api: Api) -> ProjectCtx:
    lg_code, business = fresh_project()
    resp = await api.create(lg_code, business, vendor_id=None)
    assert resp.status_code == 201, resp.text
    assert resp.json()["vendor_id"] is None
    api.token("pm", "pm", lg_code=lg_code)
    api.token("approver", "approver", lg_code=lg_code)
    return ProjectCtx(resp.json()["id"], lg_code, business)


async def test_a_vendor_chosen_at_the_gate_then_replaced_loses_the_project_at_once(
    api: Api,
) -> None:
    project = await _without_vendor(api)
    url = f"/api/v1/projects/{project.id}"
    # Nobody's vendor yet: the vendor's work cannot start, and no vendor sees the project.
    refused = await task(api, project, "system_setup", "in_progress", who="admin")
    assert_problem(refused, 409)
    assert "vendor" in refused.json()["detail"]
    assert (await api.http.get(url, headers=api.auth("vendor"))).status_code == 404

    await complete_until(api, project, stop_before="vendor_selection")
    unknown = await decide(api, project, "vendor_selection", "approve", vendor_id="nobody")
    assert_problem(unknown, 422)
    chosen = await decide(api, project, "vendor_selection", "approve", vendor_id="acme")
    assert chosen.status_code == 200, chosen.text
    assert (await api.http.get(url, headers=api.auth("observer"))).json()["vendor_id"] == "acme"

    # acme works and reports.
    await complete_until(api, project, stop_before="system_setup")
    first = await milestone(
        api, project, "acme-1", {"task_key": "system_setup", "status": "in_progress"}
    )
    assert first.status_code == 200, first.text

    # Replaced: the reason is required, and an unknown vendor is refused.
    vendor_url = f"{url}/vendor"
    no_reason = await api.http.post(
        vendor_url, json={"vendor_id": "other", "reason": ""}, headers=api.auth("pm")
    )
    assert_problem(no_reason, 422)
    vendor_itself = await api.http.post(
        vendor_url, json={"vendor_id": "other", "reason": "x"}, headers=api.auth("vendor")
    )
    assert_problem(vendor_itself, 403)  # it sees the project, but chooses no vendor
    replaced = await api.http.post(
        vendor_url,
        json={"vendor_id": "other", "reason": "契約解除のため"},
        headers=api.auth("pm"),
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["vendor_id"] == "other"

    # The first vendor: gone at once, for reading and writing; its report stays in the trail.
    assert (await api.http.get(url, headers=api.auth("vendor"))).status_code == 404
    again = await milestone(
        api, project, "acme-2", {"task_key": "system_setup", "status": "in_progress"}
    )
    assert_problem(again, 404)
    # The new vendor sees the whole history, including acme's report and the replacement.
    trail = await events(api, project, who="other_vendor")
    kinds = [e["kind"] for e in trail]
    assert "milestone_reported" in kinds
    assigned = [e["data"] for e in trail if e["kind"] == "vendor_assigned"]
    assert [(d["from"], d["to"]) for d in assigned] == [(None, "acme"), ("acme", "other")]
    assert assigned[-1]["reason"] == "契約解除のため"

    # Its load went with it: the vendor tasks count for the new vendor alone, and the
    # go-live, once the cutover is done, in the new vendor's month of it (six years from
    # January: the project's dates and today's).
    async def load(vendor: str) -> list[dict[str, Any]]:
        window = {"from": f"{date.today().year + 3}-01", "months": 36}
        got = await api.http.get(
            f"/api/v1/vendors/{vendor}/capacity", params=window, headers=api.auth("admin")
        )
        assert got.status_code == 200, got.text
        later = {"from": f"{date.today().year}-01", "months": 36}
        more = await api.http.get(
            f"/api/v1/vendors/{vendor}/capacity", params=later, headers=api.auth("admin")
        )
        return list(got.json()["months"]) + list(more.json()["months"])

    assert sum(m["tasks_due"] for m in await load("acme")) == 0
    assert sum(m["tasks_due"] for m in await load("other")) > 0
    for spec in DEFAULT_TEMPLATE.tasks:  # the rest of the project, the new vendor's part by it
        if (await get_task(api, project, spec.key))["status"] in ("done", "not_applicable"):
            continue
        if spec.owner == "vendor" and not spec.gate:
            body = {"task_key": spec.key, "status": "done"}
            done = await milestone(api, project, f"other-{spec.key}", body, who="other_vendor")
            assert done.status_code == 200, done.text
        else:
            await complete(api, project, spec.key)
    this_month = jst_today(datetime.now(UTC)).isoformat()[:7]
    live = [p for m in await load("other") if m["month"] == this_month for p in m["projects"]]
    assert [(p["id"], p["live"]) for p in live] == [(project.id, True)]
    assert not any(m["projects"] for m in await load("acme"))


async def test_a_project_under_way_is_registered_where_it_stands(api: Api) -> None:
    lg_code, business = fresh_project()
    api.token("pm", "pm", lg_code=lg_code)
    api.token("prefecture", "prefecture", prefecture=lg_code[:2])
    # Eight months to go-live: by the handbook most of the early work is long overdue, but
    # this body did it, and the approver signed the plan.
    target = add_months(date.today(), 8).isoformat()
    on = (date.today() - timedelta(days=200)).isoformat()
    progress = {key: {"status": "done", "on": on} for key in judged_by("gate_migration_plan")}
    progress["gate_migration_plan"] = {"status": "done", "on": on}
    progress["rfi_preparation"] = {"status": "in_progress"}
    resp = await api.create(lg_code, business, target_go_live=target, progress=progress)
    assert resp.status_code == 201, resp.text
    tasks = {x["key"]: x for x in resp.json()["tasks"]}
    assert tasks["migration_plan"]["status"] == "done"
    completed = datetime.fromisoformat(tasks["migration_plan"]["completed_at"])
    assert completed.astimezone(JST).date().isoformat() == on  # that day, in Japan
    gate = tasks["gate_migration_plan"]
    assert gate["status"] == "done" and gate["decision"]["by"] == "on import"
    assert tasks["rfi_preparation"]["status"] == "in_progress"

    # Only what someone can act on now escalates: not the done work, nor what waits behind
    # the RFI.
    late = {e["task_key"] for e in await escalations(api, "prefecture", status="open")}
    late |= {e["task_key"] for e in await escalations(api, "pm", status="open")}
    project_late = {k for k in late if k in tasks}
    assert project_late, "the RFI preparation is overdue and should say so"
    assert project_late <= {"rfi_preparation"}


async def test_impossible_progress_is_refused_naming_the_task_and_nothing_starts(
    api: Api,
) -> None:
    lg_code, business = fresh_project()
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    for progress, field in [
        ({"nothing": {"status": "done"}}, "nothing"),
        ({"setup_governance": {"status": "done", "on": tomorrow}}, "setup_governance"),
        ({"fit_gap_analysis": {"status": "done"}}, "fit_gap_analysis"),
        ({"gate_migration_plan": {"status": "in_progress"}}, "gate_migration_plan"),
    ]:
        resp = await api.create(lg_code, business, progress=progress)
        assert_problem(resp, 422)
        assert resp.json()["errors"][0]["loc"] == ["body", "progress", field], resp.text
    listed = await api.http.get(
        "/api/v1/projects", params={"lg_code": lg_code}, headers=api.auth("admin")
    )
    assert listed.json()["total"] == 0
