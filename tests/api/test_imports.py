"""Bulk import (POST /api/v1/imports): good rows go in with their progress, bad rows are
refused by line with their reasons, a file that is not UTF-8 CSV changes nothing, the same
file twice changes nothing, and each caller imports only within its scope."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, func, select
from temporalio.client import WorkflowExecutionStatus

from api.imports import MAX_COLUMNS
from readmodel import tables as t
from readmodel.registry import registry
from tests.api.conftest import _USED, TARGET, Api, fresh_project
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.calendar import JST, jst_today

TODAY = jst_today(datetime.now(UTC))
HEADER = [
    "lg_code",
    "business",
    "target_go_live",
    "vendor_id",
    "switching_vendor",
    "setup_governance",
    "current_system_survey",
    "interface_inventory",
    "fit_gap_analysis",
]


def csv_file(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


async def post_import(
    api: Api, data: bytes, who: str = "admin", content_type: str = "text/csv"
) -> httpx.Response:
    headers = {**api.auth(who), "Content-Type": content_type}
    return await api.http.post("/api/v1/imports", content=data, headers=headers)


def project_count(api: Api) -> int:
    with Session(api.engine) as session:
        return session.exec(select(func.count()).select_from(t.Project)).one()


def assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["detail"]
    return body


def businesses_of(lg_code: str, n: int) -> list[str]:
    """``n`` businesses of one municipality that no other test has used."""
    free = [
        b.slug
        for b in BUSINESSES
        if b.slug not in PREFECTURE_BUSINESSES and (lg_code, b.slug) not in _USED
    ]
    chosen = free[:n]
    _USED.update((lg_code, b) for b in chosen)
    return chosen


def row(lg_code: str, business: str, *tasks: str, target: str = "") -> list[str]:
    cells = list(tasks) + [""] * (4 - len(tasks))
    return [lg_code, business, target or TARGET.isoformat(), "acme", "false", *cells]


async def test_import_creates_good_rows_and_refuses_each_bad_one_by_line(api: Api) -> None:
    good = [fresh_project() for _ in range(3)]
    # Each bad row a pair of its own: a second row for a pair is a duplicate, whatever it says.
    spare = [fresh_project() for _ in range(8)]
    earlier = (TODAY - timedelta(days=200)).isoformat()
    later = (TODAY - timedelta(days=100)).isoformat()
    future = (TODAY + timedelta(days=3)).isoformat()
    rows = [
        # line 2: under way, with dates
        row(*good[0], f"done:{earlier}", f"done:{later}", "in_progress", "in_progress"),
        # line 3: nothing reported yet
        row(*good[1]),
        # line 4: done without a date, and a task that does not apply
        row(*good[2], "done", "", "not_applicable"),
        row("131017", spare[0][1]),  # 5: check digit
        row(spare[1][0], "bookkeeping"),  # 6: unknown business
        row(*good[1]),  # 7: duplicate of line 3
        row(*spare[2], "done:2025-13-40"),  # 8: malformed date
        row(*spare[3], f"done:{future}"),  # 9: in the future
        row(*spare[4], "finished"),  # 10: not a state a cell may hold
        row(*spare[5], target="2020-04-01"),  # 11: go-live in the past
    ]
    # line 12: a task key the template does not have, given a state
    header = [*HEADER, "no_such_task"]
    data = csv_file([[*r, ""] for r in rows] + [[*row(*spare[6]), "done"]], header)
    resp = await post_import(api, data)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert (result["created"], result["existing"]) == (3, 0)
    refused = {r["line"]: " ".join(r["errors"]) for r in result["refused"]}
    assert sorted(refused) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert "check digit" in refused[5]
    assert "bookkeeping" in refused[6]
    assert "duplicate of line 3" in refused[7]
    assert "setup_governance" in refused[8] and "date" in refused[8]
    assert "setup_governance" in refused[9] and "future" in refused[9]
    assert "setup_governance" in refused[10] and "finished" in refused[10]
    assert "target_go_live" in refused[11]
    assert "no_such_task" in refused[12]
    assert project_count(api) == 3

    # The imported progress is the project's, as GET shows it.
    first = f"{good[0][0]}-{good[0][1]}"
    got = await api.http.get(f"/api/v1/projects/{first}", headers=api.auth("observer"))
    assert got.status_code == 200, got.text
    tasks = {x["key"]: x for x in got.json()["tasks"]}
    assert tasks["setup_governance"]["status"] == "done"
    completed = datetime.fromisoformat(tasks["setup_governance"]["completed_at"])
    assert completed.astimezone(JST).date().isoformat() == earlier
    assert tasks["current_system_survey"]["status"] == "done"
    assert tasks["interface_inventory"]["status"] == "in_progress"
    assert tasks["fit_gap_analysis"]["status"] == "in_progress"
    progress = got.json()["progress"]
    assert (progress["done"], progress["in_progress"]) == (2, 2)
    third = await api.http.get(
        f"/api/v1/projects/{good[2][0]}-{good[2][1]}", headers=api.auth("observer")
    )
    tasks = {x["key"]: x for x in third.json()["tasks"]}
    assert tasks["setup_governance"]["status"] == "done"
    assert tasks["interface_inventory"]["status"] == "not_applicable"

    # The same file again changes nothing.
    again = await post_import(api, data)
    assert again.status_code == 200, again.text
    assert (again.json()["created"], again.json()["existing"]) == (0, 3)
    assert again.json()["refused"] == result["refused"]
    assert project_count(api) == 3
    events = await api.http.get(f"/api/v1/projects/{first}/events", headers=api.auth("observer"))
    assert [e["kind"] for e in events.json()["items"]].count("project_created") == 1


async def test_import_accepts_a_byte_order_mark_and_crlf(api: Api) -> None:
    pair = fresh_project()
    data = b"\xef\xbb\xbf" + csv_file([row(*pair, "done")]).replace(b"\n", b"\r\n")
    resp = await post_import(api, data, content_type="text/csv; charset=utf-8")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"created": 1, "existing": 0, "refused": []}


async def test_import_refuses_a_file_that_is_not_utf8_csv_and_changes_nothing(api: Api) -> None:
    pair = fresh_project()
    good = csv_file([row(*pair)])
    shift_jis = good + "131016,住民基本台帳,2027-03-31,,,,,,\n".encode("shift_jis")
    body = assert_problem(await post_import(api, shift_jis), 422)
    assert "UTF-8" in body["detail"]
    for not_csv, content_type in [
        (b'{"lg_code": "131016"}', "text/csv"),  # JSON: no header naming the columns
        (b"", "text/csv"),  # empty
        (b'lg_code,business,target_go_live\n"131016,resident_registry\n', "text/csv"),
        (b"lg_code,business,target_go_live\n131016\x00,a,b\n", "text/csv"),  # binary
        (good, "application/json"),
    ]:
        body = assert_problem(await post_import(api, not_csv, content_type=content_type), 422)
        assert "CSV" in body["detail"], body
    assert project_count(api) == 0


async def test_import_refuses_a_header_of_too_many_columns_at_once(api: Api) -> None:
    pair = fresh_project()
    # Half a megabyte of one name repeated, and a thousand distinct names: each refused as a
    # whole, at once, rather than costing seconds of CPU before the answer.
    for extra in (["x"] * 60_000, [f"task_{i}" for i in range(1_000)]):
        data = csv_file([row(*pair) + [""] * len(extra)], header=HEADER + extra)
        started = time.perf_counter()
        body = assert_problem(await post_import(api, data), 422)
        assert time.perf_counter() - started < 1.0
        assert f"at most {MAX_COLUMNS} columns" in body["detail"], body
    # Under the limit, a repeated name is still named.
    body = assert_problem(await post_import(api, csv_file([], header=HEADER + ["x", "x"])), 422)
    assert "given once each (x)" in body["detail"]
    assert project_count(api) == 0


async def test_each_caller_imports_within_its_scope(api: Api) -> None:
    own, elsewhere = fresh_project(), fresh_project()
    while elsewhere[0][:2] == own[0][:2]:
        elsewhere = fresh_project()
    api.token("pm_import", "pm", lg_code=own[0])
    api.token("pref_import", "prefecture", prefecture=own[0][:2])
    api.token("observer_import", "observer")

    resp = await post_import(api, csv_file([row(*own), row(*elsewhere)]), who="pm_import")
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert (result["created"], result["existing"]) == (1, 0)
    assert [r["line"] for r in result["refused"]] == [3]
    assert "own local body" in result["refused"][0]["errors"][0]

    # The prefecture sees the pm's project (existing) and may add its bodies' projects,
    # never another prefecture's.
    more = (own[0], businesses_of(own[0], 1)[0])
    data = csv_file([row(*own), row(*more), row(*elsewhere)])
    resp = await post_import(api, data, who="pref_import")
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert (result["created"], result["existing"]) == (1, 1)
    assert [r["line"] for r in result["refused"]] == [4]
    events = await api.http.get(
        f"/api/v1/projects/{more[0]}-{more[1]}/events", headers=api.auth("observer")
    )
    assert events.json()["items"][0]["actor"] == "prefecture:pref_import"

    assert_problem(await post_import(api, csv_file([row(*elsewhere)]), who="observer_import"), 403)
    assert_problem(await post_import(api, csv_file([row(*elsewhere)]), who="vendor"), 403)
    assert project_count(api) == 2


async def test_tens_of_rows_start_concurrently_and_their_workflows_run(api: Api) -> None:
    bodies = [c for c in registry()._by_code if c[2:5] != "000"]
    pairs: list[tuple[str, str]] = []
    for code in bodies[100:]:
        pairs += [(code, b) for b in businesses_of(code, 4)]
        if len(pairs) >= 40:
            break
    on = (TODAY - timedelta(days=30)).isoformat()
    data = csv_file([row(c, b, f"done:{on}") for c, b in pairs])
    resp = await post_import(api, data)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"created": len(pairs), "existing": 0, "refused": []}
    listed = await api.http.get(
        "/api/v1/projects", params={"limit": 500}, headers=api.auth("observer")
    )
    assert listed.json()["total"] == len(pairs)
    assert all(p["progress"]["done"] == 1 for p in listed.json()["items"])
    for c, b in pairs[:: len(pairs) // 5]:
        handle = api.env.client.get_workflow_handle(f"migration-{c}-{b}")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_the_command_line_imports_through_the_same_path(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import _import_report, import_file

    good = fresh_project()
    data = csv_file([row(*good, "done"), row("131017", good[1])])
    settings = api.settings.model_copy(
        update={"temporal_address": api.env.client.service_client.config.target_host}
    )
    result, seconds = await import_file(settings, data)
    assert (result.created, result.existing, [r.line for r in result.refused]) == (1, 0, [3])
    assert _import_report(result, seconds) == 1
    out = capsys.readouterr().out
    assert "created 1, existing 0, refused 1 (of 2 rows)" in out
    assert "line 3: lg_code check digit does not match" in out
    again, _ = await import_file(settings, data)
    assert (again.created, again.existing) == (0, 1)


async def test_mic_figures_of_an_imported_portfolio_match_a_hand_count(api: Api) -> None:
    """Three projects in two bodies of two prefectures (bodies no other test uses, so the
    shared Temporal server holds none of their projects), imported with their progress; MIC's
    counts and rates by prefecture, body, business and step, worked out by hand: each project
    has 23 steps, and its RFP is 対象外 (the body keeps its vendor)."""
    a, b = businesses_of("452017", 2)
    c = next(x for x in businesses_of("392014", 3) if x not in (a, b))  # its own business row
    data = csv_file(
        [
            row("452017", a, "done:2025-04-01", "done:2025-06-30", "in_progress"),
            row("452017", b, "done:2025-05-01", "in_progress"),
            row("392014", c),
        ]
    )
    imported = await post_import(api, data)
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == 3 and imported.json()["refused"] == []

    async def report(group_by: str) -> dict[str, dict]:
        resp = await api.http.get(
            "/api/v1/reports/progress", params={"group_by": group_by}, headers=api.auth("admin")
        )
        assert resp.status_code == 200, resp.text
        return {r["group"]: r for r in resp.json()["items"]}

    def figures(steps: int, done: int, in_progress: int, not_applicable: int) -> dict:
        not_started = steps - done - in_progress - not_applicable
        return {
            "steps": steps,
            "done": done,
            "in_progress": in_progress,
            "not_started": not_started,
            "not_applicable": not_applicable,
            "completion_rate": round((done + not_applicable) / steps, 4),
            "in_progress_rate": round(in_progress / steps, 4),
            "not_started_rate": round(not_started / steps, 4),
        }

    def only(r: dict) -> dict:
        return {k: r[k] for k in figures(1, 0, 0, 0)}

    # Miyazaki: 3 done, 2 in progress, 2 RFPs not applicable, of 46 steps; Kochi: 1 of 23.
    miyazaki, kochi = figures(46, 3, 2, 2), figures(23, 0, 0, 1)
    by_prefecture = await report("prefecture")
    assert set(by_prefecture) == {"45", "39"}
    assert only(by_prefecture["45"]) == miyazaki and by_prefecture["45"]["name"] == "宮崎県"
    assert only(by_prefecture["39"]) == kochi and by_prefecture["39"]["name"] == "高知県"
    by_body = await report("lg_code")
    assert only(by_body["452017"]) == miyazaki and only(by_body["392014"]) == kochi
    by_business = await report("business")
    assert only(by_business[a]) == figures(23, 2, 1, 1)  # (2 + 1) / 23 = 0.1304
    assert only(by_business[b]) == figures(23, 1, 1, 1)
    assert only(by_business[c]) == kochi
    by_step = await report("task")
    assert len(by_step) == 23
    assert only(by_step["setup_governance"]) == figures(3, 2, 0, 0)
    assert by_step["setup_governance"]["name"] == "推進体制の立ち上げ"
    assert list(by_step)[:2] == ["setup_governance", "current_system_survey"]  # in order
    assert only(by_step["current_system_survey"]) == figures(3, 1, 1, 0)
    assert only(by_step["interface_inventory"]) == figures(3, 0, 1, 0)
    assert only(by_step["rfp"]) == figures(3, 0, 0, 3)
    assert only(by_step["cutover"]) == figures(3, 0, 0, 0)
    # Every step's counts add up to the nation's: 69 steps, as the prefectures' do.
    assert sum(r["steps"] for r in by_step.values()) == 69
    assert sum(r["done"] for r in by_step.values()) == 3
