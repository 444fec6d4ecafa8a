"""Calendar feeds: a reader's secret iCalendar address of due dates (API.md "Additions")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api import calendar
from api.deps import CallerDep, SessionDep, SettingsDep
from api.schemas import (
    PROBLEM_RESPONSES,
    CalendarFeedCreate,
    CalendarFeedCreated,
    CalendarFeedPublic,
)

router = APIRouter(prefix="/api/v1/calendar", tags=["calendar"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=CalendarFeedCreated)
def create_feed(
    body: CalendarFeedCreate, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> CalendarFeedCreated:
    """A secret address of the due dates of one project, body or vendor the caller sees;
    shown once. It shows what the caller's token sees, for as long as the token is valid."""
    return calendar.create_feed(session, caller, body, settings.public_url)


@router.get("", response_model=list[CalendarFeedPublic])
def list_feeds(caller: CallerDep, session: SessionDep) -> list[CalendarFeedPublic]:
    """The caller's own feeds (an admin's: everyone's), never their addresses."""
    return calendar.feeds(session, caller)


@router.delete("/{feed_id}", status_code=204)
def revoke_feed(
    feed_id: Annotated[int, Path(ge=1, le=2**31)], caller: CallerDep, session: SessionDep
) -> Response:
    calendar.revoke_feed(session, caller, feed_id)
    return Response(status_code=204)


@router.get(
    "/{feed}.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def feed(
    feed: Annotated[str, Path(min_length=8, max_length=80)],
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The feed itself, for a calendar application: no token, the address is the secret."""
    return Response(
        calendar.render(session, feed, settings.public_url),
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300"},
    )
