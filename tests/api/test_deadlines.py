"""Escalations, acknowledgement, replanning and the extended track over the API."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from tests.api.conftest import RECEIVER_HOST, Api, ProjectCtx, fresh_project
from tests.api.test_projects import assert_problem
from tests.api.test_work import counts, task
from tests.workflows.helpers import judged_by
from workflows.calendar import add_months


@pytest.fixture
async def late_project(api: Api) -> ProjectCtx:
    """A project planned so late that its first tasks are already overdue on creation."""
    lg_code, business = fresh_project()
    target = add_months(date.today(), 20)
    resp = await api.create(lg_code, business, target_go_live=target.isoformat())
    assert resp.status_code == 201, resp.text
    api.token("pm", "pm", lg_code=lg_code)
    api.token("approver", "approver", lg_code=lg_code)
    api.token("prefecture", "prefecture", prefecture=lg_code[:2])
    api.token("pm_elsewhere", "pm", lg_code="011002" if lg_code != "011002" else "012025")
    return ProjectCtx(resp.json()["id"], lg_code, business)


async def escalations(api: Api, who: str, **params: str) -> list[dict]:
    resp = await api.http.get("/api/v1/escalations", params=params, headers=api.auth(who))
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_late_tasks_escalate_once_to_where_they_stand(
    api: Api, late_project: ProjectCtx
) -> None:
    p = (await api.http.get(f"/api/v1/projects/{late_project.id}", headers=api.auth("pm"))).json()
    assert p["health"] == "overdue"
    mine = await escalations(api, "prefecture", status="open")
    gov = [e for e in mine if e["task_key"] == "setup_governance"]
    # Months late on creation: only the rung it stands at now, not every earlier one.
    assert [e["level"] for e in gov] == ["prefecture"]
    assert gov[0]["audience"] == ["prefecture"]
    assert await escalations(api, "pm_elsewhere") == []
    esc = gov[0]["id"]
    assert_problem(
        await api.http.post(f"/api/v1/escalations/{esc}/ack", headers=api.auth("observer")), 403
    )
    assert_problem(
        await api.http.post(f"/api/v1/escalations/{esc}/ack", headers=api.auth("pm_elsewhere")), 404
    )
    acked = await api.http.post(f"/api/v1/escalations/{esc}/ack", headers=api.auth("prefecture"))
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "prefecture:prefecture"
    # The pm is what the rung is about: it cannot silence it (and it is done already).
    assert_problem(
        await api.http.post(f"/api/v1/escalations/{esc}/ack", headers=api.auth("pm")), 403
    )
    again = await api.http.post(f"/api/v1/escalations/{esc}/ack", headers=api.auth("prefecture"))
    assert_problem(again, 409)
    assert (await task(api, late_project, "setup_governance", "done")).status_code == 200
    resolved = await escalations(api, "pm", status="resolved")
    assert esc in [e["id"] for e in resolved]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target_go_live": "2020-01-01", "reason": "x"}, "target_go_live"),
        ({"target_go_live": "2031-04-01", "reason": "x"}, "target_go_live"),
        ({"target_go_live": "next spring", "reason": "x"}, "target_go_live"),
        ({"target_go_live": "2029-04-01", "reason": ""}, "reason"),
    ],
)
async def test_bad_replans_are_refused(
    api: Api, late_project: ProjectCtx, body: dict, field: str
) -> None:
    before = counts(api, late_project.id)
    resp = await api.http.post(
        f"/api/v1/projects/{late_project.id}/replan", json=body, headers=api.auth("pm")
    )
    problem = assert_problem(resp, 422)
    assert any(field in e["loc"] for e in problem["errors"])
    assert counts(api, late_project.id) == before


async def test_replan_moves_due_dates_and_resolves_what_no_longer_applies(
    api: Api, late_project: ProjectCtx
) -> None:
    open_before = await escalations(api, "pm", status="open")
    assert open_before
    new_target = add_months(date.today(), 30)
    assert_problem(
        await api.http.post(
            f"/api/v1/projects/{late_project.id}/replan",
            json={"target_go_live": new_target.isoformat(), "reason": "x"},
            headers=api.auth("approver"),
        ),
        403,
    )
    resp = await api.http.post(
        f"/api/v1/projects/{late_project.id}/replan",
        json={"target_go_live": new_target.isoformat(), "reason": "ベンダ繁忙のため"},
        headers=api.auth("pm"),
    )
    assert resp.status_code == 200, resp.text
    p = resp.json()
    assert p["target_go_live"] == new_target.isoformat()
    assert p["health"] != "overdue"
    gov = next(x for x in p["tasks"] if x["key"] == "setup_governance")
    assert date.fromisoformat(gov["due_date"]) > date.today()
    assert await escalations(api, "pm", status="open") == []
    events = (
        await api.http.get(
            f"/api/v1/projects/{late_project.id}/events",
            params={"limit": 500},
            headers=api.auth("pm"),
        )
    ).json()["items"]
    replans = [e for e in events if e["kind"] == "replanned"]
    assert replans[-1]["data"]["reason"] == "ベンダ繁忙のため"


async def test_extended_track(api: Api, late_project: ProjectCtx) -> None:
    url = f"/api/v1/projects/{late_project.id}/extended-track"
    planned = add_months(date.today(), 40)
    before = counts(api, late_project.id)
    for body, field in (
        ({"ground": "budget", "planned_go_live": planned.isoformat(), "reason": "x"}, "ground"),
        (
            {"ground": "mainframe", "planned_go_live": "2031-04-01", "reason": "x"},
            "planned_go_live",
        ),
    ):
        problem = assert_problem(await api.http.post(url, json=body, headers=api.auth("pm")), 422)
        assert any(field in e["loc"] for e in problem["errors"])
    assert counts(api, late_project.id) == before
    resp = await api.http.post(
        url,
        json={
            "ground": "vendor_shortage",
            "planned_go_live": planned.isoformat(),
            "reason": "事業者のリソースひっ迫",
        },
        headers=api.auth("pm"),
    )
    assert resp.status_code == 200, resp.text
    p = resp.json()
    assert p["extended_track"]["ground"] == "vendor_shortage"
    assert p["deadline"] == planned.isoformat()
    assert p["target_go_live"] == planned.isoformat()
    assert p["past_deadline"] is False
    listed = await api.http.get(
        "/api/v1/projects", params={"extended": "true"}, headers=api.auth("observer")
    )
    assert [x["id"] for x in listed.json()["items"]] == [late_project.id]


async def test_channels_are_http_and_per_body(api: Api, project: ProjectCtx) -> None:
    ok = {
        "id": "slack-chiyoda",
        "kind": "slack",
        "url": "https://hooks.example.jp/T1",
        "lg_code": project.lg_code,
    }
    for bad, field in (
        ({**ok, "url": "ftp://hooks.example.jp/x"}, "url"),
        ({**ok, "url": "hooks.example.jp"}, "url"),
        ({**ok, "kind": "email"}, "kind"),
    ):
        problem = assert_problem(
            await api.http.post("/api/v1/channels", json=bad, headers=api.auth("pm")), 422
        )
        assert any(field in e["loc"] for e in problem["errors"])
    assert_problem(
        await api.http.post("/api/v1/channels", json=ok, headers=api.auth("pm_elsewhere")), 403
    )
    made = await api.http.post("/api/v1/channels", json=ok, headers=api.auth("pm"))
    assert made.status_code == 201, made.text
    assert [
        c["id"]
        for c in (await api.http.get("/api/v1/channels", headers=api.auth("pm"))).json()["items"]
    ] == ["slack-chiyoda"]
    assert (await api.http.get("/api/v1/channels", headers=api.auth("pm_elsewhere"))).json()[
        "total"
    ] == 0
    gone = await api.http.delete("/api/v1/channels/slack-chiyoda", headers=api.auth("pm"))
    assert gone.status_code == 204


async def test_channels_cannot_point_inside_the_network(api: Api, project: ProjectCtx) -> None:
    for url in (
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8000/x",
        "http://localhost/",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://intranet/hook",
        "http://127.1/hook",
        "http://0x7f.0.0.1/hook",
        "http://2130706433/hook",
        "http://10.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://127.0.0.1:8000/x",
    ):
        body = {"id": "c1", "kind": "webhook", "url": url, "lg_code": project.lg_code}
        resp = await api.http.post("/api/v1/channels", json=body, headers=api.auth("pm"))
        assert_problem(resp, 422)
    assert (await api.http.get("/api/v1/channels", headers=api.auth("pm"))).json()["total"] == 0


async def test_a_reopened_task_escalates_afresh_and_can_be_acknowledged(api: Api) -> None:
    # Planned so late that the migration plan itself is past due when it is reopened.
    lg_code, business = fresh_project()
    resp = await api.create(
        lg_code, business, target_go_live=add_months(date.today(), 15).isoformat()
    )
    assert resp.status_code == 201, resp.text
    api.token("pm", "pm", lg_code=lg_code)
    api.token("approver", "approver", lg_code=lg_code)
    late_project = ProjectCtx(resp.json()["id"], lg_code, business)
    for key in judged_by("gate_migration_plan"):
        assert (await task(api, late_project, key, "done")).status_code == 200
    resp = await api.http.post(
        f"/api/v1/projects/{late_project.id}/gates/gate_migration_plan/decision",
        json={"outcome": "reject", "comment": "やり直し"},
        headers=api.auth("approver"),
    )
    assert resp.status_code == 200, resp.text
    fresh: list[dict] = []
    for _ in range(600):  # the ladder restarts on the workflow's next turn
        fresh = [
            e
            for e in await escalations(api, "pm", status="open")
            if e["task_key"] == "migration_plan"
        ]
        if fresh:
            break
        await asyncio.sleep(0.05)
    [esc] = fresh
    resolved = [e["id"] for e in await escalations(api, "pm", status="resolved")]
    assert esc["id"] not in resolved
    assert esc["audience"] == ["prefecture"]
    url = f"/api/v1/escalations/{esc['id']}/ack"
    assert_problem(await api.http.post(url, headers=api.auth("pm")), 403)  # its subject
    api.token("pref_here", "prefecture", prefecture=lg_code[:2])
    acked = await api.http.post(url, headers=api.auth("pref_here"))
    assert acked.status_code == 200, acked.text


async def test_delivery_attempts_are_listed_per_project(api: Api) -> None:
    """An operator-configured channel (here a local receiver) hears of a late project's
    escalations; every attempt is listed to those who can see the project."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from readmodel import tables as t
    from tests.receiver import Receiver

    lg_code, business = fresh_project()
    with Receiver(fail_first=1, host=RECEIVER_HOST) as receiver:
        with Session(api.engine) as session:
            session.add(
                t.NotificationChannel(
                    id="ops-hook",
                    kind="webhook",
                    url=receiver.url,
                    lg_code=lg_code,
                    created_at=datetime.now(UTC),
                )
            )
            session.commit()
        target = add_months(date.today(), 20).isoformat()
        resp = await api.create(lg_code, business, target_go_live=target)
        assert resp.status_code == 201, resp.text
        api.token("pm", "pm", lg_code=lg_code)
        api.token("pm_elsewhere", "pm", lg_code="011002" if lg_code != "011002" else "012025")
        pid = resp.json()["id"]
        items: list[dict] = []
        # The first attempt fails and Temporal retries it 10 s later; on a busy CI machine
        # the second notification may need as long again, so wait on the clock, not a count.
        give_up = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < give_up:
            got = await api.http.get(
                "/api/v1/deliveries",
                params={"project_id": pid, "outcome": "delivered"},
                headers=api.auth("pm"),
            )
            items = got.json()["items"]
            if len({i["notification_id"] for i in items}) >= 2:
                break
            await asyncio.sleep(0.1)
        # Read while the receiver is up: a later notification sent to it once it is gone
        # would add a failed attempt of its own.
        failed = (
            await api.http.get(
                "/api/v1/deliveries", params={"outcome": "failed"}, headers=api.auth("pm")
            )
        ).json()
    kinds = {c["body"]["kind"] for c in receiver.calls}
    assert {"deadline.exceeded", "escalation.prefecture"} <= kinds
    assert all(i["channel_id"] == "ops-hook" for i in items)
    assert failed["total"] == 1 and failed["items"][0]["status_code"] == 503
    elsewhere = await api.http.get("/api/v1/deliveries", headers=api.auth("pm_elsewhere"))
    assert elsewhere.json()["total"] == 0
