"""Vendors' load by month against their stated capacity (GET/PUT /api/v1/vendors/{id}/capacity,
GET /api/v1/reports/vendors), ``vendor_over_capacity`` on projects, its filter and its count in
the roll-up: a hand-built portfolio counted by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlmodel import Session, col, select

from api import vendors
from api.auth import Caller
from api.errors import HTTPProblem
from readmodel import tables as t
from readmodel.db import make_engine
from readmodel.golive import forecast_month, jst_month
from tests.api.conftest import Api, fresh_project
from workflows.calendar import add_months, jst_today

# ---- the SQL alone, on a hand-built read model with a fixed day -----------------------------

TODAY = date(2026, 4, 15)  # a Wednesday
ADMIN = Caller(1, "admin", "admin")
OBSERVER = Caller(2, "observer", "observer")
TOKYO = Caller(3, "tokyo", "prefecture", prefecture="13")
ACME = Caller(4, "acme", "vendor", vendor_id="acme")
OTHER = Caller(5, "other", "vendor", vendor_id="other")
PM = Caller(6, "pm", "pm", lg_code="131016")


def _project(pid: str, vendor: str, target: date, **given: Any) -> t.Project:
    lg_code, business = pid.split("-", 1)
    values: dict[str, Any] = dict(
        id=pid,
        workflow_id=f"migration-{pid}",
        lg_code=lg_code,
        body_name=f"団体{lg_code}",
        prefecture=lg_code[:2],
        business=business,
        business_name="住民基本台帳",
        vendor_id=vendor,
        template="mic-handbook@1.0",
        target_go_live=target,
        deadline=date(2026, 3, 31),
        forecast_go_live=target,
        forecast_slip_days=0,
        forecast_slips_from=None,
        stage="migration",
        health="on_track",
    )
    values.update(given)
    # The go-live columns as the projection writes them (activities/projection.py).
    terms = forecast_month(
        target,
        values["forecast_go_live"],
        values["forecast_slip_days"],
        values["forecast_slips_from"],
    )
    values.setdefault("forecast_month", terms.month)
    values.setdefault("forecast_moves_from", terms.moves_from)
    values.setdefault("forecast_offset", terms.offset)
    return t.Project(**values)


def _task(
    pid: str, key: str, due: date, status: str, owner: str = "vendor", **given: Any
) -> t.Task:
    return t.Task(
        project_id=pid,
        key=key,
        position=0,
        name=key,
        stage="migration",
        owner=owner,
        status=status,
        due_date=due,
        vendor_id="other" if pid.endswith("-o1") else "acme",
        **given,
    )


def portfolio(session: Session) -> None:
    """Three vendors; acme's projects going live in May, June and July (one live already, one
    slipping day by day, one whose forecast falls on a Sunday that moves it back a month),
    tasks of its own overdue; other's one project; third with none."""
    session.add(t.Vendor(id="acme", name="アクメ情報システム"))
    session.add(t.Vendor(id="other", name="他社"))
    session.add(t.Vendor(id="third", name="=第三システム"))  # a name a spreadsheet would run
    session.add_all(
        [
            # May: on time.
            _project("131016-a1", "acme", date(2026, 5, 20)),
            # June: a row written before the forecast's terms: its own forecast.
            _project(
                "131024-a2",
                "acme",
                date(2026, 5, 25),
                forecast_go_live=date(2026, 6, 10),
                forecast_slip_days=None,
            ),
            # June: slips a day a day from April 1st: 14 days today (2026-06-11, a Thursday).
            _project(
                "271004-a3",
                "acme",
                date(2026, 5, 28),
                forecast_slip_days=2,
                forecast_slips_from=date(2026, 4, 1),
            ),
            # July: 2026-07-20 + 13 days is Sunday 2 August: the working day before is 31 July.
            _project("272027-a4", "acme", date(2026, 7, 20), forecast_slip_days=13),
            # May: went live at 01:00 JST on 1 May (30 April in UTC), planned for 28 April.
            _project(
                "272035-a5",
                "acme",
                date(2026, 4, 28),
                stage="cutover",
                live_month=jst_month(datetime(2026, 4, 30, 16, 0, tzinfo=UTC)),
            ),
            # Outside the window: September, and a late March never replanned.
            _project("272043-a6", "acme", date(2026, 9, 15)),
            _project("272051-a7", "acme", date(2026, 3, 20)),
            # other: May (a Sunday target stays itself: no slip, no step back).
            _project("272060-o1", "other", date(2026, 5, 10)),
        ]
    )
    session.add_all(
        [
            _task("131016-a1", "system_setup", date(2026, 4, 10), "in_progress"),  # overdue
            _task("131016-a1", "data_migration", date(2026, 4, 20), "not_started"),
            _task("131016-a1", "testing", date(2026, 5, 7), "done"),
            _task("131016-a1", "decommission", date(2026, 5, 29), "not_applicable"),
            _task("131016-a1", "training", date(2026, 4, 10), "not_started", owner="municipality"),
            _task("271004-a3", "system_setup", date(2026, 4, 14), "not_started"),  # overdue
            _task("271004-a3", "cutover", date(2026, 5, 28), "not_started"),
            _task(
                "272035-a5",
                "cutover",
                date(2026, 4, 28),
                "done",
                completed_at=datetime(2026, 4, 30, 16, 0, tzinfo=UTC),
            ),
            _task("272060-o1", "system_setup", date(2026, 5, 1), "not_started"),
        ]
    )
    session.add(t.VendorCapacity(vendor_id="acme", go_lives_per_month=1, tasks_per_month=3))
    session.add(t.VendorCapacity(vendor_id="third", go_lives_per_month=0))
    session.commit()


def figures(answer: Any) -> dict[str, tuple[Any, ...]]:
    return {
        m.month: (
            m.go_lives,
            m.tasks_due,
            m.tasks_done,
            m.tasks_open,
            m.tasks_overdue,
            m.over_capacity,
            [p.id for p in m.projects],
        )
        for m in answer.months
    }


def test_capacity_of_a_hand_built_portfolio(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        portfolio(session)
        answer = vendors.capacity(session, ADMIN, "acme", date(2026, 4, 1), 4, today=TODAY)
        assert answer.capacity.go_lives_per_month == 1
        assert figures(answer) == {
            # month: go-lives, due, done, open, overdue, over, projects
            "2026-04": (0, 4, 1, 3, 2, True, []),  # four tasks due, three stated
            "2026-05": (2, 2, 1, 1, 0, True, ["131016-a1", "272035-a5"]),
            "2026-06": (2, 0, 0, 0, 0, True, ["131024-a2", "271004-a3"]),
            "2026-07": (1, 0, 0, 0, 0, False, ["272027-a4"]),
        }
        may, june, july = answer.months[1:]
        live = {p.id: (p.go_live, p.live) for p in may.projects}
        assert live == {
            "131016-a1": (date(2026, 5, 20), False),
            "272035-a5": (date(2026, 5, 1), True),
        }
        assert [p.go_live for p in june.projects] == [date(2026, 6, 10), date(2026, 6, 11)]
        assert [p.go_live for p in july.projects] == [date(2026, 7, 31)]

        # The vendor itself sees the same; a prefecture its bodies' share, over or not by
        # the vendor's whole load.
        assert figures(vendors.capacity(session, ACME, "acme", date(2026, 4, 1), 4, TODAY)) == (
            figures(answer)
        )
        tokyo = figures(vendors.capacity(session, TOKYO, "acme", date(2026, 4, 1), 4, TODAY))
        assert tokyo == {
            "2026-04": (0, 2, 0, 2, 1, True, []),
            "2026-05": (1, 1, 1, 0, 0, True, ["131016-a1"]),
            "2026-06": (1, 0, 0, 0, 0, True, ["131024-a2"]),
            "2026-07": (0, 0, 0, 0, 0, False, []),
        }

        # Projects still to go live in a month over the stated go-lives (not a5: it is live).
        over = vendors.vendor_over_capacity(TODAY)
        flagged = session.exec(select(t.Project.id).where(over).order_by(col(t.Project.id))).all()
        assert flagged == ["131016-a1", "131024-a2", "271004-a3"]
        # The lists' and reports' condition (the ids kept, sent as one parameter) agrees.
        vendors.OVER_CAPACITY.forget()
        kept = vendors.OVER_CAPACITY.condition(session, TODAY)
        listed = select(t.Project.id).order_by(col(t.Project.id))
        assert session.exec(listed.where(kept)).all() == flagged
        everyone = session.exec(listed).all()
        assert session.exec(listed.where(~kept)).all() == [p for p in everyone if p not in flagged]
        vendors.OVER_CAPACITY.forget()

        report = vendors.vendor_report(session, OBSERVER, date(2026, 4, 1), 4, TODAY)
        rows = {(r.vendor_id, r.month): r for r in report}
        assert [r.vendor_id for r in report] == ["acme"] * 4 + ["other"] * 4 + ["third"] * 4
        assert rows["acme", "2026-05"].projects_over_capacity == 1
        assert rows["acme", "2026-06"].projects_over_capacity == 2
        assert rows["acme", "2026-04"].over_capacity and not rows["acme", "2026-07"].over_capacity
        assert (rows["other", "2026-05"].go_lives, rows["other", "2026-05"].tasks_due) == (1, 1)
        assert not rows["other", "2026-05"].over_capacity  # nothing stated: never over
        assert rows["third", "2026-05"].go_lives == 0 and not rows["third", "2026-05"].over_capacity
        # A prefecture: the vendors serving its bodies, its share of their load.
        tokyo_rows = vendors.vendor_report(session, TOKYO, date(2026, 4, 1), 4, TODAY)
        assert {r.vendor_id for r in tokyo_rows} == {"acme"}
        assert [r.projects_over_capacity for r in tokyo_rows] == [0, 1, 1, 0]
    engine.dispose()


def test_capacity_scope_and_rules(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        portfolio(session)
        for caller, vendor_id, status in [
            (OTHER, "acme", 404),  # another vendor's: as if there were none
            (PM, "acme", 403),
            (ADMIN, "nobody", 404),
            (ACME, "nobody", 404),
        ]:
            with pytest.raises(HTTPProblem) as err:
                vendors.capacity(session, caller, vendor_id, date(2026, 4, 1), 4, TODAY)
            assert err.value.status == status
        for caller in (PM, OTHER, ACME):
            with pytest.raises(HTTPProblem) as err:
                vendors.vendor_report(session, caller, date(2026, 4, 1), 4, TODAY)
            assert err.value.status == 403
    engine.dispose()


# ---- through the API, over real projects ----------------------------------------------------


def _month(d: date) -> str:
    return d.strftime("%Y-%m")


async def _create(api: Api, lg_code: str, business: str, target: date, vendor: str) -> str:
    resp = await api.create(lg_code, business, target_go_live=target.isoformat(), vendor_id=vendor)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _pair_in(prefecture: str | None, other_than: str | None = None) -> tuple[str, str]:
    while True:
        lg_code, business = fresh_project()
        if prefecture is not None and lg_code[:2] != prefecture:
            continue
        if other_than is not None and lg_code[:2] == other_than:
            continue
        return lg_code, business


async def test_capacity_over_real_projects(api: Api) -> None:
    today = jst_today(datetime.now(UTC))
    first = today.replace(day=1)
    # Far enough ahead that no task is late yet: these forecasts are their targets.
    in4 = add_months(first, 26) + timedelta(days=14)
    in5 = add_months(first, 27) + timedelta(days=14)
    here = _pair_in(None)
    pref = here[0][:2]
    p1 = await _create(api, *here, in4, "acme")
    p2 = await _create(api, *_pair_in(None, other_than=pref), in4, "acme")
    p3 = await _create(api, *_pair_in(None, other_than=pref), in5, "acme")
    # Going live in 45 days: its vendor's work planned months ago is overdue and its forecast
    # slips far.
    late = await _create(api, *_pair_in(None, other_than=pref), today + timedelta(days=45), "acme")
    elsewhere = await _create(api, *_pair_in(None), in4, "other")
    api.token("prefecture", "prefecture", prefecture=pref)
    api.token("pm", "pm", lg_code=here[0])
    window: dict[str, Any] = {"from": _month(add_months(first, -6)), "months": 36}

    async def get(who: str, vendor: str = "acme") -> Any:
        return await api.http.get(
            f"/api/v1/vendors/{vendor}/capacity", params=window, headers=api.auth(who)
        )

    resp = await get("admin")
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert set(answer) == {"vendor_id", "capacity", "months"}
    assert answer["capacity"] == {"go_lives_per_month": None, "tasks_per_month": None}
    months = {m["month"]: m for m in answer["months"]}
    assert list(months) == [_month(add_months(first, i - 6)) for i in range(36)]

    # By hand, from each project as the API shows it: its forecast month, its vendor tasks.
    going: dict[str, list[str]] = {}
    due: Counter[str] = Counter()
    done: Counter[str] = Counter()
    overdue: Counter[str] = Counter()
    for pid in (p1, p2, p3, late):
        project = (await api.http.get(f"/api/v1/projects/{pid}", headers=api.auth("admin"))).json()
        going.setdefault(project["forecast_go_live"][:7], []).append(pid)
        for task in project["tasks"]:
            if task["owner"] != "vendor" or task["status"] == "not_applicable":
                continue
            month = task["due_date"][:7]
            due[month] += 1
            done[month] += task["status"] == "done"
            overdue[month] += task["status"] != "done" and task["due_date"] < today.isoformat()
    assert going[_month(in4)][:2] == [p1, p2] and p3 in going[_month(in5)]
    assert late not in going.get(_month(today + timedelta(days=45)), [])  # it slipped
    assert sum(overdue.values()) >= 3  # the late project's setup, data migration, testing
    for month, m in months.items():
        assert m["go_lives"] == len(going.get(month, [])), month
        assert [p["id"] for p in m["projects"]] == sorted(going.get(month, [])), month
        assert (m["tasks_due"], m["tasks_done"], m["tasks_overdue"]) == (
            due[month],
            done[month],
            overdue[month],
        ), month
        assert m["tasks_open"] == m["tasks_due"] - m["tasks_done"]
        assert m["over_capacity"] is False  # nothing stated
    assert months[_month(in4)]["projects"][0]["body_name"]

    # Scope: a prefecture its bodies' share, the vendor its own; another vendor 404; pm 403.
    seen = {m["month"]: m for m in (await get("prefecture")).json()["months"]}
    assert seen[_month(in4)]["go_lives"] == 1
    assert [p["id"] for p in seen[_month(in4)]["projects"]] == [p1]
    assert sum(m["tasks_due"] for m in seen.values()) == 5  # p1's five vendor tasks
    assert (await get("vendor")).json()["months"] == answer["months"]
    for who, vendor, status in [
        ("other_vendor", "acme", 404),
        ("pm", "acme", 403),
        ("admin", "nobody", 404),
    ]:
        resp = await get(who, vendor)
        assert resp.status_code == status
        assert resp.headers["content-type"].startswith("application/problem+json")

    # One go-live a month stated: the months with two or more are over, their projects too.
    resp = await api.http.put(
        "/api/v1/vendors/acme/capacity",
        json={"go_lives_per_month": 1},
        headers=api.auth("vendor"),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["capacity"] == {"go_lives_per_month": 1, "tasks_per_month": None}
    months = {m["month"]: m for m in (await get("admin")).json()["months"]}
    crowded = {month for month, ids in going.items() if len(ids) > 1}
    assert {month for month, m in months.items() if m["over_capacity"]} == crowded
    over = sorted(pid for month in crowded for pid in going[month])
    assert p1 in over and p2 in over

    async def listed(**params: Any) -> list[str]:
        resp = await api.http.get("/api/v1/projects", params=params, headers=api.auth("admin"))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["total"] == len(body["items"])
        return [p["id"] for p in body["items"]]

    assert await listed(vendor_over_capacity="true") == over
    everyone = sorted([p1, p2, p3, late, elsewhere])
    assert await listed(vendor_over_capacity="false") == [p for p in everyone if p not in over]
    everything = (await api.http.get("/api/v1/projects", headers=api.auth("admin"))).json()
    flags = {p["id"]: p["vendor_over_capacity"] for p in everything["items"]}
    assert flags == {p: p in over for p in everyone}
    one = (await api.http.get(f"/api/v1/projects/{p1}", headers=api.auth("pm"))).json()
    assert one["vendor_over_capacity"] is True

    # The roll-up counts them per group.
    for group_by, key in (("prefecture", pref), ("lg_code", here[0])):
        resp = await api.http.get(
            "/api/v1/reports/progress", params={"group_by": group_by}, headers=api.auth("admin")
        )
        groups = {g["group"]: g["vendor_over_capacity"] for g in resp.json()["items"]}
        assert sum(groups.values()) == len(over) and groups[key] == 1
    resp = await api.http.get("/api/v1/reports/progress", headers=api.auth("prefecture"))
    assert [g["vendor_over_capacity"] for g in resp.json()["items"]] == [1]

    # The report: a row per vendor and month, the same figures.
    resp = await api.http.get(
        "/api/v1/reports/vendors", params=window, headers=api.auth("observer")
    )
    assert resp.status_code == 200, resp.text
    rows = {(r["vendor_id"], r["month"]): r for r in resp.json()["items"]}
    assert len(rows) == 2 * 36
    in4_row = rows["acme", _month(in4)]
    n_in4 = len(going[_month(in4)])
    assert (in4_row["go_lives"], in4_row["projects_over_capacity"]) == (n_in4, n_in4)
    assert rows["other", _month(in4)]["go_lives"] == 1
    assert rows["other", _month(in4)]["projects_over_capacity"] == 0
    resp = await api.http.get("/api/v1/reports/vendors", params=window, headers=api.auth("pm"))
    assert resp.status_code == 403


async def test_capacity_put_rules(api: Api) -> None:
    async def put(who: str, body: Any, vendor: str = "acme") -> Any:
        return await api.http.put(
            f"/api/v1/vendors/{vendor}/capacity", json=body, headers=api.auth(who)
        )

    assert (await put("admin", {"go_lives_per_month": 5, "tasks_per_month": 40})).status_code == 200
    api.token("pm", "pm", lg_code="131016")
    api.token("prefecture", "prefecture", prefecture="13")
    for body in (
        {"go_lives_per_month": -1},
        {"tasks_per_month": "ten"},
        {"go_lives_per_month": 2.5},
        {"go_lives_per_month": "3"},
        {"go_lives_per_month": True},
        {"go_live_per_month": 3},  # a field that is not one
    ):
        resp = await put("vendor", body)
        assert resp.status_code == 422, body
        assert resp.headers["content-type"].startswith("application/problem+json")
    for who, vendor, status in [
        ("other_vendor", "acme", 404),
        ("pm", "acme", 403),
        ("observer", "acme", 403),
        ("prefecture", "acme", 403),
        ("admin", "nobody", 404),
    ]:
        assert (await put(who, {"go_lives_per_month": 1}, vendor)).status_code == status, who
    resp = await api.http.get("/api/v1/vendors/acme/capacity", headers=api.auth("vendor"))
    assert resp.json()["capacity"] == {"go_lives_per_month": 5, "tasks_per_month": 40}
    # A field left out keeps its value; null unstates it.
    resp = await put("vendor", {"tasks_per_month": None})
    assert resp.json()["capacity"] == {"go_lives_per_month": 5, "tasks_per_month": None}
    assert resp.json()["updated_by"] == "vendor:vendor"
    with Session(api.engine) as session:
        row = session.get(t.VendorCapacity, "acme")
        assert row is not None and row.go_lives_per_month == 5 and row.tasks_per_month is None
    for params in ({"from": "2026-13"}, {"from": "April"}, {"months": 0}, {"months": 37}):
        resp = await api.http.get(
            "/api/v1/vendors/acme/capacity", params=params, headers=api.auth("admin")
        )
        assert resp.status_code == 422, params
        assert resp.headers["content-type"].startswith("application/problem+json")


async def test_vendor_report_downloads(api: Api) -> None:
    with Session(api.engine) as session:
        session.add(t.Vendor(id="formula", name='=HYPERLINK("http://x")'))
        session.commit()
    params: dict[str, Any] = {"from": "2026-04", "months": 3}
    resp = await api.http.get(
        "/api/v1/reports/vendors", params={**params, "format": "csv"}, headers=api.auth("admin")
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert lines[0][:3] == ["ベンダID", "ベンダ名", "月"]
    assert len(lines) == 1 + 3 * 3  # acme, formula, other × three months
    named = {r[0]: r[1] for r in lines[1:]}
    assert named["formula"] == '\'=HYPERLINK("http://x")'
    assert named["acme"] == "アクメ情報システム"
    assert [r[2] for r in lines[1:4]] == ["2026-04", "2026-05", "2026-06"]

    resp = await api.http.get(
        "/api/v1/reports/vendors", params={**params, "format": "xlsx"}, headers=api.auth("admin")
    )
    assert resp.status_code == 200
    sheet = load_workbook(io.BytesIO(resp.content)).active
    assert sheet is not None
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    assert cells[0] == lines[0]
    formula = next(r for r in cells if r[0] == "formula")
    assert formula[1] == '\'=HYPERLINK("http://x")'
    assert isinstance(formula[3], int)  # go-lives stay numbers
