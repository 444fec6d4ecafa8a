"""A rollout's side effects: the projects it takes, read from the read model; each project's
upgrade, sent to its workflow; and the rollout's progress, written to the read model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.projection import upsert
from readmodel import tables as t
from workflows.core import TemplateUpgrade
from workflows.migration import MigrationWorkflow
from workflows.rollout import (
    MOVE_ACTIVITY,
    MOVE_HEARTBEAT,
    MOVED,
    PAGE_ACTIVITY,
    PROJECTION_ACTIVITY,
    REFUSED,
    SKIPPED,
    PageRequest,
    RolloutMove,
    RolloutOutcome,
    RolloutPage,
    RolloutRecord,
    RolloutScope,
    RolloutTarget,
    workflow_id,
)

# The project's refusals that mean it is past the move already: on the new version, or on a
# newer one (moved by hand, or by another rollout).
# Left as they are, not refused: already on the new version or a newer one, or moved to
# another since they were listed.
_ALREADY_THERE = {"template_same", "template_older", "template_moved"}


def _in_scope(scope: RolloutScope) -> list[Any]:
    """Running projects on the rollout's ``from`` version, of its prefecture or body."""
    where: list[Any] = [
        col(t.Project.template) == scope.ref,
        col(t.Project.completed_at).is_(None),
    ]
    if scope.prefecture:
        where.append(col(t.Project.prefecture) == scope.prefecture)
    if scope.lg_code:
        where.append(col(t.Project.lg_code) == scope.lg_code)
    return where


def read_page(session: Session, req: PageRequest) -> RolloutPage:
    """The next ``limit`` projects after ``after`` by id, and how many more there are."""
    where = _in_scope(req.scope)
    rows = session.exec(
        select(t.Project.id, t.Project.workflow_id)
        .where(*where, col(t.Project.id) > req.after)
        .order_by(col(t.Project.id))
        .limit(req.limit)
    ).all()
    projects = [RolloutTarget(pid, wid) for pid, wid in rows]
    last = projects[-1].project_id if projects else req.after
    beyond = session.exec(
        select(func.count()).select_from(t.Project).where(*where, col(t.Project.id) > last)
    ).one()
    return RolloutPage(projects, int(beyond))


def write_rollout(session: Session, r: RolloutRecord) -> None:
    """The rollout's row as the workflow holds it (never older than what is there)."""
    row = session.get(t.Rollout, r.id)
    if row is not None and row.seq > r.state.seq:
        return
    s = r.state
    upsert(
        session,
        t.Rollout,
        [
            {
                "id": r.id,
                "workflow_id": workflow_id(r.id),
                "template": r.template,
                "from_version": r.from_version,
                "to_version": r.to_version,
                "reason": r.reason,
                "prefecture": r.prefecture,
                "lg_code": r.lg_code,
                "status": str(s.status),
                "moved": s.moved,
                "skipped": s.skipped,
                "refused_count": len(s.refused) + s.refused_beyond,
                "refused": [asdict(x) for x in s.refused],
                "remaining": s.remaining,
                "created_by": r.created_by,
                "owner": r.owner,
                "started_at": s.started_at,
                "updated_at": s.updated_at,
                "finished_at": s.finished_at,
                "seq": s.seq,
            }
        ],
    )
    session.commit()


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while a slow call runs (a quick one sends none), so that a move whose worker
    died is tried again after the heartbeat timeout rather than the whole move's."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(MOVE_HEARTBEAT.total_seconds() / 4)
            activity.heartbeat()

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


class RolloutActivities:
    def __init__(self, client: Client, engine: Engine) -> None:
        self._client = client
        self._engine = engine

    def _in_session(self, fn: Any, arg: Any) -> Any:
        with Session(self._engine) as session:
            return fn(session, arg)

    @activity.defn(name=PAGE_ACTIVITY)
    async def rollout_page(self, req: PageRequest) -> RolloutPage:
        page: RolloutPage = await asyncio.to_thread(self._in_session, read_page, req)
        return page

    @activity.defn(name=PROJECTION_ACTIVITY)
    async def project_rollout(self, record: RolloutRecord) -> None:
        await asyncio.to_thread(self._in_session, write_rollout, record)

    @activity.defn(name=MOVE_ACTIVITY)
    async def rollout_move_project(self, move: RolloutMove) -> RolloutOutcome:
        """Send one project its upgrade. The update id makes a retry the same update; the
        project's own rule decides, and its refusal comes back as the outcome."""
        handle = self._client.get_workflow_handle(move.workflow_id)
        upgrade = TemplateUpgrade(
            move.template, move.reason, move.actor, move.request_id, expected=move.expected
        )
        try:
            async with _heartbeating():
                await handle.execute_update(
                    MigrationWorkflow.upgrade_template, upgrade, id=move.update_id
                )
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError) or not cause.non_retryable:
                raise
            said = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            code = str(said.get("code", cause.type or ""))
            result = SKIPPED if code in _ALREADY_THERE else REFUSED
            japanese = str(said.get("japanese") or "")
            return RolloutOutcome(move.project_id, result, code, cause.message, japanese)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # The project's workflow has closed since it was listed: it has finished.
            return RolloutOutcome(
                move.project_id,
                SKIPPED,
                "finished",
                "the project has finished",
                "プロジェクトは完了しています",
            )
        return RolloutOutcome(move.project_id, MOVED)
