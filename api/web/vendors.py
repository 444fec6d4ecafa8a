"""The vendor's desk (/vendors/{id}): its open work due this week and late, and its
milestones fed in bulk from a CSV file, with each refused line said in Japanese."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select
from starlette.datastructures import UploadFile

from api import bulk
from api.auth import Caller
from api.deps import ContextDep, SessionDep
from api.errors import HTTPProblem
from api.web.pages import (
    CSRF_COOKIE,
    CSRF_FIELD,
    STATUS_PROBLEM_JA,
    PageCaller,
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
    """Whose desk this is: the vendor's own people, and the admin."""
    return caller.role == Role.ADMIN or (
        caller.role == Role.VENDOR and caller.vendor_id == vendor_id
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
    if vendor is None or not desk_of(caller, vendor_id):
        return error_page(request, 404, caller=caller)
    return _render(
        request,
        "vendor_desk.html",
        caller,
        vendor=vendor,
        work=_work(session, vendor_id),
        today=jst_today(datetime.now(UTC)),
        **ctx,
    )


@router.get("/vendors/{vendor_id}", response_class=HTMLResponse)
def desk(request: Request, caller: PageCaller, session: SessionDep, vendor_id: str) -> Response:
    return _page(request, caller, session, vendor_id, upload=None)


def reason_ja(problem: dict[str, Any]) -> str:
    """A refused line's reason as the vendor's staff read it."""
    if problem.get("japanese"):
        return str(problem["japanese"])
    status = int(problem.get("status", 400))
    detail = str(problem.get("detail", ""))
    if status == 404:
        return f"プロジェクトまたは作業が見つかりません（担当外のプロジェクトを含みます）：{detail}"
    if status == 403:
        return f"ベンダの担当ではない作業です：{detail}"
    return f"{STATUS_PROBLEM_JA.get(status, 'エラー')}：{detail}"


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
