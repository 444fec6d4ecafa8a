"""The vendors' bulk milestone feed (POST /api/v1/milestones) on the dev server with the real
worker: 1,000 items over 200 projects with ten bad ones, answered in order; the same feed
again changes nothing; NDJSON; and what is refused as a whole."""

from __future__ import annotations

import json
from collections import Counter

from sqlmodel import Session, col, select

from readmodel import tables as t
from tests.api.conftest import TARGET, Api, fresh_project
from tests.api.test_imports import TODAY, csv_file, post_import
from tests.api.test_projects import assert_problem
from workflows.procedure import DEFAULT_TEMPLATE

KEYS = [spec.key for spec in DEFAULT_TEMPLATE.tasks]
BEFORE_SETUP = [k for k in KEYS[: KEYS.index("system_setup")] if k != "rfp"]
DONE_ON = f"done:{TODAY.replace(day=1).isoformat()}"


async def _projects(api: Api, n: int, vendor: str = "acme") -> list[str]:
    """``n`` projects registered by import, everything before the vendor's setup done."""
    header = ["lg_code", "business", "target_go_live", "vendor_id", "switching_vendor"]
    rows = []
    for _ in range(n):
        lg_code, business = fresh_project()
        rows.append(
            [lg_code, business, TARGET.isoformat(), vendor, "false"] + [DONE_ON] * len(BEFORE_SETUP)
        )
    made = await post_import(api, csv_file(rows, header + BEFORE_SETUP))
    assert made.status_code == 200, made.text
    assert made.json()["refused"] == [], made.json()["refused"][:3]
    return [f"{r[0]}-{r[1]}" for r in rows]


def _steps(project_id: str, run: str) -> list[dict[str, object]]:
    """A vendor's log for one project: setup under way, half way, done; migration begun."""
    steps = [
        ("system_setup", "in_progress", 30),
        ("system_setup", "in_progress", 70),
        ("system_setup", "done", None),
        ("data_migration", "in_progress", 10),
        ("data_migration", "in_progress", 50),
    ]
    return [
        {
            "project_id": project_id,
            "task_key": task,
            "status": status,
            **({"percent": pct} if pct is not None else {}),
            "idempotency_key": f"{run}-{project_id}-{n}",
        }
        for n, (task, status, pct) in enumerate(steps)
    ]


def _milestones(api: Api, projects: list[str]) -> list[tuple[str, str]]:
    with Session(api.engine) as session:
        rows = session.exec(
            select(t.Milestone).where(col(t.Milestone.project_id).in_(projects))
        ).all()
    return [(r.project_id, r.idempotency_key) for r in rows]


async def test_a_thousand_items_with_ten_bad_ones_are_answered_in_order_and_once(
    api: Api,
) -> None:
    projects = await _projects(api, 200)
    (others,) = await _projects(api, 1, vendor="other")
    items = [item for p in projects for item in _steps(p, "feed")]
    assert len(items) == 1000
    # Ten bad items in place of second progress reports (nothing after them needs them).
    bad = {
        1: ({"project_id": "999999-nothing"}, 404),
        6: ({"project_id": others}, 404),  # another vendor's project
        11: ({"task_key": "training"}, 403),  # the municipality's task
        16: ({"task_key": "nonexistent"}, 404),
        21: ({"status": "not_applicable"}, 422),  # the route refuses it
        26: ({"status": "finished"}, 422),
        31: ({"percent": 150}, 422),
        36: ({"percent": -1}, 422),
        41: ({"idempotency_key": ""}, 422),
        46: ({"status": "failed"}, 422),  # failed is for the cutover only
    }
    for index, (change, _) in bad.items():
        items[index] = {**items[index], **change}
    first = await api.http.post(
        "/api/v1/milestones", json={"items": items}, headers=api.auth("vendor")
    )
    assert first.status_code == 200, first.text[:500]
    results = first.json()["results"]
    assert [r["index"] for r in results] == list(range(1000))
    statuses = {i: r["status"] for i, r in enumerate(results)}
    assert {i: statuses[i] for i in bad} == {i: want for i, (_, want) in bad.items()}
    good = [i for i in range(1000) if i not in bad]
    assert all(statuses[i] == 200 and not results[i]["duplicate"] for i in good)
    for i in bad:
        problem = results[i]["problem"]
        assert problem["status"] == statuses[i] and problem["detail"]
    # The read model holds exactly the 990, each once.
    held = _milestones(api, projects + [others])
    assert len(held) == 990 and len(set(held)) == 990
    assert all(n == 1 for n in Counter(held).values())
    # Milestone ids are the project's own: each good item has one of its project's.
    ids = {(items[i]["project_id"], results[i]["milestone_id"]) for i in good}
    assert len(ids) == 990

    # The same feed again: every good item a duplicate with its first answer; nothing new.
    again = await api.http.post(
        "/api/v1/milestones", json={"items": items}, headers=api.auth("vendor")
    )
    repeat = again.json()["results"]
    assert all(
        repeat[i]["duplicate"] and repeat[i]["milestone_id"] == results[i]["milestone_id"]
        for i in good
    )
    assert {i: repeat[i]["status"] for i in bad} == {i: want for i, (_, want) in bad.items()}
    assert len(_milestones(api, projects + [others])) == 990


async def test_ndjson_and_what_the_feed_refuses_whole(api: Api) -> None:
    (project,) = await _projects(api, 1)
    lines = "\n".join(json.dumps(item) for item in _steps(project, "nd")[:2])
    fed = await api.http.post(
        "/api/v1/milestones",
        content=lines.encode(),
        headers={**api.auth("vendor"), "Content-Type": "application/x-ndjson"},
    )
    assert fed.status_code == 200, fed.text
    assert [r["status"] for r in fed.json()["results"]] == [200, 200]
    # A pm posts no milestones; a feed of nothing, of too many, or not JSON: refused whole.
    assert_problem(
        await api.http.post(
            "/api/v1/milestones",
            json={"items": _steps(project, "pm")},
            headers=api.auth("observer"),
        ),
        403,
    )
    for body, status in (({"items": []}, 422), ({"items": [{}] * 5001}, 422), ({"x": 1}, 400)):
        resp = await api.http.post("/api/v1/milestones", json=body, headers=api.auth("vendor"))
        assert_problem(resp, status)
    broken = await api.http.post(
        "/api/v1/milestones",
        content=b"{not json",
        headers={**api.auth("vendor"), "Content-Type": "application/json"},
    )
    assert_problem(broken, 400)
    assert len(_milestones(api, [project])) == 2
