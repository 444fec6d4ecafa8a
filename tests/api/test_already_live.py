"""Systems already live register as they stand, through POST /api/v1/projects and through a
CSV import, beside systems still migrating: each with its real go-live date, in the past;
counted as live in the lists, MIC's progress report and the vendors' months; never told it
goes live after the deadline; its page renders. On the dev server with the real worker."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session

from api.auth import PAGE_COOKIE, open_page_session
from readmodel import tables as t
from tests.api.conftest import TARGET, Api, fresh_project
from tests.api.test_imports import businesses_of, post_import
from tests.workflows.helpers import judged_by
from workflows.calendar import JST
from workflows.core import GO_LIVE_TASK
from workflows.procedure import DEFAULT_TEMPLATE

LIVE_ON = date(2025, 10, 1)  # in time
LATE_LIVE_ON = date(2026, 6, 1)  # after the legal deadline of 2026-03-31
AFTER_GO_LIVE = ("post_go_live_review", "decommission")
VENDOR = "kadou"  # a vendor of this test's own, so its months count only these projects


def went_live(on: date, *, everything: bool = False) -> dict[str, dict[str, Any]]:
    """``progress`` of a system live since ``on``: the steps before it done a month earlier
    (no RFP: the body stays with its vendor); with ``everything``, the steps after it too."""
    before = (on - timedelta(days=30)).isoformat()
    progress = {k: {"status": "done", "on": before} for k in judged_by(GO_LIVE_TASK) if k != "rfp"}
    progress[GO_LIVE_TASK] = {"status": "done", "on": on.isoformat()}
    if everything:
        progress["post_go_live_review"] = {
            "status": "done",
            "on": (on + timedelta(days=30)).isoformat(),
        }
        progress["decommission"] = {"status": "done", "on": (on + timedelta(days=90)).isoformat()}
    return progress


def jst_day(timestamp: str) -> date:
    return datetime.fromisoformat(timestamp).astimezone(JST).date()


def add_vendor(api: Api) -> None:
    with Session(api.engine) as session:
        session.add(t.Vendor(id=VENDOR, name="稼働情報サービス"))
        session.commit()


async def create(
    api: Api, lg_code: str, business: str, target: date, **extra: Any
) -> httpx.Response:
    body = {
        "lg_code": lg_code,
        "business": business,
        "target_go_live": target.isoformat(),
        "vendor_id": VENDOR,
        **extra,
    }
    return await api.http.post("/api/v1/projects", json=body, headers=api.auth("admin"))


async def get(api: Api, path: str, who: str = "observer") -> Any:
    resp = await api.http.get(path, headers=api.auth(who))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def listed(api: Api, lg_code: str) -> dict[str, dict[str, Any]]:
    body = await get(api, f"/api/v1/projects?lg_code={lg_code}")
    return {p["id"]: p for p in body["items"]}


async def event_kinds(api: Api, project_id: str) -> list[str]:
    body = await get(api, f"/api/v1/projects/{project_id}/events?limit=500")
    return [e["kind"] for e in body["items"]]


async def by_business(api: Api, lg_code: str) -> dict[str, dict[str, Any]]:
    body = await get(api, f"/api/v1/reports/progress?group_by=business&lg_code={lg_code}")
    return {r["group"]: r for r in body["items"]}


async def page_of(api: Api, lg_code: str, project_id: str) -> str:
    api.token(f"pm-{lg_code}", "pm", lg_code=lg_code)
    with Session(api.engine) as session:
        cookie = open_page_session(session, api.tokens[f"pm-{lg_code}"], 1.0)
    page = await api.http.get(f"/projects/{project_id}", cookies={PAGE_COOKIE: cookie or ""})
    assert page.status_code == 200, page.text
    return page.text


def assert_refused(resp: httpx.Response, *words: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["errors"][0]["loc"] == ["body", "target_go_live"]
    for word in words:
        assert word in body["detail"]


async def test_live_systems_register_through_the_api_beside_one_still_migrating(api: Api) -> None:
    add_vendor(api)
    lg_code, first = fresh_project()
    done_all, late, migrating, refused_one = [first, *businesses_of(lg_code, 3)]
    ids = {b: f"{lg_code}-{b}" for b in (done_all, late, migrating)}

    made = await create(
        api, lg_code, done_all, LIVE_ON, progress=went_live(LIVE_ON, everything=True)
    )
    assert made.status_code == 201, made.text
    assert (made.json()["stage"], made.json()["health"]) == ("completed", "completed")
    assert made.json()["target_go_live"] == LIVE_ON.isoformat()

    made = await create(api, lg_code, late, LATE_LIVE_ON, progress=went_live(LATE_LIVE_ON))
    assert made.status_code == 201, made.text
    project = made.json()
    tasks = {x["key"]: x for x in project["tasks"]}
    assert tasks[GO_LIVE_TASK]["status"] == "done"
    assert jst_day(tasks[GO_LIVE_TASK]["completed_at"]) == LATE_LIVE_ON
    for key in AFTER_GO_LIVE:  # due from the real go-live: already past
        assert tasks[key]["status"] == "not_started"
        assert date.fromisoformat(tasks[key]["due_date"]) > LATE_LIVE_ON
        assert date.fromisoformat(tasks[key]["due_date"]) < date.today()
    assert project["stage"] == "cutover" and project["health"] == "overdue"

    made = await create(
        api, lg_code, migrating, TARGET, progress={"setup_governance": {"status": "done"}}
    )
    assert made.status_code == 201, made.text

    # A past target without a done cutover, or with a cutover on another day: refused.
    assert_refused(await create(api, lg_code, refused_one, LIVE_ON), "future", "live")
    other_day = went_live(LIVE_ON)
    other_day[GO_LIVE_TASK]["on"] = "2025-10-03"
    assert_refused(
        await create(api, lg_code, refused_one, LIVE_ON, progress=other_day), "2025-10-03"
    )
    gone = await api.http.get(
        f"/api/v1/projects/{lg_code}-{refused_one}", headers=api.auth("admin")
    )
    assert gone.status_code == 404

    projects = await listed(api, lg_code)
    assert {p: (x["stage"], x["health"]) for p, x in projects.items()} == {
        ids[done_all]: ("completed", "completed"),
        ids[late]: ("cutover", "overdue"),
        ids[migrating]: ("current_state", projects[ids[migrating]]["health"]),
    }
    assert projects[ids[migrating]]["health"] != "completed"
    # Live after the deadline, and never told so: the go-live already happened.
    assert "deadline_exceeded" not in await event_kinds(api, ids[late])

    report = await by_business(api, lg_code)
    assert report[done_all]["completion_rate"] == 1.0
    assert report[done_all]["not_started"] == report[done_all]["in_progress"] == 0
    assert report[late]["not_started"] == len(AFTER_GO_LIVE)
    assert report[migrating]["completion_rate"] < report[late]["completion_rate"] < 1.0

    # The vendor's go-lives are counted in the months they went live.
    for month, project_id in (("2025-10", ids[done_all]), ("2026-06", ids[late])):
        load = await get(api, f"/api/v1/vendors/{VENDOR}/capacity?from={month}&months=1", "admin")
        (row,) = load["months"]
        assert row["go_lives"] == 1
        assert [p["id"] for p in row["projects"]] == [project_id]

    # Their pages render, as any project's.
    html = await page_of(api, lg_code, ids[done_all])
    assert "badge h-completed" in html
    html = await page_of(api, lg_code, ids[late])
    assert 'id="task-decommission"' in html


def import_file(rows: list[dict[str, str]]) -> bytes:
    header = [
        "lg_code",
        "business",
        "target_go_live",
        "vendor_id",
        "switching_vendor",
        *(spec.key for spec in DEFAULT_TEMPLATE.tasks),
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def csv_row(lg_code: str, business: str, target: date, progress: dict[str, Any]) -> dict[str, str]:
    cells = {
        k: f"done:{p['on']}" if p["status"] == "done" and p.get("on") else p["status"]
        for k, p in progress.items()
    }
    return {
        "lg_code": lg_code,
        "business": business,
        "target_go_live": target.isoformat(),
        "vendor_id": VENDOR,
        "switching_vendor": "false",
        **cells,
    }


async def test_the_national_picture_imports_with_systems_already_live(api: Api) -> None:
    add_vendor(api)
    lg_code, first = fresh_project()
    done_all, late, undated, migrating, refused_one = [first, *businesses_of(lg_code, 4)]
    undated_progress = went_live(LIVE_ON)
    undated_progress[GO_LIVE_TASK] = {"status": "done"}  # the target is the day it went live
    rows = [
        csv_row(lg_code, done_all, LIVE_ON, went_live(LIVE_ON, everything=True)),  # line 2
        csv_row(lg_code, late, LATE_LIVE_ON, went_live(LATE_LIVE_ON)),  # line 3
        csv_row(lg_code, undated, LIVE_ON, undated_progress),  # line 4
        csv_row(lg_code, migrating, TARGET, {"setup_governance": {"status": "in_progress"}}),
        csv_row(lg_code, refused_one, LIVE_ON, {"setup_governance": {"status": "done"}}),  # 6
    ]
    data = import_file(rows)
    resp = await post_import(api, data)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert (result["created"], result["existing"]) == (4, 0)
    ((line, errors),) = [(r["line"], " ".join(r["errors"])) for r in result["refused"]]
    assert line == 6 and "target_go_live" in errors and "live" in errors

    ids = {b: f"{lg_code}-{b}" for b in (done_all, late, undated, migrating)}
    projects = await listed(api, lg_code)
    assert {p: (x["stage"], x["health"]) for p, x in projects.items() if p != ids[migrating]} == {
        ids[done_all]: ("completed", "completed"),
        ids[late]: ("cutover", "overdue"),
        ids[undated]: ("cutover", "overdue"),
    }
    assert projects[ids[migrating]]["stage"] == "current_state"
    for business in (done_all, late, undated):
        assert "deadline_exceeded" not in await event_kinds(api, ids[business])
    # A plan past the deadline is told, as before.
    assert "deadline_exceeded" in await event_kinds(api, ids[migrating])
    one = await get(api, f"/api/v1/projects/{ids[undated]}")
    cutover = next(x for x in one["tasks"] if x["key"] == GO_LIVE_TASK)
    assert jst_day(cutover["completed_at"]) == LIVE_ON

    report = await by_business(api, lg_code)
    assert report[done_all]["completion_rate"] == 1.0
    assert all(report[b]["completion_rate"] < 1.0 for b in (late, undated, migrating))
    steps = await get(api, f"/api/v1/reports/progress?group_by=task&lg_code={lg_code}")
    cutovers = next(r for r in steps["items"] if r["group"] == GO_LIVE_TASK)
    assert (cutovers["done"], cutovers["not_started"]) == (3, 1)

    load = await get(api, f"/api/v1/vendors/{VENDOR}/capacity?from=2025-10&months=1", "admin")
    assert sorted(p["id"] for p in load["months"][0]["projects"]) == sorted(
        [ids[done_all], ids[undated]]
    )

    # The same file again changes nothing.
    again = (await post_import(api, data)).json()
    assert (again["created"], again["existing"], len(again["refused"])) == (0, 4, 1)

    html = await page_of(api, lg_code, ids[undated])
    assert 'id="task-post_go_live_review"' in html
