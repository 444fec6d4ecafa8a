"""Vendors' pages. /vendors: every vendor's load by month against what it states it can
carry, as a heat map (admin, MIC observers, prefectures). /vendors/{id}: the vendor's desk,
its projects by go-live month, its open work due this week and late, its capacity form
and its milestones fed in bulk from a CSV file, each refused line said in Japanese."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select
from starlette.datastructures import UploadFile

from api import bulk, vendors
from api.auth import Caller
from api.deps import ContextDep, SessionDep
from api.errors import HTTPProblem
from api.schemas import VendorCapacityIn
from api.web.pages import (
    CSRF_COOKIE,
    CSRF_FIELD,
    STATUS_PROBLEM_JA,
    PageCaller,
    _back,
    _problem_ja,
    _render,
    error_page,
    templates,
)
from readmodel import tables as t
from workflows.calendar import jst_today
from workflows.vocabulary import Owner, Role, TaskStatus

router = APIRouter(include_in_schema=False)

# How large a CSV upload may be (the API's bulk feed takes 5,000 items).
MAX_UPLOAD_BYTES = 4 * 1024 * 1024


def checks_its_own_csrf(path: str) -> bool:
    """The CSV upload (a multipart form, which asgi-csrf cannot read with this version of
    python-multipart) checks its CSRF token itself, as asgi-csrf would: the form's token
    must be the browser's CSRF cookie, which CsrfOfSession binds to the page session."""
    return path.startswith("/vendors/") and path.endswith("/milestones")


def _csrf_ok(request: Request, given: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and isinstance(given, str) and secrets.compare_digest(given, cookie)


def desk_of(caller: Caller, vendor_id: str) -> bool:
    """Who works at the desk (states capacity, uploads milestones): the vendor's own people,
    and the admin."""
    return caller.role == Role.ADMIN or (
        caller.role == Role.VENDOR and caller.vendor_id == vendor_id
    )


def reads_desk(caller: Caller, vendor_id: str) -> bool:
    """Who may look at it: those who work there, MIC observers and prefectures (over their
    own bodies' projects)."""
    return desk_of(caller, vendor_id) or caller.role in (Role.OBSERVER, Role.PREFECTURE)


HEAT_MONTHS = 12


def heat(go_lives: int, stated: int | None) -> str:
    """A cell's shade: its go-lives against the stated capacity (or, not stated, their
    number alone). The number is always written in the cell: colour is never all it says."""
    if stated is not None and go_lives > stated:
        return "over"
    if go_lives == 0:
        return "none"
    if stated:
        return "high" if go_lives * 10 >= stated * 8 else "mid" if go_lives * 2 >= stated else "low"
    return "high" if go_lives >= 20 else "mid" if go_lives >= 5 else "low"


@router.get("/vendors", response_class=HTMLResponse)
def heat_map(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    start: Annotated[str | None, Query(alias="from", max_length=7)] = None,
) -> Response:
    """Vendors × months: go-lives (and the capacity stated) in each cell, the busiest first."""
    try:
        first = vendors.parse_month(start)
        rows = vendors.vendor_report(session, caller, first, HEAT_MONTHS)
    except HTTPProblem as p:
        return error_page(request, p.status, caller=caller)
    months = sorted({r.month for r in rows})
    grid: dict[str, dict[str, Any]] = {}
    for r in rows:
        v = grid.setdefault(
            r.vendor_id,
            {
                "id": r.vendor_id,
                "name": r.vendor_name,
                "cells": {},
                "load": 0,
                "over": 0,
                "stated": r.go_lives_per_month,
            },
        )
        v["cells"][r.month] = r
        v["load"] += r.go_lives
        v["over"] += 1 if r.over_capacity else 0
    ordered = sorted(grid.values(), key=lambda v: (-v["over"], -v["load"], v["id"]))
    return _render(
        request,
        "vendors.html",
        caller,
        vendors=[v for v in ordered if v["load"] or v["stated"] is not None],
        quiet=len([v for v in ordered if not v["load"] and v["stated"] is None]),
        months=months,
        heat=heat,
        first=first,
    )


def _work(session: Session, vendor_id: str) -> list[tuple[t.Task, t.Project]]:
    """The vendor's open tasks due by the end of this week, late ones first."""
    today = jst_today(datetime.now(UTC))
    week_end = today + timedelta(days=6 - today.weekday())
    query = (
        select(t.Task, t.Project)
        .join(t.Project, col(t.Project.id) == t.Task.project_id)
        .where(
            t.Project.vendor_id == vendor_id,
            t.Task.owner == Owner.VENDOR,
            col(t.Task.status).in_([TaskStatus.NOT_STARTED, TaskStatus.IN_PROGRESS]),
            col(t.Task.due_date) <= week_end,
        )
        .order_by(col(t.Task.due_date), col(t.Project.id))
        .limit(200)
    )
    return [(task, project) for task, project in session.exec(query).all()]


def _page(
    request: Request, caller: Caller, session: Session, vendor_id: str, **ctx: Any
) -> Response:
    vendor = session.get(t.Vendor, vendor_id)
    if vendor is None or not reads_desk(caller, vendor_id):
        return error_page(request, 404, caller=caller)
    today = jst_today(datetime.now(UTC))
    first = ctx.pop("first", None) or today.replace(day=1)
    load = vendors.capacity(session, caller, vendor_id, first, HEAT_MONTHS)
    return _render(
        request,
        "vendor_desk.html",
        caller,
        vendor=vendor,
        load=load,
        works=desk_of(caller, vendor_id),
        work=_work(session, vendor_id) if desk_of(caller, vendor_id) else [],
        today=today,
        heat=heat,
        **ctx,
    )


@router.post("/vendors/{vendor_id}/capacity")
async def state_capacity(
    request: Request, caller: PageCaller, session: SessionDep, vendor_id: str
) -> Response:
    """The capacity form: empty fields unstate (never over)."""
    form = await request.form()
    given: dict[str, int | None] = {}
    for name in ("go_lives_per_month", "tasks_per_month"):
        value = str(form.get(name) or "").strip()
        if value and not (value.isascii() and value.isdigit()):
            return _back(f"/vendors/{vendor_id}", err="件数は0以上の整数で入力してください")
        given[name] = int(value) if value else None
    try:
        vendors.set_capacity(session, caller, vendor_id, VendorCapacityIn(**given))
    except HTTPProblem as p:
        return _back(f"/vendors/{vendor_id}", err=_problem_ja(p))
    except ValidationError:
        return _back(f"/vendors/{vendor_id}", err="件数が大きすぎます")
    return _back(f"/vendors/{vendor_id}", msg="対応できる件数を保存しました")


@router.get("/vendors/{vendor_id}", response_class=HTMLResponse)
def desk(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    vendor_id: str,
    start: Annotated[str | None, Query(alias="from", max_length=7)] = None,
) -> Response:
    try:
        first = vendors.parse_month(start)
    except HTTPProblem as p:
        return error_page(request, p.status, caller=caller)
    return _page(request, caller, session, vendor_id, upload=None, first=first)


def reason_ja(problem: dict[str, Any]) -> str:
    """A refused line's reason as the vendor's staff read it."""
    if problem.get("japanese"):
        return str(problem["japanese"])
    status = int(problem.get("status", 400))
    detail = str(problem.get("detail", ""))
    if status == 404:
        return "プロジェクトまたは作業が見つかりません（担当外のプロジェクトを含みます）"
    if status == 403:
        return "ベンダの担当ではない作業です"
    if status == 409:
        return f"現在の状態では報告できません（{detail}）"
    if status == 422:
        return f"入力内容を確認してください（{detail}）"
    return f"{STATUS_PROBLEM_JA.get(status, 'エラー')}（{detail}）"


@router.post("/vendors/{vendor_id}/milestones", response_class=HTMLResponse)
async def upload(
    request: Request, caller: PageCaller, ctx: ContextDep, session: SessionDep, vendor_id: str
) -> Response:
    """A CSV of milestones, fed as the API's bulk feed; the page lists what was refused."""
    form = await request.form(max_files=1, max_fields=10)
    if not _csrf_ok(request, form.get(CSRF_FIELD)):
        return templates.TemplateResponse(request, "forbidden.html", {"caller": None}, 403)
    if not desk_of(caller, vendor_id):
        return error_page(request, 404, caller=caller)
    file = form.get("file")
    summary: dict[str, Any] = {"error": None, "accepted": 0, "duplicates": 0, "refused": []}
    if not isinstance(file, UploadFile):
        summary["error"] = "CSVファイルを選んでください"
    else:
        raw = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(raw) > MAX_UPLOAD_BYTES:
            summary["error"] = "ファイルが大きすぎます（4MBまで）。分けて送ってください"
        else:
            try:
                items, lines = bulk.items_from_csv(raw)
                results = await bulk.feed(ctx, caller, items, 32)
            except HTTPProblem as p:
                summary["error"] = p.japanese or f"ファイルを読めませんでした（{p.detail}）"
            else:
                for result, line in zip(results, lines, strict=True):
                    if result["status"] == 200:
                        summary["accepted"] += 1
                        summary["duplicates"] += 1 if result.get("duplicate") else 0
                        continue
                    item = items[result["index"]]
                    summary["refused"].append(
                        {
                            "line": line,
                            "project_id": item.get("project_id", ""),
                            "task_key": item.get("task_key", ""),
                            "reason": reason_ja(result["problem"]),
                        }
                    )
    resp = _page(request, caller, session, vendor_id, upload=summary)
    if summary["error"]:
        resp.status_code = 422
    return resp
