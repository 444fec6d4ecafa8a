"""MIC's progress figures per group, over the projects the caller can see."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlmodel import select

from api.deps import CallerDep, SessionDep
from api.schemas import PROBLEM_RESPONSES
from readmodel import tables as t
from workflows.businesses import BY_SLUG
from workflows.model import progress_of

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], responses=PROBLEM_RESPONSES)

GroupBy = Literal["prefecture", "lg_code", "business", "task"]
COLUMNS = [
    "group",
    "name",
    "steps",
    "done",
    "in_progress",
    "not_started",
    "not_applicable",
    "completion_rate",
    "in_progress_rate",
    "not_started_rate",
]


def progress_rows(session: Any, caller: Any, group_by: str) -> list[dict[str, Any]]:
    """One row per group; every task of every visible project is one step, as MIC counts."""
    query = caller.scope(
        select(  # type: ignore[call-overload]
            t.Project.prefecture,
            t.Project.lg_code,
            t.Project.body_name,
            t.Project.business,
            t.Task.key,
            t.Task.name,
            t.Task.status,
        ).join(t.Task, t.Task.project_id == t.Project.id)  # type: ignore[arg-type]
    )
    groups: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for pref, lg, body, business, key, task_name, status in session.exec(query):
        group = {"prefecture": pref, "lg_code": lg, "business": business, "task": key}[group_by]
        groups.setdefault(group, []).append(status)
        names[group] = {
            "prefecture": pref,
            "lg_code": body,
            "business": BY_SLUG[business].name if business in BY_SLUG else business,
            "task": task_name,
        }[group_by]
    rows = []
    for group in sorted(groups):
        p = progress_of(groups[group])
        rows.append(
            {
                "group": group,
                "name": names[group],
                "steps": len(groups[group]),
                "done": p.done,
                "in_progress": p.in_progress,
                "not_started": p.not_started,
                "not_applicable": p.not_applicable,
                "completion_rate": p.completion_rate,
                "in_progress_rate": p.in_progress_rate,
                "not_started_rate": p.not_started_rate,
            }
        )
    return rows


@router.get("/progress")
def progress_report(
    caller: CallerDep,
    session: SessionDep,
    group_by: Annotated[GroupBy, Query()] = "prefecture",
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Any:
    rows = progress_rows(session, caller, group_by)
    if format == "json":
        return {"group_by": group_by, "items": rows, "total": len(rows)}
    if format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        return Response(
            buf.getvalue().encode("utf-8-sig"),  # with BOM so Excel reads the Japanese names
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="progress-{group_by}.csv"'},
        )
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "progress"
    ws.append(COLUMNS)
    for r in rows:
        ws.append([r[c] for c in COLUMNS])
    out = io.BytesIO()
    wb.save(out)
    return Response(
        out.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="progress-{group_by}.xlsx"'},
    )
