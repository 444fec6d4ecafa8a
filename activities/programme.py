"""The DX plan's item ② completed from the body's migration projects (workflows/programme.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from readmodel import tables as t
from workflows.core import GO_LIVE_TASK, TaskChange
from workflows.migration import MigrationWorkflow
from workflows.model import DONE, NOT_APPLICABLE
from workflows.procedure import MIGRATION, PROGRAMME, STANDARDISATION_ITEM
from workflows.programme import FOLLOW_ACTIVITY, FOLLOWER, FollowInput, FollowResult
from workflows.vocabulary import Stage

_PROJECTS = t.Project.__table__  # type: ignore[attr-defined]
_TASKS = t.Task.__table__  # type: ignore[attr-defined]


def live_condition(project: Any) -> Any:
    """A migration project (a ``project`` table alias) is live: completed, or its cutover
    done or not applicable."""
    cutover = _TASKS.alias("cutover")
    return or_(
        project.c.stage == Stage.COMPLETED,
        exists().where(
            cutover.c.project_id == project.c.id,
            cutover.c.key == GO_LIVE_TASK,
            cutover.c.status.in_([DONE, NOT_APPLICABLE]),
        ),
    )


def plans_to_complete(session: Session) -> list[tuple[str, str]]:
    """(project id, workflow id) of each plan whose item ② is open while its body has
    migration projects and every one of them is live."""
    plan = _PROJECTS.alias("plan")
    item = _TASKS.alias("item")
    migration = _PROJECTS.alias("migration")
    of_body = and_(migration.c.lg_code == plan.c.lg_code, migration.c.kind == MIGRATION)
    body_migrations = select(func.count()).select_from(migration).where(of_body)
    not_live = (
        select(func.count()).select_from(migration).where(of_body, ~live_condition(migration))
    )
    query = (
        select(plan.c.id, plan.c.workflow_id)
        .select_from(
            plan.join(
                item, and_(item.c.project_id == plan.c.id, item.c.key == STANDARDISATION_ITEM)
            )
        )
        .where(
            plan.c.kind == PROGRAMME,
            item.c.status.not_in([DONE, NOT_APPLICABLE]),
            body_migrations.scalar_subquery() > 0,
            not_live.scalar_subquery() == 0,
        )
        .order_by(plan.c.id)
    )
    return [(str(r[0]), str(r[1])) for r in session.execute(query).all()]


class ProgrammeActivities:
    def __init__(self, client: Client, engine: Engine) -> None:
        self._client = client
        self._engine = engine

    def _plans(self) -> list[tuple[str, str]]:
        with Session(self._engine) as session:
            return plans_to_complete(session)

    @activity.defn(name=FOLLOW_ACTIVITY)
    async def follow_programme_items(self, inp: FollowInput) -> FollowResult:
        completed: list[str] = []
        waiting: list[str] = []
        for project_id, workflow_id in await asyncio.to_thread(self._plans):
            change = TaskChange(
                STANDARDISATION_ITEM,
                DONE,
                FOLLOWER,
                "admin",
                "この団体の標準化対象システムがすべて稼働（または対象外）になりました",
            )
            try:
                await self._client.get_workflow_handle(workflow_id).execute_update(
                    MigrationWorkflow.change_task, change, id=f"follow-{project_id}"
                )
            except WorkflowUpdateFailedError:
                waiting.append(project_id)  # the plan's rules say not yet (steps open)
                continue
            except RPCError:
                waiting.append(project_id)  # the plan's workflow is closed or unreachable
                continue
            completed.append(project_id)
        return FollowResult(completed, waiting)
