"""The people pages: /people (who may see whom, inviting, deactivating) and /me (the
notification choice and personal API tokens), in Japanese, over api/people.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from api import people
from api.deps import ContextDep, RowId, SessionDep
from api.errors import HTTPProblem
from api.schemas import PersonalTokenCreate, PersonCreate, PersonUpdate
from api.web.pages import PageCaller, _back, _problem_ja, _render, error_page
from readmodel import tables as t
from workflows.vocabulary import Role

router = APIRouter(include_in_schema=False)

# The roles each inviter's form offers (what people.may_grant allows, in its order).
OFFERED: dict[str, tuple[Role, ...]] = {
    Role.ADMIN: tuple(Role),
    Role.PREFECTURE: (Role.PM, Role.APPROVER, Role.PREFECTURE),
    Role.PM: (Role.PM, Role.APPROVER),
    Role.VENDOR: (Role.VENDOR,),
}
NOTIFY_JA = {
    "each": "その都度受け取る",
    "daily": "1日1回まとめて受け取る（平日9:30）",
    "none": "受け取らない",
}


@router.get("/people", response_class=HTMLResponse)
def people_page(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Response:
    try:
        page = people.list_people(session, caller, 100, offset, q=q)
    except HTTPProblem:
        return error_page(request, 403, caller=caller)
    return _render(
        request,
        "people.html",
        caller,
        items=page.items,
        total=page.total,
        offset=offset,
        q=q or "",
        offered=OFFERED.get(caller.role, ()),
        removable={
            p.id
            for p in page.items
            if p.active
            and people.may_grant(
                caller,
                p.role,
                {"lg_code": p.lg_code, "prefecture": p.prefecture, "vendor_id": p.vendor_id},
            )
        },
    )


@router.post("/people")
async def invite(request: Request, caller: PageCaller, ctx: ContextDep) -> Response:
    form = await request.form()
    given = {
        k: v.strip()
        for k, v in form.items()
        if isinstance(v, str) and v.strip() and k in PersonCreate.model_fields
    }
    try:
        body = PersonCreate.model_validate(given)

        def add(session: Session) -> tuple[t.Person, str]:
            person = people.add_person(session, caller, body)
            return person, people.issue_link(session, person, people.INVITATION, ctx.settings)

        person, secret = await ctx.db.run(add)
    except HTTPProblem as p:
        return _back("/people", err=_problem_ja(p))
    except ValidationError as exc:
        return _back("/people", err="入力内容を確認してください（" + exc.errors()[0]["msg"] + "）")
    sent = await people.send_link(ctx.settings, person, secret, people.INVITATION)
    if not sent:
        return _back(
            "/people",
            err=f"{person.name} さんを登録しましたが、招待メールを送れませんでした。"
            "しばらくしてから再送してください。",
        )
    return _back("/people", msg=f"{person.name} さんに招待メールを送りました")


@router.post("/people/{person_id}/deactivate")
def deactivate(
    request: Request, caller: PageCaller, session: SessionDep, person_id: RowId
) -> Response:
    try:
        person = people.remove_person(session, caller, person_id)
    except HTTPProblem as p:
        return _back("/people", err=_problem_ja(p))
    return _back(
        "/people",
        msg=f"{person.name} さんを無効にしました（ログイン中の画面もすぐに使えなくなります）",
    )


@router.get("/me", response_class=HTMLResponse)
def me_page(request: Request, caller: PageCaller, session: SessionDep) -> Response:
    try:
        person = people.me(session, caller)
    except HTTPProblem:
        return _render(request, "me.html", caller, person=None, tokens=[], notify=NOTIFY_JA)
    tokens = people.personal_tokens(session, caller)
    return _render(
        request, "me.html", caller, person=person, tokens=tokens, notify=NOTIFY_JA, new_token=None
    )


@router.post("/me")
def save_me(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)],
    notify: Annotated[str, Form(max_length=16)],
) -> Response:
    try:
        people.update_me(
            session, caller, PersonUpdate.model_validate({"name": name, "notify": notify})
        )
    except HTTPProblem as p:
        return _back("/me", err=_problem_ja(p))
    except ValidationError:
        return _back("/me", err="入力内容を確認してください")
    return _back("/me", msg="設定を保存しました")


@router.post("/me/tokens", response_class=HTMLResponse)
def make_token(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)],
) -> Response:
    """The new token is shown on this page once, never again."""
    try:
        made = people.make_personal_token(
            session, caller, PersonalTokenCreate.model_validate({"name": name})
        )
    except HTTPProblem as p:
        return _back("/me", err=_problem_ja(p))
    except ValidationError:
        return _back("/me", err="トークンの名前を入力してください")
    person = people.me(session, caller)
    tokens = people.personal_tokens(session, caller)
    return _render(
        request, "me.html", caller, person=person, tokens=tokens, notify=NOTIFY_JA, new_token=made
    )


@router.post("/me/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, caller: PageCaller, session: SessionDep, token_id: RowId
) -> Response:
    try:
        people.revoke_personal_token(session, caller, token_id)
    except HTTPProblem as p:
        return _back("/me", err=_problem_ja(p))
    return _back("/me", msg="トークンを無効にしました")
