"""What a review found wrong in the write path, over the API on the dev server: a vendor that
could not acknowledge its own reminders, an approver silencing its own late gate, imports
refused or accepted against the task rules, template downgrades, long template names."""

from __future__ import annotations

from datetime import date, timedelta

from tests.api.conftest import Api, ProjectCtx, fresh_project
from tests.api.test_deadlines import escalations
from tests.api.test_projects import assert_problem
from tests.api.test_templates import BASE
from workflows.calendar import add_months, add_working_days, due_date
from workflows.procedure import DEFAULT_TEMPLATE

BEFORE_SYSTEM_SETUP = [
    s.key
    for s in DEFAULT_TEMPLATE.tasks[: [t.key for t in DEFAULT_TEMPLATE.tasks].index("system_setup")]
    if s.key != "rfp"
]


def target_for(task: str, due: date) -> date:
    """A go-live that puts ``task`` due on the working day ``due``."""
    offset = DEFAULT_TEMPLATE.task(task).due_offset_months
    base = add_months(due, int(-offset))
    for shift in range(-5, 6):
        target = base + timedelta(days=shift)
        if due_date(target, offset) == due:
            return target
    raise AssertionError(f"no go-live puts {task} due on {due}")


async def _registered(api: Api, target: date, progress: dict[str, dict[str, str]]) -> ProjectCtx:
    lg_code, business = fresh_project()
    resp = await api.create(lg_code, business, target_go_live=target.isoformat(), progress=progress)
    assert resp.status_code == 201, resp.text
    api.token("pm", "pm", lg_code=lg_code)
    api.token("approver", "approver", lg_code=lg_code)
    return ProjectCtx(resp.json()["id"], lg_code, business)


async def test_a_vendor_acknowledges_the_reminder_about_its_own_task(api: Api) -> None:
    # Everything before the vendor's system setup done; the setup due in a few days, so its
    # reminder has been raised (to the vendor) and nothing above it.
    target = target_for("system_setup", add_working_days(date.today(), 2))
    done = {k: {"status": "done", "on": "2025-04-01"} for k in BEFORE_SYSTEM_SETUP}
    project = await _registered(api, target, done)
    found = [
        e
        for e in await escalations(api, "vendor")
        if e["project_id"] == project.id and e["task_key"] == "system_setup"
    ]
    assert [(e["level"], e["audience"]) for e in found] == [("reminder", ["vendor"])]
    acked = await api.http.post(
        f"/api/v1/escalations/{found[0]['id']}/ack", headers=api.auth("vendor")
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    # Another vendor does not even see it.
    other = await api.http.post(
        f"/api/v1/escalations/{found[0]['id']}/ack", headers=api.auth("other_vendor")
    )
    assert_problem(other, 404)


async def test_a_late_gate_is_the_pm_s_to_acknowledge_not_its_approver_s(api: Api) -> None:
    # Everything the migration-plan gate judges done long ago; the gate itself overdue.
    judged = ["setup_governance", "current_system_survey", "interface_inventory"]
    judged += ["fit_gap_analysis", "spec_mapping", "migration_plan"]
    # Due two working days ago: overdue since yesterday's morning, the approver's rung ahead.
    target = target_for("gate_migration_plan", add_working_days(date.today(), -2))
    project = await _registered(
        api, target, {k: {"status": "done", "on": "2025-04-01"} for k in judged}
    )
    found = [
        e
        for e in await escalations(api, "admin")
        if e["project_id"] == project.id and e["task_key"] == "gate_migration_plan"
    ]
    overdue = [e for e in found if e["level"] == "overdue"]
    assert [e["audience"] for e in overdue] == [["pm"]], found
    url = f"/api/v1/escalations/{overdue[0]['id']}/ack"
    assert_problem(await api.http.post(url, headers=api.auth("approver")), 403)
    assert (await api.http.post(url, headers=api.auth("pm"))).status_code == 200


async def test_progress_is_held_to_the_task_rules_at_registration(api: Api) -> None:
    lg_code, business = fresh_project()
    # An undated done is not dated today: the dated task after it is accepted.
    ok = await api.create(
        lg_code,
        business,
        progress={
            "setup_governance": {"status": "done"},
            "current_system_survey": {"status": "done", "on": "2024-05-01"},
        },
    )
    assert ok.status_code == 201, ok.text
    tasks = {t["key"]: t for t in ok.json()["tasks"]}
    assert tasks["setup_governance"]["status"] == "done"
    assert tasks["setup_governance"]["completed_at"] is None
    # A cutover waved through before go/no-go, an RFP under way for a body keeping its
    # vendor: refused, and nothing is created.
    for progress in ({"cutover": {"status": "not_applicable"}}, {"rfp": {"status": "in_progress"}}):
        lg, bus = fresh_project()
        refused = await api.create(lg, bus, progress=progress)
        assert_problem(refused, 422)
        missing = await api.http.get(f"/api/v1/projects/{lg}-{bus}", headers=api.auth("admin"))
        assert missing.status_code == 404


async def test_a_project_on_a_long_template_name_moves_forward_only(api: Api) -> None:
    admin = api.auth("admin")
    name, older, newer = "h" * 64, "2." + "0" * 30, "10." + "0" * 29
    for v in (older, newer):
        body = {"id": name, "version": v, "name": "長い名前の手順書", "tasks": BASE}
        stored = await api.http.post("/api/v1/templates", json=body, headers=admin)
        assert stored.status_code == 201, stored.text
    lg_code, business = fresh_project()
    created = await api.create(lg_code, business, template=f"{name}@{newer}")
    assert created.status_code == 201, created.text
    assert len(created.json()["template"]) == 97
    project_id = created.json()["id"]
    back = await api.http.post(
        f"/api/v1/projects/{project_id}/template",
        json={"template": f"{name}@{older}", "reason": "旧版に戻す"},
        headers=admin,
    )
    assert_problem(back, 409)
    got = await api.http.get(f"/api/v1/projects/{project_id}", headers=admin)
    assert got.json()["template"] == f"{name}@{newer}"
