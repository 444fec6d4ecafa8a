"""Web pages, Japanese first. They read through api/queries.py and write through
api/commands.py, as the REST routes do, so every rule, scope check and workflow update is
the one the API enforces; a form is read into the API's own input model."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup, escape
from pydantic import BaseModel, ValidationError
from sqlmodel import Session, col, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api import calendar, commands, procurements, queries
from api.auth import (
    PAGE_COOKIE,
    Caller,
    caller_for_page,
    end_page_session,
    open_page_session,
)
from api.deps import MAX_IDEMPOTENCY_KEY, ContextDep, RowId, SessionDep
from api.errors import HTTPProblem, from_rpc_error, from_update_error
from api.schemas import (
    CalendarFeedCreate,
    DecisionIn,
    ExtendedTrackIn,
    MilestoneIn,
    ProjectCreate,
    ProjectPublic,
    ReplanIn,
    TaskChangeIn,
)
from api.web.timeline import gantt
from readmodel import tables as t
from readmodel.registry import registry
from runtime.settings import Settings
from workflows.businesses import BUSINESSES, BY_SLUG
from workflows.calendar import JST, jst_today
from workflows.model import progress_from_counts
from workflows.procurement import JOINT_STEPS
from workflows.roles import Action, acknowledges, oversees
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
CSRF_COOKIE = "hyojunka_csrf"
CSRF_FIELD = "csrftoken"  # the field asgi-csrf reads
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


def wareki(value: date | None) -> str:
    """A date as municipal documents write it: 令和8年3月31日."""
    if value is None:
        return ""
    if value >= date(2019, 5, 1):
        era, year = "令和", value.year - 2018
    else:
        era, year = "平成", value.year - 1988
    return f"{era}{'元' if year == 1 else year}年{value.month}月{value.day}日"


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
        case EventKind.TEMPLATE_UPGRADED:
            return f"手順書 {d.get('from')} → {d.get('to')}（{d.get('reason', '')}）"
        case (
            EventKind.PROCUREMENT_JOINED
            | EventKind.PROCUREMENT_LEFT
            | EventKind.PROCUREMENT_COMPLETED
        ):
            steps = "、".join(f"「{task_names.get(k, k)}」" for k in d.get("keys", []))
            vendor = f"（ベンダ {d['vendor_id']}）" if d.get("vendor_id") else ""
            return f"共同調達 {d.get('procurement_id')}：{steps}{vendor}"
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


@pass_context
def csrf_field(context: Any) -> Markup:
    """The hidden field every form of the pages carries: this browser's CSRF token."""
    token = context["request"].scope["csrftoken"]()
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(token)}">')


async def csrf_failed(scope: Any, send: Any, _: Any) -> None:
    """A form that did not come from our own page (or a page too old to trust), in
    Japanese; nothing was done."""
    body = templates.get_template("forbidden.html").render(caller=None).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})


templates.env.globals["csrf_field"] = csrf_field
templates.env.filters["ja"] = label
templates.env.filters["jst"] = jst
templates.env.filters["wareki"] = wareki
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


ERROR_PAGE_JA = {
    400: ("入力の形式が正しくありません", "送信された内容を読み取れませんでした。"),
    401: ("ログインが必要です", "もう一度ログインしてください。"),
    403: ("この操作の権限がありません", "この画面または操作は、担当の方のみ利用できます。"),
    404: (
        "見つかりません",
        "指定されたページまたはプロジェクトは存在しないか、閲覧する権限がありません。",
    ),
    405: ("この操作はできません", "この画面はこの方法では利用できません。"),
    413: ("送信された内容が大きすぎます", "内容を減らしてもう一度送信してください。"),
    422: ("入力内容を確認してください", "指定された条件の形式が正しくありません。"),
    429: ("操作が集中しています", "しばらく待ってからもう一度操作してください。"),
    500: (
        "システムエラーが発生しました",
        "ご迷惑をおかけしています。記録を確認しますので、下の受付番号を添えて管理者にお知らせください。",
    ),
    503: ("一時的に処理できません", "しばらく待ってからもう一度操作してください。"),
}


def error_page(
    request: Request,
    status: int,
    headers: dict[str, str] | None = None,
    caller: Caller | None = None,
) -> HTMLResponse:
    """Any failure of a page, in Japanese, with the request id the log carries (the API
    keeps answering problem+json)."""
    title, text = ERROR_PAGE_JA.get(status, ERROR_PAGE_JA[500 if status >= 500 else 400])
    response = templates.TemplateResponse(
        request,
        "error.html",
        {
            "caller": caller,
            "title": title,
            "text": text,
            "status": status,
            "request_id": request.scope.get("state", {}).get("request_id"),
        },
        status_code=status,
        headers=headers,
    )
    return response


def not_found(request: Request) -> HTMLResponse:
    """An address no page has, in Japanese."""
    return error_page(request, 404)


def _back(path: str, *, msg: str | None = None, err: str | None = None) -> RedirectResponse:
    """Back to ``path`` (and its ``#fragment``: the task acted on) saying what happened."""
    path, _, fragment = path.partition("#")
    if msg:
        path += ("&" if "?" in path else "?") + "msg=" + quote(msg)
    if err:
        path += ("&" if "?" in path else "?") + "err=" + quote(err)
    return RedirectResponse(path + (f"#{fragment}" if fragment else ""), status_code=303)


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
    given = {
        k: v.strip()
        for k, v in form.items()
        if isinstance(v, str) and v.strip() and k != CSRF_FIELD
    }
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


def _landing(caller: Caller | None) -> str:
    """National and prefecture readers start from the roll-up; those who work on
    projects start from their list."""
    if caller is None:
        return "/login"
    return "/reports" if oversees(caller.role) else "/projects"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    return RedirectResponse(_landing(_caller(request, session)), 303)


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
    resp = RedirectResponse(_landing(caller_for_page(session, secret)), status_code=303)
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


Code = Annotated[str | None, Query(max_length=64)]


def _week_end(today: date) -> date:
    """The Sunday that ends this week."""
    return today + timedelta(days=6 - today.weekday())


@router.get("/projects", response_class=HTMLResponse)
def project_list(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    stage: Code = None,
    health: Code = None,
    prefecture: Code = None,
    lg_code: Code = None,
    business: Code = None,
    vendor_over_capacity: bool | None = None,
    template: Code = None,
    page: Annotated[int, Query(ge=1, le=2**20)] = 1,
) -> Response:
    """The projects the caller sees with each one's next due task, and, for those who work
    on tasks, what is theirs to do by the end of this week."""
    size = 50
    offset = (page - 1) * size
    filters: dict[str, Any] = {
        "stage": stage or None,
        "health": health or None,
        "prefecture": prefecture or None,
        "lg_code": lg_code or None,
        "business": business or None,
    }
    result = queries.projects(
        session,
        caller,
        size,
        offset,
        vendor_over_capacity=vendor_over_capacity,
        template=template,
        **filters,
    )
    today = jst_today(datetime.now(UTC))
    # What is theirs to do, for those who work on one body's or one vendor's tasks.
    due, due_total = (
        queries.due_for(session, caller, _week_end(today))
        if caller.lg_code or caller.vendor_id
        else ([], 0)
    )
    kept = {k: v for k, v in {**filters, "template": template}.items() if v}
    return _render(
        request,
        "projects.html",
        caller,
        page=result,
        stage=stage,
        health=health,
        filters=kept,
        query=urlencode(kept),
        page_no=page,
        pages=max(1, -(-result.total // size)),
        next_due=queries.next_due(session, [p.id for p in result.items]),
        procedures=_procedures(session),
        template=template or "",
        due=due,
        due_total=due_total,
        today=today,
    )


@router.get("/reports", response_class=HTMLResponse)
def rollup(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    by: Code = None,
    prefecture: Code = None,
    lg_code: Code = None,
    business: Code = None,
    template: Code = None,
) -> Response:
    """MIC's figures over what the caller sees, from the nation down to one body's
    systems and by step: the same figures, from the same query, as
    ``/api/v1/reports/progress``; for the migrations, or another procedure (a body's DX
    plan, say) chosen by its template."""
    filters = {
        "prefecture": prefecture,
        "lg_code": lg_code,
        "business": business,
        "template": template,
    }
    filters = {k: v for k, v in filters.items() if v}
    if by not in queries.REPORT_GROUPS:
        # One level below what is chosen, or below what the caller's scope fixes.
        by = (
            "business"
            if "lg_code" in filters or caller.lg_code
            else "lg_code"
            if "prefecture" in filters or caller.prefecture
            else "prefecture"
        )
    rows = queries.progress(session, caller, by, **filters)
    total = progress_from_counts(
        *(sum(r[k] for r in rows) for k in ("done", "in_progress", "not_started", "not_applicable"))
    )
    trail: list[tuple[str | None, str | None]] = []  # 全国 > 都道府県 > 団体 > 業務, each a link up
    # A caller scoped to one prefecture or body starts there.
    lg_code = lg_code or caller.lg_code
    prefecture = prefecture or caller.prefecture
    if prefecture or lg_code:
        body = registry().get(lg_code) if lg_code else None
        code = body.prefecture_code if body else prefecture
        names = queries.prefecture_names()
        trail.append((names.get(code or "", code), urlencode({"prefecture": code})))
        if body:
            trail.append((body.name, urlencode({"lg_code": lg_code})))
    if business:
        trail.append((BY_SLUG[business].name if business in BY_SLUG else business, None))
    return _render(
        request,
        "reports.html",
        caller,
        rows=rows,
        total=total,
        steps=sum(r["steps"] for r in rows),
        by=by,
        filters=filters,
        query=urlencode(filters),
        trail=trail,
        # The month-end snapshots are the migrations'.
        trend=[] if template else queries.trend(session, caller, None, 12, **filters),
        template=template or "",
        procedures=_procedures(session),
    )


def _procedures(session: Session) -> list[tuple[str, str]]:
    """The procedures a roll-up can be of: the migrations, then each other template by id."""
    seen: dict[str, str] = {}
    for x in commands.templates(session):
        if x.kind != "migration":
            seen.setdefault(x.id, x.name)
    return [("", "システム標準化（移行）"), *sorted(seen.items())]


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
        return error_page(request, 404, caller=caller)
    today = jst_today(datetime.now(UTC))
    joint = queries.procurement_of(session, project_id) if project.procurement_id else None
    # A body's DX plan: its item ② follows the body's migration projects, listed with it.
    migrations = (
        queries.projects(session, caller, 100, 0, lg_code=project.lg_code).items
        if project.kind == "programme"
        else []
    )
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
        today=today,
        timeline=gantt(project, today),
        joint=joint,
        held={
            x.key
            for x in project.tasks
            if joint is not None
            and x.key in JOINT_STEPS
            and x.status not in (TaskStatus.DONE, TaskStatus.NOT_APPLICABLE)
        },
        vendor_name=_vendor_name(session, project.vendor_id),
        migrations=migrations,
    )


@router.get("/procurements/{procurement_id}", response_class=HTMLResponse)
def procurement_detail(
    request: Request, caller: PageCaller, session: SessionDep, procurement_id: str
) -> Response:
    """A joint procurement as its lead and members follow it: its joint steps, its members
    and the vendor chosen (where its notices link)."""
    try:
        proc = procurements.procurement(session, caller, procurement_id)
    except HTTPProblem:
        return error_page(request, 404, caller=caller)
    members = {m.project_id: session.get(t.Project, m.project_id) for m in proc.members}
    return _render(
        request,
        "procurement.html",
        caller,
        proc=proc,
        members=members,
        vendor_name=_vendor_name(session, proc.vendor_id),
    )


def _vendor_name(session: Session, vendor_id: str | None) -> str | None:
    """A vendor as people know it: its company name, with its id."""
    if vendor_id is None:
        return None
    vendor = session.get(t.Vendor, vendor_id)
    return f"{vendor.name}（{vendor_id}）" if vendor else vendor_id


@router.post("/projects/{project_id}/tasks/{key}")
async def task_move(
    request: Request, caller: PageCaller, ctx: ContextDep, project_id: str, key: str
) -> Response:
    return await _act(
        request,
        f"/projects/{project_id}#task-{quote(key)}",
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
    form = await request.form()
    back = f"/projects/{project_id}#task-{quote(str(form.get('task_key') or ''))}"
    key = str(form.get("idempotency_key") or "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY:  # the API's own limit (api.deps.idempotency_key)
        return _back(back, err=f"送信キーが長すぎます（{MAX_IDEMPOTENCY_KEY}文字まで）")
    ctx.idempotency_key = key or None
    return await _act(
        request,
        back,
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
        "/approvals" if back == "/approvals" else f"/projects/{project_id}#task-{quote(key)}",
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
    """The gates awaiting a decision, each with its body and system, what it closes, its
    prerequisites and when they were done, and how late it is."""
    items = queries.approvals(session, caller, 500, 0).items
    ids = {a.project_id for a in items}
    names, _ = _names(session, ids)
    rows = session.exec(select(t.Task).where(col(t.Task.project_id).in_(ids))).all() if ids else []
    return _render(
        request,
        "approvals.html",
        caller,
        items=items,
        names=names,
        tasks={(r.project_id, r.key): r for r in rows},
        today=jst_today(datetime.now(UTC)),
    )


@router.get("/escalations", response_class=HTMLResponse)
def escalations(
    request: Request, caller: PageCaller, session: SessionDep, status: Code = "open"
) -> Response:
    """Escalations by project, each with its level, audience and age; those addressed to
    the caller can be acknowledged, several at once."""
    try:
        wanted = EscalationStatus(status or "open")
    except ValueError:
        wanted = EscalationStatus.OPEN
    page = queries.escalations(session, caller, 1000, 0, status=wanted)
    items = page.items
    names, task_names = _names(session, {e.project_id for e in items})
    now = datetime.now(UTC)
    return _render(
        request,
        "escalations.html",
        caller,
        items=items,
        total=page.total,
        names=names,
        task_names=task_names,
        status=wanted,
        ackable={
            e.id
            for e in items
            if e.status == EscalationStatus.OPEN
            and caller.may(Action.ACK)
            and acknowledges(caller.role, e.audience, e.level)
        },
        ages={e.id: (now - _aware(e.raised_at)).days for e in items if e.raised_at},
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.post("/escalations/ack")
async def escalations_ack(request: Request, caller: PageCaller, ctx: ContextDep) -> Response:
    """Acknowledge the escalations ticked on the page; each goes through the same command
    (and the same audience rule) as the API, a few at a time."""
    ids = [v for v in (await request.form()).getlist("id") if isinstance(v, str)][:500]
    if not ids:
        return _back("/escalations", err="確認済みにするエスカレーションを選んでください")
    gate = asyncio.Semaphore(8)
    refused: list[str] = []

    async def one(escalation_id: str) -> None:
        async with gate:
            try:
                await commands.acknowledge_escalation(ctx, caller, escalation_id)
            except (HTTPProblem, WorkflowUpdateFailedError, RPCError):
                refused.append(escalation_id)

    await asyncio.gather(*(one(i) for i in ids))
    done = len(ids) - len(refused)
    if refused:
        return _back(
            "/escalations",
            msg=f"{done}件を確認済みにしました" if done else None,
            err=f"{len(refused)}件は確認済みにできませんでした（宛先でないか、すでに解消済みです）",
        )
    return _back("/escalations", msg=f"{done}件を確認済みにしました")


@router.get("/calendar", response_class=HTMLResponse)
def calendar_page(
    request: Request,
    caller: PageCaller,
    session: SessionDep,
    kind: Code = None,
    target: Code = None,
) -> Response:
    """The caller's calendar feeds, and a form to make one (pre-filled from a project)."""
    return _render(
        request,
        "calendar.html",
        caller,
        feeds=calendar.feeds(session, caller),
        kind=kind,
        target=target,
        created=None,
    )


@router.post("/calendar", response_class=HTMLResponse)
async def calendar_create(request: Request, caller: PageCaller, session: SessionDep) -> Response:
    """Make a feed and show its address, once, on this page (never in a redirect, which
    would put the secret in the browser's history)."""
    form = await request.form()
    try:
        body = CalendarFeedCreate.model_validate(
            {"kind": form.get("kind"), "target": str(form.get("target") or "").strip()}
        )
        settings: Settings = request.app.state.settings
        created = calendar.create_feed(session, caller, body, settings.public_url)
    except HTTPProblem as p:
        return _back("/calendar", err=_problem_ja(p))
    except ValidationError:
        return _back("/calendar", err="登録する対象を選んでください")
    return _render(
        request,
        "calendar.html",
        caller,
        feeds=calendar.feeds(session, caller),
        kind=None,
        target=None,
        created=created,
    )


@router.post("/calendar/{feed_id}/revoke")
def calendar_revoke(
    request: Request, caller: PageCaller, session: SessionDep, feed_id: RowId
) -> Response:
    try:
        calendar.revoke_feed(session, caller, feed_id)
    except HTTPProblem as p:
        return _back("/calendar", err=_problem_ja(p))
    return _back("/calendar", msg="カレンダー連携を停止しました")
