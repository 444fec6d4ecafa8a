"""People: accounts for persons, invited by those who may grant their role and scope."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from api import people
from api.deps import CallerDep, ContextDep, Limit, Offset, RowId, SessionDep
from api.schemas import (
    PROBLEM_RESPONSES,
    Page,
    PersonalTokenCreate,
    PersonCreate,
    PersonInvited,
    PersonPublic,
    PersonUpdate,
    TokenCreated,
    TokenPublic,
)
from readmodel import tables as t

router = APIRouter(prefix="/api/v1", tags=["people"], responses=PROBLEM_RESPONSES)


@router.get("/people", response_model=Page[PersonPublic])
def list_people(
    caller: CallerDep,
    session: SessionDep,
    role: str | None = Query(default=None, max_length=32),
    lg_code: str | None = Query(default=None, max_length=16),
    q: str | None = Query(default=None, max_length=200, description="part of a name or e-mail"),
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[PersonPublic]:
    return people.list_people(session, caller, limit, offset, role, lg_code, q)


@router.post("/people", status_code=201, response_model=PersonInvited)
async def invite_person(body: PersonCreate, caller: CallerDep, ctx: ContextDep) -> PersonInvited:
    """Made at once, and mailed a sign-in link valid for the invitation's days."""

    def add(session: Session) -> tuple[t.Person, str]:
        person = people.add_person(session, caller, body)
        return person, people.issue_link(session, person, people.INVITATION, ctx.settings)

    person, secret = await ctx.db.run(add)
    sent = await people.send_link(ctx.settings, person, secret, people.INVITATION)
    return people.invited(person, sent)


@router.post("/people/{person_id}/invitation", response_model=PersonInvited)
async def invite_again(person_id: RowId, caller: CallerDep, ctx: ContextDep) -> PersonInvited:
    """The invitation again (a lost mail, an expired link): a new link; the old ones stay
    valid until they expire or are used."""

    def target(session: Session) -> tuple[t.Person, str]:
        person = people.invitation_target(session, caller, person_id)
        return person, people.issue_link(session, person, people.INVITATION, ctx.settings)

    person, secret = await ctx.db.run(target)
    sent = await people.send_link(ctx.settings, person, secret, people.INVITATION)
    return people.invited(person, sent)


@router.get("/people/me", response_model=PersonPublic)
def get_me(caller: CallerDep, session: SessionDep) -> PersonPublic:
    return PersonPublic.of(people.me(session, caller))


@router.patch("/people/me", response_model=PersonPublic)
def patch_me(body: PersonUpdate, caller: CallerDep, session: SessionDep) -> PersonPublic:
    return PersonPublic.of(people.update_me(session, caller, body))


@router.get("/people/me/tokens", response_model=list[TokenPublic])
def my_tokens(caller: CallerDep, session: SessionDep) -> list[TokenPublic]:
    return [TokenPublic.of(r) for r in people.personal_tokens(session, caller)]


@router.post("/people/me/tokens", status_code=201, response_model=TokenCreated)
def make_my_token(
    body: PersonalTokenCreate, caller: CallerDep, session: SessionDep
) -> TokenCreated:
    """A token for the person's own scripts: their role and scope; it dies with them."""
    return people.make_personal_token(session, caller, body)


@router.delete("/people/me/tokens/{token_id}", status_code=204)
def revoke_my_token(token_id: RowId, caller: CallerDep, session: SessionDep) -> Response:
    people.revoke_personal_token(session, caller, token_id)
    return Response(status_code=204)


@router.delete("/people/{person_id}", status_code=204)
def deactivate_person(person_id: RowId, caller: CallerDep, session: SessionDep) -> Response:
    """Deactivated, never deleted: their sessions and personal tokens are refused from the
    next request; the audit trail keeps their name."""
    people.remove_person(session, caller, person_id)
    return Response(status_code=204)
