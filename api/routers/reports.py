"""MIC's progress figures per group, over the projects the caller can see."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import TypeAdapter

from api import queries, vendors
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


def spreadsheet(
    rows: list[dict[str, Any]],
    columns: list[str],
    name: str,
    format: str,
    headers: list[str] | None = None,
) -> Response:
    """Rows as a file: CSV with a BOM (so Excel reads the Japanese names) or Excel, the
    ``columns`` of each row under ``headers`` (default: the column names); text cells are
    neutralised (``as_text``)."""
    title = headers or columns
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(title)
        writer.writerows([as_text(r[c]) for c in columns] for r in rows)
        return Response(
            buf.getvalue().encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = name.split("-")[0][:31]
    ws.append(title)
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


def download(rows: list[dict[str, Any]], group_by: str, format: str) -> Response:
    """The progress figures as a file."""
    return spreadsheet(rows, list(queries.REPORT_COLUMNS), f"progress-{group_by}", format)


@router.get("/progress")
def progress_report(
    caller: CallerDep,
    session: SessionDep,
    group_by: Annotated[GroupBy, Query()] = "prefecture",
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
    prefecture: Code = None,
    lg_code: Code = None,
    business: Code = None,
    template: Code = None,
) -> Any:
    """MIC's counts and rates per group; ``prefecture``, ``lg_code`` and ``business``
    narrow the projects counted (the roll-up's drill-down); ``template`` chooses the
    procedure (a template's id; default: the migrations), ``group_by=task`` its steps."""
    rows = queries.progress(
        session,
        caller,
        group_by,
        prefecture=prefecture,
        lg_code=lg_code,
        business=business,
        template=template,
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


# The vendors' report as a file: each row's JSON field and its Japanese column heading.
VENDOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("vendor_id", "ベンダID"),
    ("vendor_name", "ベンダ名"),
    ("month", "月"),
    ("go_lives", "本番稼働数"),
    ("go_lives_per_month", "稼働可能数（月）"),
    ("tasks_due", "期限到来タスク数"),
    ("tasks_done", "完了"),
    ("tasks_open", "未完了"),
    ("tasks_overdue", "期限超過"),
    ("tasks_per_month", "対応可能タスク数（月）"),
    ("over_capacity", "能力超過"),
    ("projects_over_capacity", "能力超過の月に稼働する事業数"),
)


_PAGE: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


@router.get("/vendors")
def vendors_report(
    caller: CallerDep,
    session: SessionDep,
    start: Annotated[
        str | None,
        Query(alias="from", pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (default: this month)"),
    ] = None,
    months: Annotated[int, Query(ge=1, le=vendors.MAX_MONTHS)] = 12,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Any:
    """Every vendor in each month: its go-lives and tasks against the capacity it states,
    over the projects the caller can see (admin, observer; a prefecture its bodies')."""
    first = vendors.parse_month(start)
    rows = vendors.vendor_report(session, caller, first, months)
    if format == "json":
        # Every vendor by month, thousands of rows: dumped by pydantic in one go rather
        # than walked by FastAPI's encoder.
        page = {"from": first.strftime("%Y-%m"), "months": months, "items": rows}
        return Response(_PAGE.dump_json(dict(page, total=len(rows))), media_type="application/json")
    items = [r.model_dump() for r in rows]
    for item in items:
        item["over_capacity"] = "超過" if item["over_capacity"] else ""
    columns = [c for c, _ in VENDOR_COLUMNS]
    headings = [h for _, h in VENDOR_COLUMNS]
    name = f"vendors-{first.strftime('%Y-%m')}"
    return spreadsheet(items, columns, name, format, headings)
