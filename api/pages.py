"""Web pages, Japanese first. They call the same route functions as the REST API, so every
rule, scope check and workflow update is the one the API enforces."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel import Session, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api import commands
from api.auth import Caller, caller_for
from api.deps import ContextDep, SessionDep
from api.errors import Problem, from_rpc_error, from_update_error
from api.routers import oversight, projects
from api.schemas import DecisionIn, ExtendedTrackIn, ProjectCreate, ReplanIn, TaskChangeIn
from readmodel import tables as t
from runtime.settings import Settings
from workflows.businesses import BUSINESSES
from workflows.roles import ADDRESSEES, Action
from workflows.vocabulary import (
    VOCABULARIES,
    EscalationStatus,
    GateOutcome,
    TaskStatus,
    Vocabulary,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    directory=str(__import__("pathlib").Path(__file__).parent / "templates")
)

COOKIE = "hyojunka_token"
STATUS_PROBLEM_JA = {
    400: "入力の形式が正しくありません",
    403: "この操作の権限がありません",
    404: "見つかりません",
    409: "現在の状態ではこの操作はできません",
    422: "入力内容を確認してください",
    503: "一時的に処理できません",
}


def label(code: str, vocabulary: type[Vocabulary]) -> str:
    """The Japanese label of ``code`` (``{{ task.status|ja(TaskStatus) }}``); a code the
    vocabulary does not know, from older stored data say, is shown as it is."""
    try:
        return vocabulary(code).label
    except ValueError:
        return code


templates.env.filters["ja"] = label
# Templates iterate the vocabularies and ask the caller (may, acts_for), never test roles.
templates.env.globals.update(
    {v.__name__: v for v in VOCABULARIES},
    Action=Action,
    BUSINESSES=BUSINESSES,
)


class LoginRequired(Exception):
    """Raised by a page that needs a signed-in caller; the app answers with /login."""


def _caller(request: Request, session: Session) -> Caller | None:
    secret = request.cookies.get(COOKIE)
    return caller_for(session, secret) if secret else None


def _signed_in(request: Request) -> Caller:
    # A session of its own, closed here: a page that writes must not keep it while
    # Temporal works.
    with Session(request.app.state.engine) as session:
        caller = _caller(request, session)
    if caller is None:
        raise LoginRequired
    return caller


PageCaller = Annotated[Caller, Depends(_signed_in)]


def to_login(_: Request, __: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


def _render(request: Request, name: str, caller: Caller | None, **ctx: Any) -> HTMLResponse:
    ctx.update(
        caller=caller,
        message=request.query_params.get("msg"),
        error=request.query_params.get("err"),
    )
    return templates.TemplateResponse(request, name, ctx)


def _back(path: str, *, msg: str | None = None, err: str | None = None) -> RedirectResponse:
    if msg:
        path += ("&" if "?" in path else "?") + "msg=" + quote(msg)
    if err:
        path += ("&" if "?" in path else "?") + "err=" + quote(err)
    return RedirectResponse(path, status_code=303)


def _problem_ja(p: Problem) -> str:
    return f"{STATUS_PROBLEM_JA.get(p.status, 'エラー')}（{p.detail}）"


async def _act(path: str, ok: str, action: Any) -> RedirectResponse:
    """Run one write and come back to ``path`` with what happened, in Japanese."""
    try:
        await action
    except Problem as p:
        return _back(path, err=_problem_ja(p))
    except WorkflowUpdateFailedError as exc:
        return _back(path, err=_problem_ja(from_update_error(exc)))
    except RPCError as exc:
        return _back(path, err=_problem_ja(from_rpc_error(exc)))
    except ValidationError as exc:
        return _back(path, err="入力内容を確認してください（" + exc.errors()[0]["msg"] + "）")
    return _back(path, msg=ok)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    return RedirectResponse("/projects" if _caller(request, session) else "/login", 303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _render(request, "login.html", None)


@router.post("/login")
def login(request: Request, session: SessionDep, token: Annotated[str, Form()]) -> Response:
    if caller_for(session, token.strip()) is None:
        return _back("/login", err="トークンが正しくありません")
    settings: Settings = request.app.state.settings
    resp = RedirectResponse("/projects", status_code=303)
    resp.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https"),
    )
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


@router.get("/projects", response_class=HTMLResponse)
def project_list(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    stage: str | None = None,
    health: str | None = None,
    page: Annotated[int, Query(ge=1, le=2**20)] = 1,
) -> Response:
    size = 50
    result = projects.list_projects(
        caller,
        session,
        stage=stage or None,
        health=health or None,
        limit=size,
        offset=(max(page, 1) - 1) * size,
    )
    return _render(
        request,
        "projects.html",
        caller,
        page=result,
        stage=stage,
        health=health,
        page_no=max(page, 1),
        pages=max(1, -(-result.total // size)),
    )


@router.get("/projects/new", response_class=HTMLResponse)
def project_new(request: Request, caller: PageCaller, session: SessionDep) -> Response:
    vendors = session.exec(select(t.Vendor).order_by(t.Vendor.id)).all()
    return _render(request, "project_new.html", caller, vendors=vendors)


@router.post("/projects/new")
async def project_create(
    request: Request,
    caller: PageCaller,
    ctx: ContextDep,
    lg_code: Annotated[str, Form()],
    business: Annotated[str, Form()],
    target_go_live: Annotated[str, Form()],
    vendor_id: Annotated[str, Form()] = "",
    switching_vendor: Annotated[str, Form()] = "",
) -> Response:
    project_id = f"{lg_code}-{business}"

    async def create() -> None:
        body = ProjectCreate.model_validate(
            {
                "lg_code": lg_code.strip(),
                "business": business,
                "target_go_live": target_go_live,
                "vendor_id": vendor_id or None,
                "switching_vendor": bool(switching_vendor),
            }
        )
        await commands.create_project(ctx, caller, body)

    resp = await _act("/projects/new", "", create())
    if "err=" in resp.headers["location"]:
        return resp
    return _back(f"/projects/{project_id}", msg="プロジェクトを登録しました")


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_detail(
    request: Request, caller: PageCaller, session: SessionDep, project_id: str
) -> Response:
    try:
        project = projects.get_project(project_id, caller, session)
    except Problem:
        return _render(request, "not_found.html", caller)
    events = projects.list_events(project_id, caller, session, limit=500, offset=0).items
    escalations = oversight.list_escalations(
        caller, session, project_id=project_id, limit=500, offset=0
    ).items
    return _render(
        request,
        "project.html",
        caller,
        p=project,
        events=list(reversed(events))[:30],
        escalations=[e for e in escalations if e.status != EscalationStatus.RESOLVED],
        today=date.today(),
    )


@router.post("/projects/{project_id}/tasks/{key}")
async def task_move(
    request: Request,
    caller: PageCaller,
    ctx: ContextDep,
    project_id: str,
    key: str,
    status: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
) -> Response:

    async def move() -> None:
        body = TaskChangeIn(status=status, note=note or None)  # type: ignore[arg-type]
        await commands.change_task(ctx, caller, project_id, key, body)

    return await _act(
        f"/projects/{project_id}", f"「{key}」を{label(status, TaskStatus)}にしました", move()
    )


@router.post("/projects/{project_id}/gates/{key}")
async def gate_decide(
    request: Request,
    caller: PageCaller,
    ctx: ContextDep,
    project_id: str,
    key: str,
    outcome: Annotated[str, Form()],
    comment: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:

    async def decide() -> None:
        body = DecisionIn(outcome=outcome, comment=comment or None)  # type: ignore[arg-type]
        await commands.decide_gate(ctx, caller, project_id, key, body)

    done = "承認しました" if outcome == GateOutcome.APPROVE else "差し戻しました"
    return await _act(back if back == "/approvals" else f"/projects/{project_id}", done, decide())


@router.post("/projects/{project_id}/replan")
async def replan(
    request: Request,
    caller: PageCaller,
    ctx: ContextDep,
    project_id: str,
    target_go_live: Annotated[str, Form()],
    reason: Annotated[str, Form()],
) -> Response:

    async def move() -> None:
        body = ReplanIn(target_go_live=target_go_live, reason=reason)  # type: ignore[arg-type]
        await commands.replan(ctx, caller, project_id, body)

    return await _act(f"/projects/{project_id}", "計画を変更しました", move())


@router.post("/projects/{project_id}/extended-track")
async def extended_track(
    request: Request,
    caller: PageCaller,
    ctx: ContextDep,
    project_id: str,
    ground: Annotated[str, Form()],
    planned_go_live: Annotated[str, Form()],
    reason: Annotated[str, Form()],
) -> Response:

    async def declare() -> None:
        body = ExtendedTrackIn.model_validate(
            {"ground": ground, "planned_go_live": planned_go_live, "reason": reason}
        )
        await commands.declare_extended_track(ctx, caller, project_id, body)

    return await _act(f"/projects/{project_id}", "移行期限の延長を申告しました", declare())


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, caller: PageCaller, session: SessionDep) -> Response:
    items = oversight.list_approvals(caller, session, limit=500, offset=0).items
    return _render(request, "approvals.html", caller, items=items)


@router.get("/escalations", response_class=HTMLResponse)
def escalations(
    request: Request, caller: PageCaller, session: SessionDep, status: str = "open"
) -> Response:
    try:
        wanted = EscalationStatus(status)
    except ValueError:
        wanted = EscalationStatus.OPEN
    items = oversight.list_escalations(caller, session, status=wanted, limit=500, offset=0).items
    # Those some rung addresses acknowledge here; an admin may too, through the API.
    acknowledges = caller.may(Action.ACK) and caller.role in ADDRESSEES
    return _render(
        request,
        "escalations.html",
        caller,
        items=items,
        status=wanted,
        acknowledges=acknowledges,
    )


@router.post("/escalations/{escalation_id}/ack")
async def escalation_ack(
    request: Request,
    caller: PageCaller,
    ctx: ContextDep,
    escalation_id: str,
) -> Response:
    return await _act(
        "/escalations",
        "確認済みにしました",
        commands.acknowledge_escalation(ctx, caller, escalation_id),
    )
