"""The bulk milestone feed: a vendor's many milestones in one request, each item exactly the
single route's command (the same checks, the same per-item Idempotency-Key, the same
answer), one project's items applied in the order given in one workflow update, projects
side by side with bounded parallelism, answered in input order. A bad
item fails alone with its own problem; a repeat of the whole feed answers every item as a
duplicate and changes nothing, so a feed cut off by a crash is simply sent again."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api import commands
from api.auth import Caller
from api.commands import Context, require
from api.errors import HTTPProblem, from_rpc_error, from_update_error, problem_body, refused
from api.schemas import BulkMilestoneItem, MilestoneIn
from workflows import core
from workflows.migration import MAX_BATCH, MigrationWorkflow
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


CSV_COLUMNS = ("project_id", "task_key", "status", "percent", "note", "idempotency_key")


def items_from_csv(raw: bytes) -> tuple[list[dict[str, Any]], list[int]]:
    """The feed of a CSV upload (UTF-8, with or without BOM; the header names the columns
    ``project_id,task_key,status,percent,note,idempotency_key``, note and percent may be
    empty): its items, and each item's line in the file. 422 for a file that is not one."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPProblem(
            422, "the file is not UTF-8 text", japanese="ファイルがUTF-8ではありません"
        ) from exc
    try:
        return _csv_items(text)
    except csv.Error as exc:  # a field past the csv module's limit, a stray quote...
        raise HTTPProblem(
            422,
            f"the file is not CSV this feed reads: {exc}",
            japanese=f"CSVとして読めない行があります（{exc}）",
        ) from exc


def _csv_items(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in CSV_COLUMNS if c not in header and c not in ("percent", "note")]
    if missing:
        raise HTTPProblem(
            422,
            f"the header lacks {', '.join(missing)}",
            japanese=f"見出し行に {', '.join(missing)} の列がありません",
        )
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        given = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        item: dict[str, Any] = {k: given.get(k, "") for k in CSV_COLUMNS if given.get(k, "")}
        if "percent" in item:
            item["percent"] = int(item["percent"]) if item["percent"].isdigit() else item["percent"]
        items.append(item)
        lines.append(reader.line_num)
        if len(items) > MAX_ITEMS:
            raise HTTPProblem(
                422,
                f"at most {MAX_ITEMS} lines a file",
                japanese=f"1回に送れるのは{MAX_ITEMS}行までです",
            )
    if not items:
        raise HTTPProblem(422, "the file has no lines", japanese="ファイルに行がありません")
    return items, lines


def _loc(field: str, msg: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": msg}


async def feed(
    ctx: Context, caller: Caller, items: list[Any], parallel: int
) -> list[dict[str, Any]]:
    """Every item's answer, in input order. Each item passes the single route's checks; a
    project's items that pass go to its workflow together, in the order given, in updates
    of at most MAX_BATCH (one workflow task and one read-model write for many milestones);
    different projects side by side, at most ``parallel`` at once."""
    require(caller, Action.MILESTONE)
    answers: list[dict[str, Any]] = [{} for _ in items]
    by_project: dict[str, list[tuple[int, BulkMilestoneItem]]] = {}
    for index, raw in enumerate(items):
        try:
            item = BulkMilestoneItem.model_validate(raw)
        except ValidationError as exc:
            errors: list[dict[str, Any]] = [
                {"loc": ["body", "items", index, *e["loc"]], "msg": e["msg"]} for e in exc.errors()
            ]
            answers[index] = _failed(index, HTTPProblem(422, errors[0]["msg"], errors=errors))
            continue
        by_project.setdefault(item.project_id, []).append((index, item))
    gate = asyncio.Semaphore(parallel)

    async def project(project_id: str, given: list[tuple[int, BulkMilestoneItem]]) -> None:
        async with gate:
            for start in range(0, len(given), MAX_BATCH):
                chunk = given[start : start + MAX_BATCH]
                for index, answer in await _batch(ctx, caller, project_id, chunk):
                    answers[index] = answer

    await asyncio.gather(*(project(pid, given) for pid, given in by_project.items()))
    return answers


def _body(item: BulkMilestoneItem) -> MilestoneIn:
    return MilestoneIn(
        task_key=item.task_key, status=item.status, percent=item.percent, note=item.note
    )


async def _batch(
    ctx: Context, caller: Caller, project_id: str, chunk: list[tuple[int, BulkMilestoneItem]]
) -> list[tuple[int, dict[str, Any]]]:
    """One project's items: the API's checks in one short session, then one update."""

    def checks(session: Session) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        for index, item in chunk:
            try:
                wid, recorded = commands.milestone_target(
                    session, caller, project_id, _body(item), item.idempotency_key
                )
            except HTTPProblem as p:
                out.append((index, p))
                continue
            out.append((index, (wid, recorded)))
        return out

    checked = await ctx.db.run(checks)
    answers: list[tuple[int, dict[str, Any]]] = []
    passed: list[tuple[int, core.MilestoneReport]] = []
    wid = ""
    by_index = dict(chunk)
    for index, outcome in checked:
        if isinstance(outcome, HTTPProblem):
            answers.append((index, _failed(index, outcome)))
            continue
        wid, recorded = outcome
        item = by_index[index]
        passed.append(
            (
                index,
                commands.milestone_report(ctx, caller, _body(item), item.idempotency_key, recorded),
            )
        )
    if not passed:
        return answers
    reports = [r for _, r in passed]
    # The same items again make the same update id, so a feed sent twice while its first
    # update is still running is answered once by Temporal as well as by the workflow.
    digest = hashlib.sha256("\n".join(r.idempotency_key for r in reports).encode()).hexdigest()
    try:
        outcomes = await ctx.temporal(
            ctx.client.get_workflow_handle(wid).execute_update(
                MigrationWorkflow.report_milestones,
                core.MilestoneBatch(reports, ctx.request_id),
                id=f"milestones-{digest[:40]}",
            ),
            wid,
        )
    except HTTPProblem as p:
        return answers + [(i, _failed(i, p)) for i, _ in passed]
    except WorkflowUpdateFailedError as exc:
        problem = from_update_error(exc)
        return answers + [(i, _failed(i, problem)) for i, _ in passed]
    except RPCError as exc:
        problem = from_rpc_error(exc, ctx.settings.retry_after_seconds)
        return answers + [(i, _failed(i, problem)) for i, _ in passed]
    for (index, report), outcome in zip(passed, outcomes, strict=True):
        if outcome.result is None:
            answers.append(
                (index, _failed(index, refused(outcome.kind, outcome.message, outcome.japanese)))
            )
            continue
        try:
            answer = commands.milestone_answer(report, outcome.result)
        except HTTPProblem as p:
            answers.append((index, _failed(index, p)))
            continue
        answers.append(
            (
                index,
                {
                    "index": index,
                    "status": 200,
                    "milestone_id": answer.milestone_id,
                    "duplicate": answer.duplicate,
                    "task": answer.task.model_dump(mode="json"),
                },
            )
        )
    return answers


def _failed(index: int, p: HTTPProblem) -> dict[str, Any]:
    body = problem_body(p.status, p.detail, p.errors)
    if p.japanese:
        body["japanese"] = p.japanese  # the rule's own words, for people (an extension member)
    return {"index": index, "status": p.status, "problem": body}
