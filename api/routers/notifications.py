"""Notification channels per local body, and the log of every delivery attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.auth import Caller
from api.commands import require
from api.deps import CallerDep, Limit, Offset, SessionDep, SettingsDep
from api.errors import HTTPProblem, field_error
from api.queries import paged
from api.schemas import PROBLEM_RESPONSES, Page, Public
from readmodel import tables as t
from readmodel.channels import ChannelError, check_channel, check_public_url
from readmodel.registry import lg_code_problem
from runtime.mail import MAIL_CHANNEL_ID
from workflows.roles import Action

router = APIRouter(prefix="/api/v1", tags=["notifications"], responses=PROBLEM_RESPONSES)


class ChannelCreate(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal["webhook", "slack"]
    url: str = Field(max_length=2000)
    lg_code: str | None = None


class ChannelPublic(Public):
    id: str
    kind: str
    url: str
    lg_code: str | None


class DeliveryPublic(Public):
    delivery_id: str
    notification_id: str
    project_id: str
    channel_id: str
    attempt: int
    at: datetime | None
    outcome: str
    status_code: int | None
    error: str | None
    recipient: str | None = Field(
        None,
        description="a mail's recipient address (one attempt per person); null for a "
        "webhook, and withheld like status_code and error",
    )
    redacted: bool = Field(
        False,
        description="status_code, error and recipient are withheld: only the admin and the pm "
        "of the project's local body see them",
    )


@dataclass(frozen=True)
class _Body:
    lg_code: str


def _may_manage(caller: Caller, channel: Any) -> bool:
    """Channels are the admin's, and each local body's pm's for its own body."""
    return caller.may(Action.CHANNELS) and caller.sees(channel)


@router.post("/channels", status_code=201, response_model=ChannelPublic)
def create_channel(
    body: ChannelCreate, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> ChannelPublic:
    """A channel for one local body's notifications (admin, or that body's pm). Its host
    must be, and resolve to, public addresses or the deployment's allowed ranges."""
    require(caller, Action.CHANNELS)
    if body.lg_code is None:
        raise field_error(["body", "lg_code"], "a channel belongs to one local body (lg_code)")
    problem = lg_code_problem(body.lg_code)
    if problem:
        raise field_error(["body", "lg_code"], f"lg_code {problem}")
    if not _may_manage(caller, body):
        raise HTTPProblem(403, "a pm configures channels only for its own local body")
    try:
        check_channel(body.id, body.kind, body.url)
        check_public_url(body.url, settings.outbound_policy, name_addresses=False)
    except ChannelError as exc:
        raise field_error(["body", "url"], str(exc)) from exc
    if body.id == MAIL_CHANNEL_ID or session.get(t.NotificationChannel, body.id) is not None:
        # Channel ids are one namespace for the deployment (deliveries name them): the
        # answer says the id is in use, in the same words whichever body holds it, and
        # nothing about that channel.
        raise HTTPProblem(409, f"the channel id {body.id!r} is already in use; choose another")
    session.add(
        t.NotificationChannel(
            id=body.id,
            kind=body.kind,
            url=body.url,
            lg_code=body.lg_code,
            created_at=datetime.now(UTC),
        )
    )
    session.commit()
    return ChannelPublic(id=body.id, kind=body.kind, url=body.url, lg_code=body.lg_code)


@router.get("/channels", response_model=Page[ChannelPublic])
def list_channels(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ChannelPublic]:
    require(caller, Action.CHANNELS)
    query = caller.scope(select(t.NotificationChannel), on=t.NotificationChannel)
    order = (col(t.NotificationChannel.id),)
    return paged(session, query, order, limit, offset, ChannelPublic.of)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_channel(channel_id: str, caller: CallerDep, session: SessionDep) -> Response:
    row = session.get(t.NotificationChannel, channel_id)
    if row is None or not _may_manage(caller, row):
        raise HTTPProblem(404, f"no channel {channel_id!r}")
    session.delete(row)
    session.commit()
    return Response(status_code=204)


@router.get("/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    caller: CallerDep,
    session: SessionDep,
    project_id: str | None = None,
    notification_id: str | None = None,
    outcome: Annotated[Literal["delivered", "failed"] | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[DeliveryPublic]:
    """Every delivery attempt and its outcome, over the projects the caller can see; its
    status code, error and recipient (a mail's address) only to the admin and the pm of the
    project's body."""
    query = caller.scope(
        select(t.DeliveryAttempt, t.Project.lg_code).join(
            t.Project,
            t.Project.id == t.DeliveryAttempt.project_id,  # type: ignore[arg-type]
        )
    )
    if project_id is not None:
        query = query.where(t.DeliveryAttempt.project_id == project_id)
    if notification_id is not None:
        query = query.where(t.DeliveryAttempt.notification_id == notification_id)
    if outcome is not None:
        query = query.where(t.DeliveryAttempt.outcome == outcome)

    # Status codes and errors tell what answers where (a port-scan oracle), and a mail's
    # recipient is a person's address: they are for those who manage the body's channels
    # and people; every other reader sees only the outcome.
    def delivery(row: Any) -> DeliveryPublic:
        attempt, lg_code = row
        if _may_manage(caller, _Body(lg_code)):
            return DeliveryPublic.of(attempt)
        return DeliveryPublic.of(
            attempt, status_code=None, error=None, recipient=None, redacted=True
        )

    order = (col(t.DeliveryAttempt.id),)
    return paged(session, query, order, limit, offset, delivery)
