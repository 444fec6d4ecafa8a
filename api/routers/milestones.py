"""The vendors' bulk milestone feed (API.md "Additions, round 3")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api import bulk
from api.deps import CallerDep, ContextDep
from api.schemas import PROBLEM_RESPONSES, BulkMilestoneAnswer, BulkMilestoneItem

router = APIRouter(prefix="/api/v1", tags=["projects"], responses=PROBLEM_RESPONSES)

# Items of one feed in flight at once: enough to keep Temporal and the worker busy, bounded
# so that one vendor's 5,000 items do not crowd out everyone else's requests.
PARALLEL = 32


@router.post(
    "/milestones",
    response_model=BulkMilestoneAnswer,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": bulk.MAX_ITEMS,
                                "items": BulkMilestoneItem.model_json_schema(),
                            }
                        },
                    }
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one item a line"}
                },
            },
        }
    },
)
async def bulk_milestones(request: Request, caller: CallerDep, ctx: ContextDep) -> JSONResponse:
    """Up to 5,000 milestones: ``{"items": [...]}`` or NDJSON, each item
    ``{"project_id", "task_key", "status", "percent"?, "note"?, "idempotency_key"}``.
    Answers every item in input order: ``{"index", "status"}`` with the single route's
    answer (``milestone_id``, ``duplicate``, ``task``) or its ``problem``."""
    items = bulk.parse_items(await request.body(), request.headers.get("content-type", ""))
    results = await bulk.feed(ctx, caller, items, PARALLEL)
    return JSONResponse({"results": results})
