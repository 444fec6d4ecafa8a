"""MIC's progress figures per group, over the projects the caller can see."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api import queries
from api.deps import CallerDep, SessionDep
from api.schemas import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], responses=PROBLEM_RESPONSES)

GroupBy = Literal["prefecture", "lg_code", "business", "task"]
Code = Annotated[str | None, Query(max_length=64)]

# What a spreadsheet reads as the start of a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(value: Any) -> Any:
    """A cell of a download: text that a spreadsheet would run as a formula (a name an admin
    stored, say) gets a leading single quote, so it is shown, never evaluated; numbers, also
    negative ones, stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def download(rows: list[dict[str, Any]], group_by: str, format: str) -> Response:
    """The figures as a file: CSV with a BOM (so Excel reads the Japanese names) or Excel."""
    columns = list(queries.REPORT_COLUMNS)
    name = f"progress-{group_by}"
    if format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: as_text(r[c]) for c in columns} for r in rows)
        return Response(
            buf.getvalue().encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "progress"
    ws.append(columns)
    for r in rows:
        ws.append([as_text(r[c]) for c in columns])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # stored as text whatever it starts with
    out = io.BytesIO()
    wb.save(out)
    return Response(
        out.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


@router.get("/progress")
def progress_report(
    caller: CallerDep,
    session: SessionDep,
    group_by: Annotated[GroupBy, Query()] = "prefecture",
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
    prefecture: Code = None,
    lg_code: Code = None,
    business: Code = None,
) -> Any:
    """MIC's counts and rates per group; ``prefecture``, ``lg_code`` and ``business``
    narrow the projects counted (the roll-up's drill-down)."""
    rows = queries.progress(
        session, caller, group_by, prefecture=prefecture, lg_code=lg_code, business=business
    )
    if format == "json":
        return {"group_by": group_by, "items": rows, "total": len(rows)}
    return download(rows, group_by, format)


@router.get("/trend")
def progress_trend(
    caller: CallerDep,
    session: SessionDep,
    group_by: Annotated[Literal["prefecture", "business"] | None, Query()] = None,
    months: Annotated[int, Query(ge=1, le=120)] = 12,
    prefecture: Code = None,
    lg_code: Code = None,
    business: Code = None,
) -> Any:
    """MIC's figures at each month's end, stored by the monthly snapshot, newest ``months``
    months, over the projects the caller can see (as a whole, or per ``group_by``)."""
    rows = queries.trend(
        session,
        caller,
        group_by,
        months,
        prefecture=prefecture,
        lg_code=lg_code,
        business=business,
    )
    return {"group_by": group_by, "items": rows, "total": len(rows)}
