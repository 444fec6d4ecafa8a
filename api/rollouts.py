"""Template rollouts for every front end: a revised template sent to every running project on
one version, checked against the read model in a short session, then run by
RolloutWorkflow (which moves each project through its own upgrade rule)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlmodel import Session, col, func, select
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import Caller
from api.commands import Context, load_template
from api.errors import HTTPProblem, field_error
from api.schemas import Page, RolloutCreate, RolloutPublic
from readmodel import tables as t
from readmodel.registry import lg_code_problem, registry
from workflows.core import version_key
from workflows.rollout import OpenRollout, RolloutInput, RolloutWorkflow, workflow_id
from workflows.vocabulary import Role


def owner_of(caller: Caller) -> str:
    """Who started a rollout, as it is stored: a person, or a machine's token."""
    return f"person:{caller.person_id}" if caller.person_id else f"token:{caller.token_id}"


def _may_read(caller: Caller, row: t.Rollout) -> bool:
    return caller.role == Role.ADMIN or row.owner == owner_of(caller)


# ---- reads ---------------------------------------------------------------------------------


def rollout(session: Session, caller: Caller, rollout_id: str) -> RolloutPublic:
    """One rollout, for whoever started it and admin (404 for anyone else)."""
    row = session.get(t.Rollout, rollout_id)
    if row is None or not _may_read(caller, row):
        raise HTTPProblem(404, f"no rollout {rollout_id!r}")
    return RolloutPublic.of(row)


def rollouts(
    session: Session, caller: Caller, limit: int = 50, offset: int = 0
) -> Page[RolloutPublic]:
    """The rollouts the caller started (admin: all), newest first."""
    query = select(t.Rollout)
    if caller.role != Role.ADMIN:
        query = query.where(col(t.Rollout.owner) == owner_of(caller))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(t.Rollout.started_at).desc(), col(t.Rollout.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[RolloutPublic](items=[RolloutPublic.of(r) for r in rows], total=total)


# ---- starting one --------------------------------------------------------------------------


def _check_scope(caller: Caller, body: RolloutCreate) -> None:
    """Admin rolls out anywhere; a prefecture to its own bodies only, and says so (its own
    prefecture, or one of its bodies); nobody else."""
    if caller.role == Role.ADMIN:
        return
    if caller.role != Role.PREFECTURE:
        raise HTTPProblem(403, f"a {caller.role} token may not roll out a template")
    if body.prefecture is None and body.lg_code is None:
        raise HTTPProblem(
            403,
            "a prefecture rolls out to its own bodies: give its prefecture, or one of its "
            "bodies' lg_code",
        )
    if body.prefecture is not None and body.prefecture != caller.prefecture:
        raise HTTPProblem(403, "a prefecture rolls out to its own bodies only")
    if body.lg_code is not None:
        body_info = registry().get(body.lg_code)
        if body_info is not None and body_info.prefecture_code != caller.prefecture:
            raise HTTPProblem(403, "a prefecture rolls out to its own bodies only")


def _creation_key(owner: str, template_id: str, body: RolloutCreate) -> str:
    said = [owner, template_id, body.from_, body.to, body.reason, body.prefecture, body.lg_code]
    return hashlib.sha256(json.dumps(said, ensure_ascii=False).encode()).hexdigest()


def rollout_id_for(ctx: Context, owner: str) -> str:
    """A new id, or with an Idempotency-Key the same id for the same key and caller, so that
    a repeat (after a timeout, say) is that rollout and never a second one."""
    if ctx.idempotency_key:
        return hashlib.sha256(f"{owner}\n{ctx.idempotency_key}".encode()).hexdigest()[:20]
    return uuid.uuid4().hex[:20]


def _check_start(
    session: Session, caller: Caller, template_id: str, body: RolloutCreate, rollout_id: str
) -> RolloutInput:
    _check_scope(caller, body)
    if body.lg_code is not None:
        problem = lg_code_problem(body.lg_code)
        if problem:
            raise field_error(["body", "lg_code"], f"lg_code {problem}")
        body_info = registry().get(body.lg_code)
        if body_info is None:
            raise field_error(["body", "lg_code"], f"lg_code {body.lg_code} is not a local body")
        if body.prefecture is not None and body_info.prefecture_code != body.prefecture:
            raise field_error(
                ["body", "lg_code"], f"{body.lg_code} is not a body of prefecture {body.prefecture}"
            )
    if not body.reason.strip():
        raise field_error(["body", "reason"], "a rollout needs a reason")
    if load_template(session, f"{template_id}@{body.from_}") is None:
        raise field_error(["body", "from"], f"unknown template {template_id}@{body.from_}")
    target = load_template(session, f"{template_id}@{body.to}")
    if target is None:
        raise field_error(["body", "to"], f"unknown template {template_id}@{body.to}")
    if version_key(body.to) <= version_key(body.from_):
        raise field_error(["body", "to"], f"{body.to} is not newer than {body.from_}")
    owner = owner_of(caller)
    return RolloutInput(
        id=rollout_id,
        template=template_id,
        from_version=body.from_,
        to_version=body.to,
        reason=body.reason,
        created_by=caller.actor,
        owner=owner,
        prefecture=body.prefecture,
        lg_code=body.lg_code,
        target=target,
        creation_key=_creation_key(owner, template_id, body),
    )


def _repeat_of(session: Session, caller: Caller, inp: RolloutInput) -> RolloutPublic:
    """A repeat of a rollout that has finished: the same request is answered with it."""
    row = session.get(t.Rollout, inp.id)
    same = row is not None and (
        row.owner,
        row.template,
        row.from_version,
        row.to_version,
        row.reason,
        row.prefecture,
        row.lg_code,
    ) == (
        inp.owner,
        inp.template,
        inp.from_version,
        inp.to_version,
        inp.reason,
        inp.prefecture,
        inp.lg_code,
    )
    if row is None or not same:
        raise HTTPProblem(409, "this Idempotency-Key was used for another rollout")
    return RolloutPublic.of(row)


async def start(
    ctx: Context, caller: Caller, template_id: str, body: RolloutCreate
) -> RolloutPublic:
    """Start the rollout and answer once it is in the read model (its first page counted);
    the projects move afterwards, and ``GET /api/v1/rollouts/{id}`` follows them."""
    rid = rollout_id_for(ctx, owner_of(caller))
    inp = await ctx.db.run(_check_start, caller, template_id, body, rid)
    inp.request_id = ctx.request_id
    start_op: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        RolloutWorkflow.run,
        inp,
        id=workflow_id(rid),
        task_queue=ctx.settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    try:
        await ctx.temporal(
            ctx.client.execute_update_with_start_workflow(
                RolloutWorkflow.open_rollout,
                OpenRollout(inp.creation_key),
                start_workflow_operation=start_op,
                id=f"open-{inp.creation_key[:32]}",
            )
        )
    except WorkflowAlreadyStartedError:  # it ran and has finished
        return await ctx.db.run(_repeat_of, caller, inp)
    return await ctx.db.run(rollout, caller, rid)
