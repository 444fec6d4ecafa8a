"""A body's whole DX plan (the built-in programme template dx-plan): registered for the body,
worked through steps 0-2 on the pages by its pm and approver, its item ② completing from the
body's migration projects only once every one of them is live or not applicable (one
registered already live, one going live by its vendor's cutover milestone, one whose cutover
does not apply); and the national roll-up of the plans equal to a hand count. On the dev
server with the real worker (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

from readmodel.registry import registry
from tests.api.conftest import _USED, Api
from tests.api.test_projects import assert_problem
from tests.api.test_vendor_desk import _desk
from tests.workflows.helpers import judged_by
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.procedure import DX_PLAN_TEMPLATE, STANDARDISATION_ITEM
from workflows.programme import FOLLOWER, FollowInput, ProgrammeFollowWorkflow

PLAN = DX_PLAN_TEMPLATE.id  # dx-plan@1.0
PLAN_TARGET = date(2029, 3, 30)
STEPS_0_2 = [s.key for s in DX_PLAN_TEMPLATE.tasks if s.stage != "dx_step3"]


def _three_businesses(lg_code: str) -> list[str]:
    slugs = [b.slug for b in BUSINESSES if b.slug not in PREFECTURE_BUSINESSES]
    free = [s for s in slugs if (lg_code, s) not in _USED][:3]
    _USED.update((lg_code, s) for s in free)
    return free


def _fresh_bodies(n: int) -> list[str]:
    """``n`` municipalities whose plan no test on this Temporal server has made (one server
    serves both databases' runs)."""
    codes = [c for c in registry()._by_code if c[2:5] != "000"]
    found: list[str] = []
    while len(found) < n:
        code = random.choice(codes)
        if (code, "dx-plan") not in _USED:
            _USED.add((code, "dx-plan"))
            found.append(code)
    return found


def _done(keys: list[str], on: date) -> dict[str, dict[str, Any]]:
    return {k: {"status": "done", "on": on.isoformat()} for k in keys if k != "rfp"}


async def _follow(api: Api) -> Any:
    """The schedule's turn, now: ProgrammeFollowWorkflow on this test's worker."""
    return await api.env.client.execute_workflow(
        ProgrammeFollowWorkflow.run,
        FollowInput(),
        id=f"follow-{uuid.uuid4().hex}",
        task_queue=api.settings.task_queue,
    )


async def _item(api: Api, project_id: str, key: str) -> dict[str, Any]:
    got = await api.http.get(f"/api/v1/projects/{project_id}", headers=api.auth("admin"))
    return next(x for x in got.json()["tasks"] if x["key"] == key)


async def test_a_body_s_dx_plan_follows_its_migrations_to_item_two(api: Api) -> None:
    (lg,) = _fresh_bodies(1)
    live_b, milestone_b, na_b = _three_businesses(lg)
    api.token("pm", "pm", lg_code=lg)
    api.token("approver", "approver", lg_code=lg)
    went_live = date.today() - timedelta(days=40)
    before = went_live - timedelta(days=30)
    # Registered already live: its real go-live, in the past, with the cutover done on it.
    live = await api.create(
        lg,
        live_b,
        target_go_live=went_live.isoformat(),
        progress={**_done(judged_by("cutover"), before), **_done(["cutover"], went_live)},
    )
    assert live.status_code == 201, live.text
    # Ready for its cutover: the vendor reports it.
    ready = await api.create(lg, milestone_b, progress=_done(judged_by("cutover"), before))
    assert ready.status_code == 201, ready.text
    # Its cutover does not apply (decided once go/no-go was).
    skipped = await api.create(
        lg,
        na_b,
        progress={
            **_done(judged_by("cutover"), before),
            "cutover": {"status": "not_applicable"},
        },
    )
    assert skipped.status_code == 201, skipped.text

    # The plan: one for the body, on the built-in programme template, no business.
    made = await api.http.post(
        "/api/v1/projects",
        json={"lg_code": lg, "template": PLAN, "target_go_live": PLAN_TARGET.isoformat()},
        headers=api.auth("pm"),
    )
    assert made.status_code == 201, made.text
    plan = made.json()
    assert plan["id"] == f"{lg}-dx-plan" and plan["kind"] == "programme"
    assert plan["business_name"] == "自治体DX推進計画" and not plan["past_deadline"]
    # Lists keep the migrations by default; the plan is listed by its template.
    listed = await api.http.get("/api/v1/projects", params={"lg_code": lg}, headers=api.auth("pm"))
    assert sorted(x["business"] for x in listed.json()["items"]) == sorted(
        [live_b, milestone_b, na_b]
    )
    plans = await api.http.get(
        "/api/v1/projects", params={"lg_code": lg, "template": "dx-plan"}, headers=api.auth("pm")
    )
    assert [x["id"] for x in plans.json()["items"]] == [plan["id"]]

    # Steps 0-2 worked through on the pages: the pm's tasks, the approver's decision.
    pm = await _desk(api, "pm")
    approver = await _desk(api, "approver")
    try:
        page = await pm.get(f"/projects/{plan['id']}")
        assert page.status_code == 200 and "② 情報システムの標準化" in page.text
        assert "ステップ0 認識共有・機運醸成" in page.text
        for key in STEPS_0_2:
            spec = DX_PLAN_TEMPLATE.task(key)
            actor = approver if spec.gate else pm
            await actor.get(f"/projects/{plan['id']}")
            if spec.gate:
                sent = await actor.post(
                    f"/projects/{plan['id']}/gates/{key}", {"outcome": "approve"}
                )
            else:
                sent = await actor.post(f"/projects/{plan['id']}/tasks/{key}", {"status": "done"})
            assert sent.status_code == 303 and "err=" not in sent.headers["location"], key
    finally:
        await pm.aclose()
        await approver.aclose()
    for key in STEPS_0_2:
        assert (await _item(api, plan["id"], key))["status"] == "done", key

    # Not by hand: item ② follows the migrations.
    by_hand = await api.http.post(
        f"/api/v1/projects/{plan['id']}/tasks/{STANDARDISATION_ITEM}",
        json={"status": "done"},
        headers=api.auth("pm"),
    )
    assert_problem(by_hand, 409)
    # Two of three live or not applicable: it stays open.
    first = await _follow(api)
    assert plan["id"] not in first.completed
    assert (await _item(api, plan["id"], STANDARDISATION_ITEM))["status"] != "done"
    # The vendor's cutover milestone: every system live or not applicable, and item ② done.
    cut = await api.http.post(
        f"/api/v1/projects/{ready.json()['id']}/milestones",
        json={"task_key": "cutover", "status": "done"},
        headers={**api.auth("vendor"), "Idempotency-Key": f"cut-{uuid.uuid4().hex}"},
    )
    assert cut.status_code == 200, cut.text
    second = await _follow(api)
    assert plan["id"] in second.completed
    assert (await _item(api, plan["id"], STANDARDISATION_ITEM))["status"] == "done"
    trail = await api.http.get(f"/api/v1/projects/{plan['id']}/events", headers=api.auth("pm"))
    assert any(
        e["actor"] == FOLLOWER and e["data"].get("task_key") == STANDARDISATION_ITEM
        for e in trail.json()["items"]
    )
    assert plan["id"] not in (await _follow(api)).completed  # once


async def test_the_national_roll_up_of_the_dx_plan_equals_a_hand_count(api: Api) -> None:
    before = await api.http.get("/api/v1/reports/progress", headers=api.auth("observer"))
    migrations_before = sum(r["steps"] for r in before.json()["items"])
    bodies = sorted(_fresh_bodies(50))
    for code in bodies:
        made = await api.http.post(
            "/api/v1/projects",
            json={"lg_code": code, "template": PLAN, "target_go_live": PLAN_TARGET.isoformat()},
            headers=api.auth("admin"),
        )
        assert made.status_code == 201, made.text
    started = bodies[:10]  # ten bodies have shared the aims with their leadership
    for code in started:
        moved = await api.http.post(
            f"/api/v1/projects/{code}-dx-plan/tasks/dx_leadership_awareness",
            json={"status": "done"},
            headers=api.auth("admin"),
        )
        assert moved.status_code == 200, moved.text
    steps = len(DX_PLAN_TEMPLATE.tasks)
    by_pref = await api.http.get(
        "/api/v1/reports/progress",
        params={"template": "dx-plan", "group_by": "prefecture"},
        headers=api.auth("observer"),
    )
    rows = by_pref.json()["items"]
    hand: dict[str, list[int]] = {}
    for code in bodies:
        counts = hand.setdefault(code[:2], [0, 0])
        counts[0] += steps
        counts[1] += 1 if code in started else 0
    assert {r["group"]: [r["steps"], r["done"]] for r in rows} == hand
    by_step = await api.http.get(
        "/api/v1/reports/progress",
        params={"template": "dx-plan", "group_by": "task"},
        headers=api.auth("observer"),
    )
    steps_seen = {r["group"]: r for r in by_step.json()["items"]}
    assert set(steps_seen) == {s.key for s in DX_PLAN_TEMPLATE.tasks}
    assert steps_seen["dx_leadership_awareness"]["done"] == 10
    assert steps_seen["dx_leadership_awareness"]["name"] == "首長・幹部の認識共有"
    # The roll-up page, with its procedure selector on the plan.
    observer = await _desk(api, "observer")
    try:
        page = await observer.get("/reports?template=dx-plan&by=task")
        assert page.status_code == 200
        assert '<option value="dx-plan" selected>自治体DX推進計画</option>' in page.text
        assert "首長・幹部の認識共有" in page.text
    finally:
        await observer.aclose()
    # The migrations' report is what it was: the plans are not migrations.
    after = await api.http.get("/api/v1/reports/progress", headers=api.auth("observer"))
    assert sum(r["steps"] for r in after.json()["items"]) == migrations_before
