"""Web pages, Japanese first. They read through api/queries.py and write through
api/commands.py, as the REST routes do, so every rule, scope check and workflow update is
the one the API enforces; a form is read into the API's own input model."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from sqlmodel import Session, col, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api import commands, queries
from api.auth import (
    PAGE_COOKIE,
    Caller,
    caller_for_page,
    end_page_session,
    open_page_session,
)
from api.deps import ContextDep, SessionDep
from api.errors import HTTPProblem, from_rpc_error, from_update_error
from api.schemas import (
    DecisionIn,
    ExtendedTrackIn,
    MilestoneIn,
    ProjectCreate,
    ProjectPublic,
    ReplanIn,
    TaskChangeIn,
)
from readmodel import tables as t
from runtime.settings import Settings
from workflows.businesses import BUSINESSES
from workflows.calendar import JST
from workflows.roles import ADDRESSEES, Action
from workflows.vocabulary import (
    VOCABULARIES,
    EscalationLevel,
    EscalationStatus,
    EventKind,
    GateOutcome,
    TaskStatus,
    Vocabulary,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    directory=str(__import__("pathlib").Path(__file__).parent / "templates")
)

COOKIE = PAGE_COOKIE
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


def jst(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time as people in Japan read it (JST), whatever zone it was stored in."""
    return value.astimezone(JST).strftime(fmt) if value else ""


def describe(event: Any, task_names: dict[str, str]) -> str:
    """One line of the history in Japanese: what happened, to which task by its name."""
    d = event.data or {}
    name = task_names.get(d.get("task_key") or d.get("gate_key") or "", "")
    what = f"「{name}」" if name else ""
    match event.kind:
        case EventKind.TASK_UPDATED:
            return f"{what}を{label(d.get('to', ''), TaskStatus)}に変更"
        case EventKind.MILESTONE_REPORTED if d.get("status") == "failed":
            return f"{what}が失敗（移行可否判定からやり直し）"
        case EventKind.MILESTONE_REPORTED:
            percent = f" {d['percent']}%" if d.get("percent") is not None else ""
            return f"{what} {label(d.get('to', ''), TaskStatus)}{percent}"
        case EventKind.GATE_DECIDED:
            said = f"（{d['comment']}）" if d.get("comment") else ""
            return f"{what}を{label(d.get('outcome', ''), GateOutcome)}{said}"
        case EventKind.ESCALATION_RAISED:
            return f"{what} {label(d.get('level', ''), EscalationLevel)}"
        case EventKind.REPLANNED:
            return f"本番移行予定日 {d.get('from')} → {d.get('to')}（{d.get('reason', '')}）"
        case EventKind.VENDOR_ASSIGNED:
            return f"{d.get('from') or 'なし'} → {d.get('to')}（{d.get('reason', '')}）"
        case EventKind.DEADLINE_EXCEEDED:
            return f"本番移行予定日 {d.get('target_go_live')} が移行期限 {d.get('deadline')} を超過"
    return ""


def _blocked(project: ProjectPublic) -> set[str]:
    """Tasks waiting behind an unfinished prerequisite: no button offers them."""
    done = {
        x.key for x in project.tasks if x.status in (TaskStatus.DONE, TaskStatus.NOT_APPLICABLE)
    }
    return {x.key for x in project.tasks if any(d not in done for d in x.depends_on)}


def _names(session: Session, project_ids: set[str]) -> tuple[dict[str, str], dict[Any, str]]:
    """Projects by body and system name, and their tasks by name, for lists across them."""
    if not project_ids:
        return {}, {}
    rows = session.exec(select(t.Project).where(col(t.Project.id).in_(project_ids))).all()
    projects = {r.id: f"{r.body_name} {r.business_name}" for r in rows}
    tasks = session.exec(select(t.Task).where(col(t.Task.project_id).in_(project_ids))).all()
    return projects, {(x.project_id, x.key): x.name for x in tasks}


templates.env.filters["ja"] = label
templates.env.filters["jst"] = jst
templates.env.globals["describe"] = describe
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
    return caller_for_page(session, secret) if secret else None


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


def not_found(request: Request) -> HTMLResponse:
    """An address no page has, in Japanese (the API keeps answering problem+json)."""
    response = _render(request, "not_found.html", None)
    response.status_code = 404
    return response


def _back(path: str, *, msg: str | None = None, err: str | None = None) -> RedirectResponse:
    if msg:
        path += ("&" if "?" in path else "?") + "msg=" + quote(msg)
    if err:
        path += ("&" if "?" in path else "?") + "err=" + quote(err)
    return RedirectResponse(path, status_code=303)


def _problem_ja(p: HTTPProblem) -> str:
    """What went wrong, in Japanese: the rule's own words where it gave them."""
    return p.japanese or f"{STATUS_PROBLEM_JA.get(p.status, 'エラー')}（{p.detail}）"


M = TypeVar("M", bound=BaseModel)


class _NoInput(BaseModel):
    """A form that carries nothing but the click."""


R = TypeVar("R")


async def _act(
    request: Request,
    path: str,
    model: type[M],
    run: Callable[[M], Awaitable[R]],
    ok: Callable[[R], str],
    then: Callable[[R], str] | None = None,
    **fixed: Any,
) -> RedirectResponse:
    """One write from a form: the form read into the API's own input ``model``, the command
    run, and back to ``path`` (or ``then``) saying what happened, in Japanese."""
    form = await request.form()
    given = {k: v.strip() for k, v in form.items() if isinstance(v, str) and v.strip()}
    try:
        data = {k: v for k, v in {**given, **fixed}.items() if v is not None}  # None: drop
        result = await run(model.model_validate(data))
    except HTTPProblem as p:
        return _back(path, err=_problem_ja(p))
    except WorkflowUpdateFailedError as exc:
        return _back(path, err=_problem_ja(from_update_error(exc)))
    except RPCError as exc:
        return _back(path, err=_problem_ja(from_rpc_error(exc)))
    except ValidationError as exc:
        return _back(path, err="入力内容を確認してください（" + exc.errors()[0]["msg"] + "）")
    return _back(then(result) if then else path, msg=ok(result))


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    return RedirectResponse("/projects" if _caller(request, session) else "/login", 303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _render(request, "login.html", None)


@router.post("/login")
def login(request: Request, session: SessionDep, token: Annotated[str, Form()]) -> Response:
    """Sign in with an API token: the browser gets a session of its own (the token itself
    never goes into a cookie), ended by signing out, by expiry or by revoking the token."""
    settings: Settings = request.app.state.settings
    secret = open_page_session(session, token.strip(), settings.page_session_hours)
    if secret is None:
        return _back("/login", err="トークンが正しくありません")
    resp = RedirectResponse("/projects", status_code=303)
    resp.set_cookie(
        COOKIE,
        secret,
        max_age=int(settings.page_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https"),
    )
    return resp


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    secret = request.cookies.get(COOKIE)
    if secret:
        end_page_session(session, secret)  # over on the server, not just in this browser
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
    offset = (max(page, 1) - 1) * size
    result = queries.projects(session, caller, size, offset, stage=stage or None, health=health)
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
async def project_create(request: Request, caller: PageCaller, ctx: ContextDep) -> Response:
    return await _act(
        request,
        "/projects/new",
        ProjectCreate,
        lambda body: commands.create_project(ctx, caller, body),
        lambda _: "プロジェクトを登録しました",
        then=lambda project: f"/projects/{project.id}",
    )


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_detail(
    request: Request, caller: PageCaller, session: SessionDep, project_id: str
) -> Response:
    try:
        project = queries.project(session, caller, project_id)
    except HTTPProblem:
        return _render(request, "not_found.html", caller)
    events = queries.events(session, caller, project_id, 500, 0).items
    escalations = queries.escalations(session, caller, 500, 0, project_id=project_id).items
    return _render(
        request,
        "project.html",
        caller,
        p=project,
        task_names={x.key: x.name for x in project.tasks},
        blocked=_blocked(project),
        form_key=uuid.uuid4().hex,  # this form's Idempotency-Key: a double submit is one
        events=list(reversed(events))[:30],
        escalations=[e for e in escalations if e.status != EscalationStatus.RESOLVED],
        today=date.today(),
    )


@router.post("/projects/{project_id}/tasks/{key}")
async def task_move(
    request: Request, caller: PageCaller, ctx: ContextDep, project_id: str, key: str
) -> Response:
    return await _act(
        request,
        f"/projects/{project_id}",
        TaskChangeIn,
        lambda body: commands.change_task(ctx, caller, project_id, key, body),
        lambda task: f"「{task.name}」を{task.status.label}にしました",
    )


@router.post("/projects/{project_id}/milestones")
async def milestone(
    request: Request, caller: PageCaller, ctx: ContextDep, project_id: str
) -> Response:
    """A vendor's report from the page: the form carries its own Idempotency-Key, so a
    double click or a resent form is the same report."""
    ctx.idempotency_key = str((await request.form()).get("idempotency_key") or "") or None
    return await _act(
        request,
        f"/projects/{project_id}",
        MilestoneIn,
        lambda body: commands.report_milestone(ctx, caller, project_id, body),
        lambda answer: (
            "この報告はすでに受け付けています"
            if answer.duplicate
            else f"「{answer.task.name}」の進捗を報告しました"
        ),
        idempotency_key=None,
    )


@router.post("/projects/{project_id}/gates/{key}")
async def gate_decide(
    request: Request, caller: PageCaller, ctx: ContextDep, project_id: str, key: str
) -> Response:
    back = (await request.form()).get("back")
    return await _act(
        request,
        "/approvals" if back == "/approvals" else f"/projects/{project_id}",
        DecisionIn,
        lambda body: commands.decide_gate(ctx, caller, project_id, key, body),
        lambda gate: "承認しました" if gate.status == TaskStatus.DONE else "差し戻しました",
        back=None,
    )


@router.post("/projects/{project_id}/replan")
async def replan(
    request: Request, caller: PageCaller, ctx: ContextDep, project_id: str
) -> Response:
    return await _act(
        request,
        f"/projects/{project_id}",
        ReplanIn,
        lambda body: commands.replan(ctx, caller, project_id, body),
        lambda _: "計画を変更しました",
    )


@router.post("/projects/{project_id}/extended-track")
async def extended_track(
    request: Request, caller: PageCaller, ctx: ContextDep, project_id: str
) -> Response:
    return await _act(
        request,
        f"/projects/{project_id}",
        ExtendedTrackIn,
        lambda body: commands.declare_extended_track(ctx, caller, project_id, body),
        lambda _: "移行期限の延長を申告しました",
    )


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, caller: PageCaller, session: SessionDep) -> Response:
    items = queries.approvals(session, caller, 500, 0).items
    names, _ = _names(session, {a.project_id for a in items})
    return _render(request, "approvals.html", caller, items=items, names=names)


@router.get("/escalations", response_class=HTMLResponse)
def escalations(
    request: Request, caller: PageCaller, session: SessionDep, status: str = "open"
) -> Response:
    try:
        wanted = EscalationStatus(status)
    except ValueError:
        wanted = EscalationStatus.OPEN
    items = queries.escalations(session, caller, 500, 0, status=wanted).items
    # Those some rung addresses acknowledge here; an admin may too, through the API.
    acknowledges = caller.may(Action.ACK) and caller.role in ADDRESSEES
    names, task_names = _names(session, {e.project_id for e in items})
    return _render(
        request,
        "escalations.html",
        caller,
        items=items,
        names=names,
        task_names=task_names,
        status=wanted,
        acknowledges=acknowledges,
    )


@router.post("/escalations/{escalation_id}/ack")
async def escalation_ack(
    request: Request, caller: PageCaller, ctx: ContextDep, escalation_id: str
) -> Response:
    return await _act(
        request,
        "/escalations",
        _NoInput,
        lambda _: commands.acknowledge_escalation(ctx, caller, escalation_id),
        lambda _: "確認済みにしました",
    )
