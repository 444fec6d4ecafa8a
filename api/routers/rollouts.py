"""Template rollouts: API.md "Additions, round 3" (programme templates and rollouts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api import rollouts
from api.deps import CallerDep, Limit, Offset, SessionDep, WriteDep
from api.schemas import PROBLEM_RESPONSES, Page, RolloutCreate, RolloutPublic

router = APIRouter(prefix="/api/v1", tags=["rollouts"], responses=PROBLEM_RESPONSES)
Id = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("/templates/{template_id}/rollouts", status_code=202, response_model=RolloutPublic)
async def start_rollout(
    template_id: Id, body: RolloutCreate, caller: CallerDep, ctx: WriteDep
) -> RolloutPublic:
    """Move every running project on ``from`` to ``to`` (admin; a prefecture for its own
    bodies), each through the same rule as one project moved by hand: a project whose
    upgrade is refused (work done or under way would be dropped) is listed with the reason
    and left as it was. 422 for a version that does not exist or a ``to`` not newer than
    ``from``. Answered once the rollout is recorded; follow it at ``/api/v1/rollouts/{id}``.
    With an ``Idempotency-Key`` a repeat is the same rollout."""
    return await rollouts.start(ctx, caller, template_id, body)


@router.get("/rollouts", response_model=Page[RolloutPublic])
def list_rollouts(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[RolloutPublic]:
    """The rollouts the caller started (admin: all), newest first."""
    return rollouts.rollouts(session, caller, limit, offset)


@router.get("/rollouts/{rollout_id}", response_model=RolloutPublic)
def get_rollout(rollout_id: Id, caller: CallerDep, session: SessionDep) -> RolloutPublic:
    """A rollout's progress: moved, skipped, refused with each project's reason, remaining."""
    return rollouts.rollout(session, caller, rollout_id)
