"""Signing in without a password: a single-use link mailed to an active person.

`POST /login/email` answers the same page, at once, whatever the address: the link is made
and mailed after the answer has gone (so neither the words nor the time tell whether an
address is known). `GET /login/link/{secret}` only shows a button: mail systems open links
to scan them, and a scan must not use the link up; the button's `POST /login/link` (the
secret in the form) does, and the browser gets a page session of the person's. The
landing page is reached from a page of ours, so the session cookie (SameSite=Strict) goes
with it even when the link was opened from a mail program. Both forms are CSRF-protected
however they arrive (a form from another site carries no cookie of ours, which asgi-csrf
would otherwise let through): no page elsewhere can sign a browser in as someone else.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from api import people
from api.auth import caller_for_page
from api.deps import SessionDep
from api.web.pages import COOKIE, _landing, _render
from readmodel import tables as t
from runtime.settings import Settings

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

SENT = (
    "ログイン用のリンクをメールで送りました。{minutes}分以内に開いてください。"
    "届かない場合は、入力したアドレスが招待されたものか確認してください。"
)


def signed_in_page(request: Request, secret: str, settings: Settings, landing: str) -> Response:
    """The browser's new session: the cookie, and a page that moves on to the landing page
    (a same-site step, so the SameSite=Strict cookie is sent with it)."""
    resp = _render(request, "signed_in.html", None, landing=landing)
    resp.set_cookie(
        COOKIE,
        secret,
        max_age=int(settings.page_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https"),
    )
    return resp


@router.post("/login/email", response_class=HTMLResponse)
async def request_link(
    request: Request, background: BackgroundTasks, email: Annotated[str, Form(max_length=254)]
) -> Response:
    settings: Settings = request.app.state.settings
    background.add_task(_mail_link, request.app.state.engine, settings, email)
    minutes = int(settings.sign_in_link_minutes)
    return _render(request, "login.html", None, sent=SENT.format(minutes=minutes))


async def _mail_link(engine: object, settings: Settings, email: str) -> None:
    """After the answer: an active person gets a link; anyone else, nothing."""

    def find(session: Session) -> tuple[t.Person, str] | None:
        person = people.person_for_sign_in(session, email)
        if person is None:
            return None
        return person, people.issue_link(session, person, people.SIGN_IN, settings)

    def run() -> tuple[t.Person, str] | None:
        with Session(engine) as session:  # type: ignore[arg-type]
            return find(session)

    found = await asyncio.to_thread(run)
    if found is None:
        log.info("sign-in link asked for an unknown or inactive address")
        return
    await people.send_link(settings, found[0], found[1], people.SIGN_IN)


@router.get("/login/link/{secret}", response_class=HTMLResponse)
def link_page(request: Request, secret: str) -> Response:
    return _render(request, "login_link.html", None, secret=secret)


@router.post("/login/link", response_class=HTMLResponse)
def use_link(
    request: Request, session: SessionDep, secret: Annotated[str, Form(max_length=200)]
) -> Response:
    settings: Settings = request.app.state.settings
    person = people.use_link(session, secret)
    if person is None or person.id is None:
        resp = _render(
            request,
            "login.html",
            None,
            link_error="このリンクは使えません（使用済み、期限切れ、または無効なリンクです）。"
            "もう一度ログイン用のリンクを受け取ってください。",
        )
        resp.status_code = 410
        return resp
    cookie = people.open_person_session(session, person.id, settings.page_session_hours)
    return signed_in_page(request, cookie, settings, _landing(caller_for_page(session, cookie)))
