"""The bulk milestone feed: a vendor's many milestones in one request, each item exactly the
single route's command (the same checks, the same per-item Idempotency-Key, the same
answer), run concurrently with bounded parallelism (one project's items in the order
given) and answered in input order. A bad
item fails alone with its own problem; a repeat of the whole feed answers every item as a
duplicate and changes nothing, so a feed cut off by a crash is simply sent again."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api import commands
from api.auth import Caller
from api.commands import Context, require
from api.errors import HTTPProblem, from_rpc_error, from_update_error, problem_body
from api.schemas import BulkMilestoneItem, MilestoneIn
from workflows.roles import Action

MAX_ITEMS = 5000
MAX_KEY = 200


def parse_items(raw: bytes, content_type: str) -> list[Any]:
    """The items of a feed: ``{"items": [...]}`` as JSON, or one JSON object a line
    (``application/x-ndjson``); 400 for what is neither, 422 past MAX_ITEMS."""
    try:
        if content_type.split(";")[0].strip().lower() == "application/x-ndjson":
            items = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
        else:
            doc = json.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
                raise HTTPProblem(400, 'the body must be {"items": [...]} or NDJSON')
            items = doc["items"]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPProblem(400, f"the body is not valid JSON: {exc}") from exc
    if not items:
        raise HTTPProblem(422, "items: the feed has no items", errors=[_loc("items", "empty")])
    if len(items) > MAX_ITEMS:
        msg = f"items: at most {MAX_ITEMS} a request, not {len(items)}"
        raise HTTPProblem(422, msg, errors=[_loc("items", msg)])
    return items


def _loc(field: str, msg: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": msg}


async def feed(
    ctx: Context, caller: Caller, items: list[Any], parallel: int
) -> list[dict[str, Any]]:
    """Every item's answer, in input order. One project's items are applied in the order
    given (a feed is its tools' log: started, 50 %, done), different projects' side by
    side, at most ``parallel`` at once."""
    require(caller, Action.MILESTONE)
    by_project: dict[str, list[int]] = {}
    for i, raw in enumerate(items):
        key = str(raw.get("project_id")) if isinstance(raw, dict) else f"#{i}"
        by_project.setdefault(key, []).append(i)
    answers: list[dict[str, Any]] = [{} for _ in items]
    gate = asyncio.Semaphore(parallel)

    async def in_order(indexes: list[int]) -> None:
        for i in indexes:
            async with gate:
                answers[i] = await _item(ctx, caller, i, items[i])

    await asyncio.gather(*(in_order(indexes) for indexes in by_project.values()))
    return answers


async def _item(ctx: Context, caller: Caller, index: int, raw: Any) -> dict[str, Any]:
    try:
        item = BulkMilestoneItem.model_validate(raw)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [
            {"loc": ["body", "items", index, *e["loc"]], "msg": e["msg"]} for e in exc.errors()
        ]
        return _failed(index, HTTPProblem(422, errors[0]["msg"], errors=errors))
    body = MilestoneIn(
        task_key=item.task_key, status=item.status, percent=item.percent, note=item.note
    )
    own = replace(ctx, idempotency_key=item.idempotency_key)
    try:
        answer = await commands.report_milestone(own, caller, item.project_id, body)
    except HTTPProblem as p:
        return _failed(index, p)
    except WorkflowUpdateFailedError as exc:
        return _failed(index, from_update_error(exc))
    except RPCError as exc:
        return _failed(index, from_rpc_error(exc, ctx.settings.retry_after_seconds))
    return {
        "index": index,
        "status": 200,
        "milestone_id": answer.milestone_id,
        "duplicate": answer.duplicate,
        "task": answer.task.model_dump(mode="json"),
    }


def _failed(index: int, p: HTTPProblem) -> dict[str, Any]:
    return {
        "index": index,
        "status": p.status,
        "problem": problem_body(p.status, p.detail, p.errors),
    }
