"""Bulk import of projects from a CSV file (API.md "Additions": POST /api/v1/imports)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api import imports
from api.deps import CallerDep, ContextDep
from api.errors import HTTPProblem
from api.schemas import PROBLEM_RESPONSES, ImportResult

router = APIRouter(prefix="/api/v1/imports", tags=["imports"], responses=PROBLEM_RESPONSES)

CSV_MEDIA_TYPES = ("text/csv", "application/csv")

_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": (
                    "lg_code,business,target_go_live,vendor_id,switching_vendor,"
                    "setup_governance,current_system_survey\n"
                    "131016,resident_registry,2027-03-31,acme,false,done:2025-04-01,in_progress\n"
                ),
            }
        },
    }
}


@router.post("", response_model=ImportResult, openapi_extra=_CSV_BODY)
async def import_projects(request: Request, caller: CallerDep, ctx: ContextDep) -> ImportResult:
    """One row per project: ``lg_code,business,target_go_live,vendor_id,switching_vendor``
    and one column per task key holding ``done``, ``done:YYYY-MM-DD``, ``in_progress``,
    ``not_applicable`` or nothing. Each row is the creation POST /api/v1/projects makes with
    its ``progress``; a bad row is refused with its line and reasons while the good rows go
    in; a row whose project exists is left alone, so the same file again changes nothing.
    A file that is not UTF-8 or not CSV is refused as a whole (422)."""
    if not imports.may_import(caller):
        raise HTTPProblem(403, f"a {caller.role} token may not import projects")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in CSV_MEDIA_TYPES:
        raise HTTPProblem(422, f"the file is not CSV: send it as text/csv, not {media_type!r}")
    data = await request.body()
    return await imports.import_projects(ctx, caller, data)
