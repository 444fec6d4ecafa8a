"""Template rollouts (POST /api/v1/templates/{id}/rollouts) on the dev server with the real
worker: 300 running projects move to a revised template at once, the 10 that would lose work
under way are listed with their reasons and left as they were, a second run moves nothing,
and a prefecture rolls out to its own bodies only."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import asdict
from typing import Any

import httpx
from sqlmodel import Session, col, select

from readmodel import tables as t
from readmodel.registry import registry
from tests.api.conftest import _USED, TARGET, Api, fresh_project
from tests.api.test_imports import csv_file, post_import
from tests.api.test_projects import assert_problem
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.procedure import DEFAULT_TEMPLATE

BUILTIN = DEFAULT_TEMPLATE.name  # mic-handbook
FROM = DEFAULT_TEMPLATE.version  # 1.0
HEADER = ["lg_code", "business", "target_go_live", "vendor_id", "switching_vendor", "training"]
SECURITY = {
    "key": "security_review",
    "name": "セキュリティ対策の確認",
    "stage": "fit_gap",
    "owner": "municipality",
    "depends_on": ["fit_gap_analysis"],
    "due_offset_months": -20,
}


def revised(version: str) -> dict[str, Any]:
    """The built-in template's revision: a security review added after Fit&Gap, and
    ``training`` taken out (go/no-go no longer waits for it)."""
    tasks = [
        {**asdict(spec), "depends_on": [d for d in spec.depends_on if d != "training"]}
        for spec in DEFAULT_TEMPLATE.tasks
        if spec.key != "training"
    ]
    return {
        "id": BUILTIN,
        "version": version,
        "name": "総務省手順書 改訂版",
        "tasks": [*tasks[:4], SECURITY, *tasks[4:]],
    }


async def store(api: Api, version: str) -> None:
    stored = await api.http.post(
        "/api/v1/templates", json=revised(version), headers=api.auth("admin")
    )
    assert stored.status_code == 201, stored.text


async def register(api: Api, pairs: list[tuple[str, str]], training: set[int]) -> list[str]:
    """Projects on the built-in template, registered by import; those at the indexes in
    ``training`` with their training under way."""
    rows = [
        [lg, biz, TARGET.isoformat(), "acme", "false", "in_progress" if i in training else ""]
        for i, (lg, biz) in enumerate(pairs)
    ]
    made = await post_import(api, csv_file(rows, HEADER))
    assert made.status_code == 200, made.text
    assert made.json()["refused"] == [], made.json()["refused"][:3]
    return [f"{lg}-{biz}" for lg, biz in pairs]


async def roll_out(api: Api, who: str = "admin", **body: Any) -> httpx.Response:
    body = {"from": FROM, "reason": "手順書の改訂", **body}
    return await api.http.post(
        f"/api/v1/templates/{BUILTIN}/rollouts", json=body, headers=api.auth(who)
    )


async def finished(api: Api, rollout_id: str, who: str = "admin", seconds: float = 60) -> Any:
    """The rollout once it has completed, polled as a client would."""
    deadline = time.monotonic() + seconds
    while True:
        got = await api.http.get(f"/api/v1/rollouts/{rollout_id}", headers=api.auth(who))
        assert got.status_code == 200, got.text
        body = got.json()
        assert (
            body["total"]
            == body["moved"] + body["skipped"] + len(body["refused"]) + body["remaining"]
        )
        if body["status"] == "completed":
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


def templates_of(api: Api, ids: list[str]) -> Counter[str]:
    with Session(api.engine) as session:
        rows = session.exec(select(t.Project.template).where(col(t.Project.id).in_(ids))).all()
    return Counter(rows)


def upgrades_of(api: Api, ids: list[str]) -> Counter[str]:
    """How often each project's audit trail records a template upgrade."""
    with Session(api.engine) as session:
        rows = session.exec(
            select(t.Event.project_id).where(
                col(t.Event.project_id).in_(ids), t.Event.kind == "template_upgraded"
            )
        ).all()
    return Counter(rows)


def training_of(api: Api, ids: list[str]) -> set[str]:
    with Session(api.engine) as session:
        rows = session.exec(
            select(t.Task.status).where(col(t.Task.project_id).in_(ids), t.Task.key == "training")
        ).all()
    return set(rows)


async def test_a_rollout_moves_300_running_projects_and_lists_the_10_it_may_not(
    api: Api,
) -> None:
    await store(api, "1.1")
    pairs = [fresh_project() for _ in range(300)]
    training = set(random.sample(range(300), 10))
    ids = await register(api, pairs, training)
    kept = sorted(ids[i] for i in training)
    moving = [pid for pid in ids if pid not in set(kept)]

    started = await roll_out(api, to="1.1")
    assert started.status_code == 202, started.text
    first = started.json()
    assert (first["template"], first["from"], first["to"]) == (BUILTIN, FROM, "1.1")
    assert first["total"] == 300 and first["created_by"] == "admin:admin"
    t0 = time.monotonic()
    done = await finished(api, first["id"])
    print(f"\n300 projects rolled out in {time.monotonic() - t0:.1f} s")
    assert (done["moved"], done["skipped"], done["remaining"]) == (290, 0, 0)
    assert sorted(r["project_id"] for r in done["refused"]) == kept
    for r in done["refused"]:
        assert r["code"] == "template_drops"
        assert "training" in r["reason"] and r["japanese"]
    assert done["finished_at"] is not None
    # The moved ones are on the revision with its new task; the refused ones exactly as
    # they were: on 1.0, their training still under way, no upgrade in their trail.
    assert templates_of(api, moving) == Counter({f"{BUILTIN}@1.1": 290})
    assert templates_of(api, kept) == Counter({f"{BUILTIN}@{FROM}": 10})
    assert training_of(api, kept) == {"in_progress"} and training_of(api, moving) == set()
    assert upgrades_of(api, ids) == Counter({pid: 1 for pid in moving})
    project = await api.http.get(f"/api/v1/projects/{moving[0]}", headers=api.auth("observer"))
    keys = [task["key"] for task in project.json()["tasks"]]
    assert "security_review" in keys and "training" not in keys

    # Run again: only the ten still on 1.0 are found, refused again; nothing moves twice.
    again = await roll_out(api, to="1.1")
    assert again.status_code == 202, again.text
    assert again.json()["id"] != first["id"] and again.json()["total"] == 10
    second = await finished(api, again.json()["id"])
    assert (second["moved"], second["skipped"], len(second["refused"])) == (0, 0, 10)
    assert templates_of(api, ids) == Counter({f"{BUILTIN}@1.1": 290, f"{BUILTIN}@{FROM}": 10})
    assert upgrades_of(api, ids) == Counter({pid: 1 for pid in moving})

    listed = await api.http.get("/api/v1/rollouts", headers=api.auth("admin"))
    assert listed.json()["total"] == 2
    assert [r["id"] for r in listed.json()["items"]] == [again.json()["id"], first["id"]]


async def test_a_rollout_is_refused_without_existing_newer_versions_or_a_reason(
    api: Api,
) -> None:
    await store(api, "1.1")
    for body, where in (
        ({"to": "9.9"}, ["body", "to"]),
        ({"to": "1.1", "from": "0.9"}, ["body", "from"]),
        ({"to": FROM, "from": "1.1"}, ["body", "to"]),
        ({"to": "1.1", "reason": "  "}, ["body", "reason"]),
        ({"to": "1.1", "lg_code": "131017"}, ["body", "lg_code"]),
        ({"to": "1.1", "prefecture": "13", "lg_code": "011002"}, ["body", "lg_code"]),
    ):
        refused = assert_problem(await roll_out(api, **body), 422)
        assert refused["errors"][0]["loc"] == where, refused
    assert_problem(await roll_out(api, to="1.1", reason=""), 422)
    missing = await api.http.post(
        f"/api/v1/templates/{BUILTIN}/rollouts",
        json={"to": "1.1", "reason": "改訂"},
        headers=api.auth("admin"),
    )
    assert_problem(missing, 422)
    for role, scope in (("pm", {"lg_code": "131016"}), ("vendor", {}), ("observer", {})):
        if role not in api.tokens:
            api.token(role, role, **scope)
        assert_problem(await roll_out(api, role, to="1.1"), 403)
    assert_problem(
        await api.http.get("/api/v1/rollouts/nothing-here", headers=api.auth("admin")), 404
    )


def _pairs_in(prefecture: str, n: int) -> list[tuple[str, str]]:
    """``n`` (body, business) pairs of ``prefecture``'s municipalities no test has used."""
    codes = sorted(
        b.lg_code
        for b in registry().bodies
        if b.prefecture_code == prefecture and b.lg_code[2:5] != "000"
    )
    slugs = [b.slug for b in BUSINESSES if b.slug not in PREFECTURE_BUSINESSES]
    found: list[tuple[str, str]] = []
    while len(found) < n:
        pair = (random.choice(codes), random.choice(slugs))
        if pair not in _USED:
            _USED.add(pair)
            found.append(pair)
    return found


async def test_a_prefecture_rolls_out_to_its_own_bodies_only(api: Api) -> None:
    await store(api, "1.1")
    own = await register(api, _pairs_in("04", 4), set())
    others = await register(api, _pairs_in("05", 3), set())
    api.token("miyagi", "prefecture", prefecture="04")
    api.token("akita", "prefecture", prefecture="05")
    other_body = others[0].split("-")[0]
    for scope in ({"prefecture": "05"}, {"lg_code": other_body}, {}):
        assert_problem(await roll_out(api, "miyagi", to="1.1", **scope), 403)

    started = await roll_out(api, "miyagi", to="1.1", prefecture="04")
    assert started.status_code == 202, started.text
    rid = started.json()["id"]
    assert started.json()["prefecture"] == "04" and started.json()["total"] == 4
    done = await finished(api, rid, "miyagi")
    assert (done["moved"], done["refused"]) == (4, [])
    assert templates_of(api, own) == Counter({f"{BUILTIN}@1.1": 4})
    assert templates_of(api, others) == Counter({f"{BUILTIN}@{FROM}": 3})
    # Whoever started it reads it (and admin); another prefecture does not see it at all.
    assert_problem(await api.http.get(f"/api/v1/rollouts/{rid}", headers=api.auth("akita")), 404)
    admin_view = await api.http.get(f"/api/v1/rollouts/{rid}", headers=api.auth("admin"))
    assert admin_view.status_code == 200
    mine = await api.http.get("/api/v1/rollouts", headers=api.auth("miyagi"))
    theirs = await api.http.get("/api/v1/rollouts", headers=api.auth("akita"))
    assert [r["id"] for r in mine.json()["items"]] == [rid] and theirs.json()["total"] == 0

    # One body of its own: only that body's projects, and a repeat with the same
    # Idempotency-Key is that same rollout.
    one = await register(api, _pairs_in("04", 1), set())
    body_code = one[0].split("-")[0]
    # Its own key: one Temporal server serves both databases' runs of this test.
    key = {"Idempotency-Key": f"rollout-miyagi-{uuid.uuid4().hex}"}
    body = {"from": FROM, "to": "1.1", "reason": "改訂", "lg_code": body_code}
    url = f"/api/v1/templates/{BUILTIN}/rollouts"
    first = await api.http.post(url, json=body, headers={**api.auth("miyagi"), **key})
    assert first.status_code == 202, first.text
    done = await finished(api, first.json()["id"], "miyagi")
    assert done["moved"] == 1 and done["lg_code"] == body_code
    repeat = await api.http.post(url, json=body, headers={**api.auth("miyagi"), **key})
    assert repeat.status_code == 202 and repeat.json()["id"] == first.json()["id"]
    assert repeat.json()["moved"] == 1
    changed = {**body, "reason": "別の改訂"}
    assert_problem(
        await api.http.post(url, json=changed, headers={**api.auth("miyagi"), **key}), 409
    )
