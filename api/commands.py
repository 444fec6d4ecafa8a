"""Every write, once, for every front end (REST, pages, command line).

Each command reads what it must check from the read model in a short session on a worker
thread, closes it, and only then calls Temporal, with a deadline: no connection, lock or
pooled resource is held while a workflow works. The workflow's answer is final; a repeat of
the same request (same ``Idempotency-Key``) is answered by Temporal from the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import metrics
from api.auth import Caller, TokenScopeError, create_token
from api.errors import (
    HTTPProblem,
    field_error,
    from_refusal,
    from_rpc_error,
    from_update_error,
    unavailable,
)
from api.schemas import (
    DecisionIn,
    EscalationPublic,
    ExtendedTrackIn,
    MilestoneAnswer,
    MilestoneIn,
    ProjectCreate,
    ProjectPublic,
    ReplanIn,
    TaskChangeIn,
    TaskPublic,
    TemplateIn,
    TemplateMoveIn,
    TemplatePublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    VendorAssignIn,
    VendorCreate,
    VendorPublic,
    escalation_public,
    task_from_view,
)
from readmodel import tables as t
from readmodel.db import ReadModel
from readmodel.registry import lg_code_problem, registry
from runtime.settings import Settings
from workflows import core
from workflows.businesses import BY_SLUG, PREFECTURE_BUSINESSES
from workflows.calendar import jst_today
from workflows.migration import (
    RULES,
    MigrationInput,
    MigrationWorkflow,
    OpenProject,
    start_attributes,
)
from workflows.model import DEFAULT_DEADLINE, EXTENDED_TRACK_LIMIT, pick, workflow_id_for
from workflows.procedure import (
    BUILTIN_TEMPLATES,
    DEFAULT_TEMPLATE,
    PROGRAMME,
    STANDARDISATION_ITEM,
    TEMPLATE_TITLES,
    ProcedureTemplate,
    TemplateError,
    template_from_dict,
)
from workflows.roles import Action, acknowledges
from workflows.vocabulary import EscalationStatus, GateOutcome, Owner, Role

R = TypeVar("R")


class _Turns:
    """Per-workflow admission: at most ``limit`` calls in flight to one workflow from this
    process, the rest queued here in arrival order. Temporal caps in-flight updates per
    workflow and answers the excess with ResourceExhausted, which its client retries with
    a backoff of seconds; waiting here costs nothing and keeps the order."""

    def __init__(self) -> None:
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, workflow_id: str, limit: int) -> AsyncIterator[None]:
        sem, users = self._gates.get(workflow_id, (asyncio.Semaphore(limit), 0))
        self._gates[workflow_id] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self._gates[workflow_id]
            if users == 1:
                del self._gates[workflow_id]
            else:
                self._gates[workflow_id] = (sem, users - 1)


_TURNS = _Turns()


@dataclass
class Context:
    """What a command needs besides its caller and input: one per request."""

    db: ReadModel
    client: Client
    settings: Settings
    request_id: str = ""
    idempotency_key: str | None = None

    def update_id(self, kind: str) -> str | None:
        """The client's key makes the update id, so Temporal answers a repeat with the first
        result; without one, each request is its own update."""
        return f"{kind}-{self.idempotency_key}" if self.idempotency_key else None

    async def temporal(self, call: Awaitable[R], workflow_id: str | None = None) -> R:
        """Await a Temporal call within the deadline (waiting for the workflow's turn
        included); past it, or when Temporal cannot be reached, 503 with Retry-After
        (retrying with the same key is safe)."""

        async def in_turn() -> R:
            if workflow_id is None:
                return await call
            try:
                async with _TURNS.turn(workflow_id, self.settings.updates_per_workflow):
                    return await call
            finally:
                if inspect.iscoroutine(call):
                    call.close()  # never started: out of time while waiting for a turn

        try:
            with metrics.UPDATES_IN_FLIGHT.track_inprogress():
                # A timeout scope, not wait_for: no task of its own for each write.
                async with asyncio.timeout(self.settings.temporal_call_timeout):
                    return await in_turn()
        except TimeoutError as exc:
            raise unavailable(
                "the workflow service did not answer in time; retry with the same Idempotency-Key",
                self.settings.retry_after_seconds,
            ) from exc
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            raise unavailable(
                "the workflow service did not answer in time", self.settings.retry_after_seconds
            ) from exc
        except WorkflowUpdateFailedError as exc:
            raise from_update_error(exc) from exc
        except RPCError as exc:
            raise from_rpc_error(exc, self.settings.retry_after_seconds) from exc
        except RuntimeError as exc:
            # How the SDK says it could not connect (the API's client connects lazily, so
            # the API runs while Temporal is down): unavailable, like any transport failure.
            raise unavailable(
                "the workflow service cannot be reached; retrying with the same "
                "Idempotency-Key is safe",
                self.settings.retry_after_seconds,
            ) from exc


def require(caller: Caller, action: str) -> None:
    if not caller.may(action):
        raise HTTPProblem(403, f"a {caller.role} token may not do this")


def check_go_live(value: date, field: str) -> None:
    if value <= jst_today(datetime.now(UTC)):
        raise field_error(["body", field], f"{field} must be in the future")
    if value > EXTENDED_TRACK_LIMIT:
        raise field_error(["body", field], f"{field} must be on or before {EXTENDED_TRACK_LIMIT}")


def visible_project(session: Session, caller: Caller, project_id: str) -> t.Project:
    row = session.get(t.Project, project_id)
    if row is None or not caller.sees(row):
        raise HTTPProblem(404, f"no project {project_id!r}")
    return row


def tasks_of(session: Session, project_id: str) -> Sequence[Row[Any]]:
    """A project's task rows in template order, as plain rows: answers only read them, and
    building ORM objects for them took twice as long (8 % against 4 % of the API's time
    holding the GIL in a creation, by py-spy)."""
    return session.execute(_TASKS_OF, {"project_id": project_id}).all()


def project_answer(session: Session, project_id: str) -> ProjectPublic:
    row = session.get(t.Project, project_id)
    if row is None:  # the workflow answered only after projecting: this cannot be
        raise HTTPProblem(500, f"project {project_id} is missing from the read model")
    return ProjectPublic.with_tasks(row, tasks_of(session, project_id))


def _task_row(session: Session, project_id: str, key: str) -> t.Task:
    row = session.get(t.Task, (project_id, key))
    if row is None:
        raise HTTPProblem(404, f"no task {key!r} in project {project_id}")
    return row


# ---- creation ------------------------------------------------------------------------


def _creation_input(
    session: Session, caller: Caller, body: ProjectCreate, settings: Settings
) -> tuple[MigrationInput, TypedSearchAttributes]:
    require(caller, Action.CREATE_PROJECT)
    return creation_input(session, caller, body, settings)


def creation_input(
    session: Session, caller: Caller, body: ProjectCreate, settings: Settings
) -> tuple[MigrationInput, TypedSearchAttributes]:
    """The rules of a new project, for a caller whose right to create was checked already
    (a prefecture imports projects for its own bodies, API.md); its scope is checked here.
    With the input, the search attributes its start sets: the rules are checked by working
    its first turn out (``start_attributes``), which gives them."""
    problem = lg_code_problem(body.lg_code)
    if problem:
        raise field_error(["body", "lg_code"], f"lg_code {problem}")
    body_info = registry().get(body.lg_code)
    if body_info is None:
        raise field_error(["body", "lg_code"], f"lg_code {body.lg_code} is not a local body")
    if not caller.sees(
        SimpleNamespace(
            lg_code=body.lg_code, prefecture=body_info.prefecture_code, vendor_id=body.vendor_id
        )
    ):
        raise HTTPProblem(403, f"a {caller.role} creates projects only for its own local body")
    template = load_template(session, body.template or DEFAULT_TEMPLATE.id)
    if template is None:
        raise field_error(["body", "template"], f"unknown template {body.template!r}")
    if template.kind == PROGRAMME:
        # One a body: its id is the template's, its name the programme's, and its dates
        # are the body's own (no legal deadline: the target is its deadline).
        if body.business is not None:
            raise field_error(
                ["body", "business"], f"{template.id} is a programme of the body: no business"
            )
        slug, title, deadline = template.name, template_title(session, template), None
    else:
        business = BY_SLUG.get(body.business or "")
        if business is None:
            raise field_error(["body", "business"], f"unknown business {body.business!r}")
        if body_info.is_prefecture and business.slug not in PREFECTURE_BUSINESSES:
            raise field_error(
                ["body", "business"], f"a prefecture does not run {business.slug} itself"
            )
        slug, title, deadline = business.slug, business.name, DEFAULT_DEADLINE
    if body.vendor_id is not None:
        known_vendor(session, body.vendor_id)
    inp = MigrationInput(
        lg_code=body.lg_code,
        business=slug,
        body_name=body_info.full_name,
        prefecture=body_info.prefecture_code,
        business_name=title,
        target_go_live=body.target_go_live,
        template=template,
        vendor_id=body.vendor_id,
        switching_vendor=body.switching_vendor,
        deadline=deadline or body.target_go_live,
        ladder=settings.ladder,
        created_by=caller.actor,
        progress={k: core.TaskProgress(p.status, p.on) for k, p in body.progress.items()},
        digest_window_seconds=settings.notification_digest_seconds,
        rules=RULES,
    )
    now = datetime.now(UTC)
    # A system already live registers with the day it went live (its cutover's date).
    inp.progress = core.Migration.live_progress(inp, now)
    try:  # the rules of a project under way, before anything starts
        core.Migration.check_opening(inp, now)
        attributes = start_attributes(inp, now)
    except core.Refusal as r:
        raise from_refusal(r) from r
    return inp, attributes


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


async def create_project(ctx: Context, caller: Caller, body: ProjectCreate) -> ProjectPublic:
    """Start the project's workflow and its first update in one round trip (Update-with-
    Start); answers once the creation is durable and in the read model."""
    inp, attributes = await ctx.db.run(_creation_input, caller, body, ctx.settings)
    # A repeat of this request (same key and body) is the same creation, not a conflict.
    key = ctx.idempotency_key or uuid.uuid4().hex
    inp.creation_key = _fingerprint([key, body.model_dump(mode="json")])
    project_id = await open_project(ctx, inp, attributes)
    return await ctx.db.run(project_answer, project_id)


async def open_project(ctx: Context, inp: MigrationInput, attributes: TypedSearchAttributes) -> str:
    """Start a validated creation (its ``creation_key`` set) and return the project's id once
    it is durable and in the read model; 409 if the project exists (or ran and closed).
    ``attributes`` are set with the start, so the first turn need not upsert them (one
    event less): ``creation_input`` worked them out with its checks."""
    start = WithStartWorkflowOperation(
        MigrationWorkflow.run,
        inp,
        id=workflow_id_for(inp.lg_code, inp.business),
        task_queue=ctx.settings.task_queue,
        search_attributes=attributes,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    project_id = f"{inp.lg_code}-{inp.business}"
    try:
        await ctx.temporal(
            ctx.client.execute_update_with_start_workflow(
                MigrationWorkflow.open_project,
                OpenProject(inp.creation_key, ctx.request_id),
                start_workflow_operation=start,
                id=f"create-{inp.creation_key[:32]}",
            )
        )
    except WorkflowAlreadyStartedError as exc:  # it ran and has closed
        raise HTTPProblem(409, f"project {project_id} already exists") from exc
    finally:
        _take_start_outcome(start)
    return project_id


def _take_start_outcome(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """Mark a failed start's error as seen. The SDK leaves the outcome of the start on the
    operation (its workflow handle, or the error of a call that failed or was cut off by our
    deadline); nobody asks for it here, and asyncio would log each error as "Future exception
    was never retrieved", a traceback for every creation that answered 503."""
    outcome = getattr(start, "_workflow_handle", None)
    if isinstance(outcome, asyncio.Future) and outcome.done() and not outcome.cancelled():
        outcome.exception()


# ---- changes to one project ----------------------------------------------------------


def _task_target(session: Session, caller: Caller, project_id: str, key: str) -> str:
    project = visible_project(session, caller, project_id)
    require(caller, Action.CHANGE_TASK)
    task = _task_row(session, project_id, key)
    if project.kind == PROGRAMME and key == STANDARDISATION_ITEM:
        raise HTTPProblem(
            409,
            f"{key} follows the body's migration projects: it is done once they are all live",
            japanese="②情報システムの標準化は、この団体の移行プロジェクトがすべて稼働すると自動で完了します",
        )
    if task.gate:
        raise HTTPProblem(409, f"{key} is a gate: an approver decides it")
    if not caller.acts_for(task.owner):
        raise HTTPProblem(403, f"{key} is a {task.owner} task")
    return project.workflow_id


async def change_task(
    ctx: Context, caller: Caller, project_id: str, key: str, body: TaskChangeIn
) -> TaskPublic:
    wid = await ctx.db.run(_task_target, caller, project_id, key)
    change = core.TaskChange(
        key,
        body.status,
        caller.actor,
        caller.role,
        body.note,
        request_id=ctx.request_id,
        vendor_id=_writing_vendor(caller),
    )
    view = await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(
            MigrationWorkflow.change_task, change, id=ctx.update_id(f"task-{key}")
        ),
        wid,
    )
    return task_from_view(view)


def _writing_vendor(caller: Caller) -> str | None:
    """The vendor a vendor's write comes from, for the workflow to check again: the API's
    check reads the read model, and the project may get another vendor meanwhile."""
    return caller.vendor_id if caller.role == Role.VENDOR else None


_PROJECTS = t.Project.__table__  # type: ignore[attr-defined]
_TASKS = t.Task.__table__  # type: ignore[attr-defined]
_TASKS_OF = (
    sa_select(*_TASKS.c)
    .where(_TASKS.c.project_id == bindparam("project_id"))
    .order_by(_TASKS.c.position)
)
# The hottest write's checks in one indexed query: the project's scope and the task's owner.
_MILESTONE_TARGET = (
    sa_select(
        _PROJECTS.c.workflow_id,
        _PROJECTS.c.lg_code,
        _PROJECTS.c.prefecture,
        _PROJECTS.c.vendor_id,
        _TASKS.c.owner,
    )
    .select_from(
        _PROJECTS.outerjoin(
            _TASKS,
            (_TASKS.c.project_id == _PROJECTS.c.id) & (_TASKS.c.key == bindparam("task_key")),
        )
    )
    .where(_PROJECTS.c.id == bindparam("project_id"))
)


def _milestone_target(session: Session, caller: Caller, project_id: str, task_key: str) -> str:
    row = session.execute(
        _MILESTONE_TARGET, {"project_id": project_id, "task_key": task_key}
    ).first()
    if row is None or not caller.sees(row):
        raise HTTPProblem(404, f"no project {project_id!r}")
    require(caller, Action.MILESTONE)
    if row.owner is None:
        raise HTTPProblem(404, f"no task {task_key!r} in project {project_id}")
    if row.owner != Owner.VENDOR:
        raise HTTPProblem(403, f"{task_key} is a {row.owner} task, not the vendor's")
    return str(row.workflow_id)


def _milestone_seen(
    session: Session, caller: Caller, project_id: str, body: MilestoneIn, key: str
) -> tuple[str, str]:
    """The project's workflow, and the id of a milestone already recorded under ``key`` (the
    workflow keeps only its newest answers across the years; the read model keeps all)."""
    wid = _milestone_target(session, caller, project_id, body.task_key)
    row = session.get(t.Milestone, (project_id, key))
    if row is None:
        return wid, ""
    same = (row.task_key, row.status, row.percent, row.note) == (
        body.task_key,
        body.status,
        body.percent,
        body.note,
    )
    if not same:
        raise HTTPProblem(409, "this Idempotency-Key was already used for a different milestone")
    return wid, row.milestone_id


def milestone_target(
    session: Session, caller: Caller, project_id: str, body: MilestoneIn, key: str
) -> tuple[str, str]:
    """The single route's checks of a milestone (scope, the task's owner, a key used for
    another milestone): its project's workflow, and the milestone id the read model holds
    for ``key``, if any. Raises HTTPProblem as the route answers."""
    return _milestone_seen(session, caller, project_id, body, key)


def milestone_report(
    ctx: Context, caller: Caller, body: MilestoneIn, key: str, recorded: str
) -> core.MilestoneReport:
    """The report the workflow gets for a milestone the API let through."""
    return pick(
        core.MilestoneReport,
        body,
        idempotency_key=key,
        actor=caller.actor,
        request_id=ctx.request_id,
        fingerprint=_fingerprint(body.model_dump(mode="json")),
        attempt_id=uuid.uuid4().hex,
        recorded_id=recorded,
        vendor_id=_writing_vendor(caller),
    )


def milestone_answer(report: core.MilestoneReport, result: Any) -> MilestoneAnswer:
    """What the vendor is told: the first answer to the key, a duplicate when it was not
    this attempt; 409 when the key was first used for another milestone."""
    duplicate = result.attempt_id != report.attempt_id
    if duplicate and result.fingerprint != report.fingerprint:
        raise HTTPProblem(409, "this Idempotency-Key was already used for a different milestone")
    return MilestoneAnswer(
        milestone_id=result.milestone_id, duplicate=duplicate, task=task_from_view(result.task)
    )


async def report_milestone(
    ctx: Context, caller: Caller, project_id: str, body: MilestoneIn
) -> MilestoneAnswer:
    key = ctx.idempotency_key
    if key is None or not key.strip():
        raise HTTPProblem(400, "the Idempotency-Key header is required")
    wid, recorded = await ctx.db.run(_milestone_seen, caller, project_id, body, key)
    report = milestone_report(ctx, caller, body, key, recorded)
    # The key is the update id: Temporal answers a repeat with the first result, and the
    # workflow keeps every key's answer across continue-as-new.
    result = await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(
            MigrationWorkflow.report_milestone, report, id=f"milestone-{key}"
        ),
        wid,
    )
    return milestone_answer(report, result)


def _gate_target(
    session: Session, caller: Caller, project_id: str, key: str, vendor_id: str | None
) -> str:
    project = visible_project(session, caller, project_id)
    if not caller.may(Action.DECIDE_GATE):
        raise HTTPProblem(
            403, "only an approver decides a gate: those who do the work never sign it off"
        )
    task = session.get(t.Task, (project_id, key))
    if task is None or not task.gate:
        raise HTTPProblem(404, f"no gate {key!r} in project {project_id}")
    if vendor_id is not None:
        known_vendor(session, vendor_id)
    return project.workflow_id


def known_vendor(session: Session, vendor_id: str) -> None:
    if session.get(t.Vendor, vendor_id) is None:
        raise field_error(["body", "vendor_id"], f"unknown vendor {vendor_id!r}")


async def decide_gate(
    ctx: Context, caller: Caller, project_id: str, key: str, body: DecisionIn
) -> TaskPublic:
    wid = await ctx.db.run(_gate_target, caller, project_id, key, body.vendor_id)
    if body.outcome == GateOutcome.REJECT and not (body.comment or "").strip():
        raise field_error(["body", "comment"], "a rejection needs a comment")
    decision = core.GateDecisionInput(
        key, body.outcome, caller.actor, body.comment, ctx.request_id, body.vendor_id
    )
    view = await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(
            MigrationWorkflow.decide_gate, decision, id=ctx.update_id(f"gate-{key}")
        ),
        wid,
    )
    return task_from_view(view)


def _project_target(session: Session, caller: Caller, project_id: str, action: Action) -> str:
    project = visible_project(session, caller, project_id)
    require(caller, action)
    return project.workflow_id


async def _change_project(
    ctx: Context,
    caller: Caller,
    project_id: str,
    action: Action,
    update: Any,
    arg: Any,
    check: Callable[[Session], None] = lambda _: None,
) -> ProjectPublic:
    """One change to the project as a whole: who may, then ``check``, then the workflow's
    update (its id from the Idempotency-Key), then the project as it now stands."""

    def target(session: Session) -> str:
        wid = _project_target(session, caller, project_id, action)
        check(session)
        return wid

    wid = await ctx.db.run(target)
    if callable(arg):  # made from what ``check`` found
        arg = arg()
    call = ctx.client.get_workflow_handle(wid).execute_update(
        update, arg, id=ctx.update_id(str(action))
    )
    await ctx.temporal(call, wid)
    return await ctx.db.run(project_answer, project_id)


async def replan(ctx: Context, caller: Caller, project_id: str, body: ReplanIn) -> ProjectPublic:
    plan = core.ReplanInput(body.target_go_live, body.reason, caller.actor, ctx.request_id)
    return await _change_project(
        ctx,
        caller,
        project_id,
        Action.REPLAN,
        MigrationWorkflow.replan,
        plan,
        lambda _: check_go_live(body.target_go_live, "target_go_live"),
    )


async def assign_vendor(
    ctx: Context, caller: Caller, project_id: str, body: VendorAssignIn
) -> ProjectPublic:
    """The project's vendor from now on; the previous one loses access at once."""
    assignment = core.VendorAssignment(body.vendor_id, body.reason, caller.actor, ctx.request_id)
    return await _change_project(
        ctx,
        caller,
        project_id,
        Action.ASSIGN_VENDOR,
        MigrationWorkflow.assign_vendor,
        assignment,
        lambda session: known_vendor(session, body.vendor_id),
    )


async def declare_extended_track(
    ctx: Context, caller: Caller, project_id: str, body: ExtendedTrackIn
) -> ProjectPublic:
    track = core.ExtendedTrackInput(
        body.ground, body.planned_go_live, body.reason, caller.actor, ctx.request_id
    )
    return await _change_project(
        ctx,
        caller,
        project_id,
        Action.EXTENDED_TRACK,
        MigrationWorkflow.declare_extended_track,
        track,
        lambda _: check_go_live(body.planned_go_live, "planned_go_live"),
    )


# ---- escalations ---------------------------------------------------------------------


def _escalation_target(session: Session, caller: Caller, escalation_id: str) -> str:
    row = session.get(t.Escalation, escalation_id)
    if row is None or not caller.sees(row):
        raise HTTPProblem(404, f"no escalation {escalation_id!r}")
    if not caller.may(Action.ACK):
        raise HTTPProblem(403, f"a {caller.role} token may not acknowledge escalations")
    if not acknowledges(caller.role, list(row.audience or []), row.level):
        raise HTTPProblem(
            403, f"this escalation is for {', '.join(row.audience or [])}, not {caller.role}"
        )
    # A closed one may be long gone from its workflow (let go once resolved): said here.
    if row.status != EscalationStatus.OPEN:
        raise HTTPProblem(409, f"escalation {escalation_id} is already {row.status}")
    return f"migration-{row.project_id}"


def _escalation_answer(session: Session, escalation_id: str) -> EscalationPublic:
    row = session.get(t.Escalation, escalation_id)
    if row is None:
        raise HTTPProblem(404, f"no escalation {escalation_id!r}")
    return escalation_public(row)


async def acknowledge_escalation(
    ctx: Context, caller: Caller, escalation_id: str
) -> EscalationPublic:
    wid = await ctx.db.run(_escalation_target, caller, escalation_id)
    await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(
            MigrationWorkflow.acknowledge_escalation,
            core.AcknowledgeInput(escalation_id, caller.actor, request_id=ctx.request_id),
            id=ctx.update_id(f"ack-{escalation_id}"),
        ),
        wid,
    )
    return await ctx.db.run(_escalation_answer, escalation_id)


# ---- procedure templates ------------------------------------------------------------------


def load_template(session: Session, ref: str) -> ProcedureTemplate | None:
    """The built-in or stored template ``ID@VERSION``, validated; None if there is none."""
    if ref in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[ref]
    name, _, version = ref.partition("@")
    row = session.get(t.StoredTemplate, (name, version)) if version else None
    if row is None:
        return None
    return template_from_dict(
        {"name": row.id, "version": row.version, "tasks": row.tasks, "kind": row.kind}
    )


def template_title(session: Session, template: ProcedureTemplate) -> str:
    """What people read as a programme's name: the built-in one's, or the name stored with
    the template."""
    if template.name in TEMPLATE_TITLES:
        return TEMPLATE_TITLES[template.name]
    row = session.get(t.StoredTemplate, (template.name, template.version))
    return row.name if row is not None else template.name


def templates(session: Session) -> list[TemplatePublic]:
    """Every template a project may be created on: the built-in ones, then those stored."""
    answer = [
        TemplatePublic(
            id=x.name,
            version=x.version,
            name=TEMPLATE_TITLES.get(x.name, x.name),
            tasks=[asdict(spec) for spec in x.tasks],
            builtin=True,
            kind=x.kind,
        )
        for x in BUILTIN_TEMPLATES.values()
    ]
    rows = session.exec(select(t.StoredTemplate).order_by(col(t.StoredTemplate.id))).all()
    answer += [TemplatePublic.model_validate(r, from_attributes=True) for r in rows]
    return answer


def store_template(session: Session, caller: Caller, body: TemplateIn) -> TemplatePublic:
    """A new template version, validated as the built-in one is (known stages and owners,
    gates only for the approver, no unknown dependency, no cycle)."""
    require(caller, Action.TEMPLATES)
    try:
        template_from_dict(
            {"name": body.id, "version": body.version, "tasks": body.tasks, "kind": body.kind}
        )
    except TemplateError as exc:
        raise field_error(["body", "tasks"], str(exc)) from exc
    ref = f"{body.id}@{body.version}"
    stored = session.get(t.StoredTemplate, (body.id, body.version))
    if ref in BUILTIN_TEMPLATES or stored is not None:
        raise HTTPProblem(409, f"template {ref} already exists")
    row = t.StoredTemplate(
        id=body.id,
        version=body.version,
        name=body.name,
        tasks=body.tasks,
        kind=body.kind,
        created_by=caller.actor,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return TemplatePublic.model_validate(row, from_attributes=True)


async def upgrade_template(
    ctx: Context, caller: Caller, project_id: str, body: TemplateMoveIn
) -> ProjectPublic:
    """Move a running project to another version of its template; tasks kept by key keep
    their state, new ones start, and one that drops a task done or under way is 409."""
    found: list[ProcedureTemplate] = []

    def check(session: Session) -> None:
        template = load_template(session, body.template)
        if template is None:
            raise field_error(["body", "template"], f"unknown template {body.template!r}")
        found.append(template)

    def arg() -> core.TemplateUpgrade:
        return core.TemplateUpgrade(found[0], body.reason, caller.actor, ctx.request_id)

    return await _change_project(
        ctx,
        caller,
        project_id,
        Action.UPGRADE_TEMPLATE,
        MigrationWorkflow.upgrade_template,
        arg,
        check,
    )


# ---- administration (the API and the command line) ------------------------------------

# Who the operator at the command line is: an admin, by the machine's own authority.
OPERATOR = Caller(token_id=0, name="operator", role="admin")


def register_vendor(session: Session, caller: Caller, body: VendorCreate) -> VendorPublic:
    require(caller, Action.VENDORS)
    if session.get(t.Vendor, body.id) is not None:
        raise HTTPProblem(409, f"vendor {body.id!r} already exists")
    session.add(t.Vendor(id=body.id, name=body.name, created_at=datetime.now(UTC)))
    session.commit()
    return VendorPublic.of(body)


def issue_token(session: Session, caller: Caller, body: TokenCreate) -> TokenCreated:
    """A new token; its secret is in the answer, and nowhere else ever again."""
    require(caller, Action.TOKENS)
    try:
        row, secret = create_token(session, **body.model_dump())
    except TokenScopeError as exc:
        raise field_error(["body", exc.field], str(exc)) from exc
    return TokenCreated.of(row, token=secret)


def revoke_token(session: Session, caller: Caller, token_id: int) -> TokenPublic:
    """From now on the token answers 401 everywhere, including an open page session."""
    require(caller, Action.TOKENS)
    row = session.get(t.ApiToken, token_id)
    if row is None:
        raise HTTPProblem(404, f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        session.commit()
        session.refresh(row)
    return TokenPublic.of(row)
