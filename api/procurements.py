"""Joint procurements (共同調達) for every front end: the reads and the writes, checked
against the read model in a short session, then sent to JointProcurementWorkflow (which
tells its member projects), as api/commands.py does for projects."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session, col, func, or_, select
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api import queries
from api.auth import Caller
from api.commands import Context, known_vendor, require
from api.errors import HTTPProblem, field_error
from api.schemas import (
    DecisionIn,
    MemberIn,
    Page,
    ProcurementCreate,
    ProcurementMemberPublic,
    ProcurementPublic,
    ProcurementTaskPublic,
    TaskChangeIn,
)
from readmodel import tables as t
from readmodel.registry import registry
from workflows.businesses import BY_SLUG
from workflows.procurement import (
    JOINT_STEPS,
    JointProcurementWorkflow,
    Membership,
    ProcurementDecision,
    ProcurementInput,
    ProcurementState,
    ProcurementTaskChange,
)
from workflows.roles import Action, Role
from workflows.vocabulary import Owner, ProcurementStatus, TaskStatus


def workflow_id(procurement_id: str) -> str:
    return f"procurement-{procurement_id}"


def id_in_use(procurement_id: str) -> HTTPProblem:
    """A creation whose id is taken, in the same words whoever holds it, whether the caller
    sees that procurement or not: ids are one namespace across the country (each is a
    workflow id, and readers who see everything look procurements up by it), so the answer
    says the id is in use and nothing about what uses it."""
    return HTTPProblem(
        409, f"the procurement id {procurement_id!r} is already in use; choose another"
    )


# ---- reads ---------------------------------------------------------------------------------


def _visible_ids(session: Session, caller: Caller) -> Any:
    """Procurements the caller sees: those whose lead body or one of whose members it sees."""
    query = select(t.Procurement.id)
    if caller.sees_all:
        return query
    joined: Any = select(t.ProcurementMember.procurement_id).join(
        t.Project,
        t.Project.id == t.ProcurementMember.project_id,  # type: ignore[arg-type]
    )
    conditions: list[Any] = [col(t.Procurement.id).in_(caller.scope(joined))]
    if caller.lg_code:
        conditions.append(col(t.Procurement.lead_lg_code) == caller.lg_code)
    if caller.prefecture:
        conditions.append(col(t.Procurement.prefecture) == caller.prefecture)
    return query.where(or_(*conditions))


def _answer(row: t.Procurement, members: list[t.ProcurementMember]) -> ProcurementPublic:
    return ProcurementPublic.of(
        row,
        tasks=[ProcurementTaskPublic(**x) for x in row.tasks or []],
        members=[
            ProcurementMemberPublic(project_id=m.project_id, status=m.status) for m in members
        ],
    )


def _members(session: Session, ids: list[str]) -> dict[str, list[t.ProcurementMember]]:
    """The members of every procurement in ``ids``, in one query."""
    found: dict[str, list[t.ProcurementMember]] = {i: [] for i in ids}
    if ids:
        rows = session.exec(
            select(t.ProcurementMember)
            .where(col(t.ProcurementMember.procurement_id).in_(ids))
            .order_by(col(t.ProcurementMember.procurement_id), col(t.ProcurementMember.project_id))
        ).all()
        for m in rows:
            found[m.procurement_id].append(m)
    return found


def answer(session: Session, row: t.Procurement) -> ProcurementPublic:
    return _answer(row, _members(session, [row.id])[row.id])


def procurement(session: Session, caller: Caller, procurement_id: str) -> ProcurementPublic:
    row = session.get(t.Procurement, procurement_id)
    visible = session.exec(_visible_ids(session, caller).where(t.Procurement.id == procurement_id))
    if row is None or visible.first() is None:
        raise HTTPProblem(404, f"no procurement {procurement_id!r}")
    return answer(session, row)


def procurements(
    session: Session, caller: Caller, limit: int = 50, offset: int = 0
) -> Page[ProcurementPublic]:
    """A page of the procurements the caller sees, by id, with their members read for the
    whole page at once."""
    query = select(t.Procurement).where(col(t.Procurement.id).in_(_visible_ids(session, caller)))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(t.Procurement.id)).offset(offset).limit(limit)).all()
    members = _members(session, [r.id for r in rows])
    return Page[ProcurementPublic](items=[_answer(r, members[r.id]) for r in rows], total=total)


# ---- writes --------------------------------------------------------------------------------


def _member_problems(
    session: Session, caller: Caller, body: ProcurementCreate, prefecture: str
) -> dict[str, date]:
    """Each member must be a visible project of the same business, of the lead's prefecture
    (unless an admin sets up a council across prefectures), not in another open procurement
    and not past its vendor selection; returns the joint steps' earliest due dates."""
    due: dict[str, date] = {}
    for i, project_id in enumerate(body.members):
        where: list[str | int] = ["body", "members", i]
        project = session.get(t.Project, project_id)
        if project is None or not caller.sees(project):
            raise field_error(where, f"no project {project_id!r}")
        if project.business != body.business:
            raise field_error(where, f"{project_id} is not a {body.business} project")
        if project.prefecture != prefecture and caller.role != Role.ADMIN:
            raise field_error(where, f"{project_id} is outside the lead's prefecture")
        other = queries.procurement_of(session, project_id)
        # In this very procurement: a creation cut short, sent again (see create).
        if other is not None and other.status == ProcurementStatus.OPEN and other.id != body.id:
            raise field_error(where, f"{project_id} is already in joint procurement {other.id}")
        tasks = {
            x.key: x
            for x in session.exec(select(t.Task).where(t.Task.project_id == project_id)).all()
        }
        if tasks.get("vendor_selection") and tasks["vendor_selection"].status == TaskStatus.DONE:
            raise field_error(where, f"{project_id} has already selected its vendor")
        for key in JOINT_STEPS:
            task = tasks.get(key)
            if task is not None and task.due_date is not None:
                due[key] = min(due.get(key, task.due_date), task.due_date)
    if len(set(body.members)) != len(body.members):
        raise field_error(["body", "members"], "a project is listed twice")
    return due


def _check_create(session: Session, caller: Caller, body: ProcurementCreate) -> ProcurementInput:
    require(caller, Action.PROCURE)
    lead = registry().get(body.lead_lg_code)
    if lead is None:
        raise field_error(["body", "lead_lg_code"], f"unknown local body {body.lead_lg_code!r}")
    if body.business not in BY_SLUG:
        raise field_error(["body", "business"], f"unknown business {body.business!r}")
    if (caller.lg_code and caller.lg_code != lead.lg_code) or (
        caller.prefecture and caller.prefecture != lead.prefecture_code
    ):
        raise HTTPProblem(403, "a procurement is set up by its lead body, its prefecture or admin")
    due = _member_problems(session, caller, body, lead.prefecture_code)
    # Last, once the creation would otherwise succeed: whether an id is in use is not
    # something to probe with a request that could not succeed anyway.
    existing = session.get(t.Procurement, body.id)
    if existing is not None and not _same_creation(existing, body, caller):
        raise id_in_use(body.id)
    return ProcurementInput(
        id=body.id,
        name=body.name,
        lead_lg_code=lead.lg_code,
        lead_name=lead.full_name,
        prefecture=lead.prefecture_code,
        business=body.business,
        business_name=BY_SLUG[body.business].name,
        created_by=caller.actor,
        due=due,
    )


def _same_creation(
    held: t.Procurement | ProcurementState, body: ProcurementCreate, caller: Caller
) -> bool:
    """Whether a procurement under this id is this very creation, cut short (a member that
    could not join, a timeout, a crash) and sent again: same name, lead and business, set
    up by the same caller, and still open. Then the request carries on where it stopped."""
    same = (
        held.name == body.name
        and held.lead_lg_code == body.lead_lg_code
        and held.business == body.business
        and held.status == ProcurementStatus.OPEN
    )
    # The read model's row names no creator; the workflow's state, asked next, does.
    return same and (isinstance(held, t.Procurement) or held.created_by == caller.actor)


async def create(ctx: Context, caller: Caller, body: ProcurementCreate) -> ProcurementPublic:
    """Start the procurement, then bring in each member (each answers once it holds).

    Sent again after it was cut short part-way, the same creation carries on: the
    procurement is not started twice, and only the members not yet in it join."""
    inp = await ctx.db.run(_check_create, caller, body)
    wid = workflow_id(body.id)
    joined: set[str] = set()
    try:
        handle = await ctx.temporal(
            ctx.client.start_workflow(
                JointProcurementWorkflow.run,
                inp,
                id=wid,
                task_queue=ctx.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        )
    except WorkflowAlreadyStartedError as exc:
        handle = ctx.client.get_workflow_handle(wid)
        held = await ctx.temporal(handle.query(JointProcurementWorkflow.state), wid)
        if not _same_creation(held, body, caller):
            raise id_in_use(body.id) from exc
        joined = set(held.members)
    for project_id in body.members:
        member = Membership(f"migration-{project_id}", caller.actor, ctx.request_id)
        if member.workflow_id in joined:
            continue
        await ctx.temporal(handle.execute_update(JointProcurementWorkflow.join, member), wid)
    return await ctx.db.run(procurement, caller, body.id)


def _lead_target(session: Session, caller: Caller, procurement_id: str, who: str) -> str:
    """The procurement's workflow, if the caller may act on it as ``who``: the lead body's
    pm for steps and members, its approver for the gate (admin for steps and members too)."""
    found = procurement(session, caller, procurement_id)
    if who == "gate":
        require(caller, Action.DECIDE_GATE)
        allowed = caller.lg_code == found.lead_lg_code
    elif who == "steps":
        require(caller, Action.CHANGE_TASK)
        allowed = caller.acts_for(Owner.MUNICIPALITY) and (
            caller.role == Role.ADMIN or caller.lg_code == found.lead_lg_code
        )
    else:
        require(caller, Action.PROCURE)
        allowed = caller.role == Role.ADMIN or (
            caller.role == Role.PM and caller.lg_code == found.lead_lg_code
        )
    if not allowed:
        raise HTTPProblem(403, "only the lead body acts on a joint procurement")
    return workflow_id(procurement_id)


async def change_task(
    ctx: Context, caller: Caller, procurement_id: str, key: str, body: TaskChangeIn
) -> ProcurementPublic:
    wid = await ctx.db.run(_lead_target, caller, procurement_id, "steps")
    change = ProcurementTaskChange(key, body.status, caller.actor, body.note, ctx.request_id)
    await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(
            JointProcurementWorkflow.change_task, change, id=ctx.update_id(f"step-{key}")
        ),
        wid,
    )
    return await ctx.db.run(procurement, caller, procurement_id)


async def decide(
    ctx: Context, caller: Caller, procurement_id: str, body: DecisionIn
) -> ProcurementPublic:
    def target(session: Session) -> str:
        wid = _lead_target(session, caller, procurement_id, "gate")
        if body.vendor_id is not None:
            known_vendor(session, body.vendor_id)
        return wid

    wid = await ctx.db.run(target)
    decision = ProcurementDecision(
        body.outcome, caller.actor, body.comment, body.vendor_id, ctx.request_id
    )
    await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(
            JointProcurementWorkflow.decide, decision, id=ctx.update_id("decision")
        ),
        wid,
    )
    return await ctx.db.run(procurement, caller, procurement_id)


async def join(
    ctx: Context, caller: Caller, procurement_id: str, body: MemberIn
) -> ProcurementPublic:
    def target(session: Session) -> str:
        wid = _lead_target(session, caller, procurement_id, "members")
        row = session.get(t.Procurement, procurement_id)
        assert row is not None
        check = ProcurementCreate(
            id=row.id,
            name=row.name,
            lead_lg_code=row.lead_lg_code,
            business=row.business,
            members=[body.project_id],
        )
        _member_problems(session, caller, check, row.prefecture)
        return wid

    wid = await ctx.db.run(target)
    member = Membership(f"migration-{body.project_id}", caller.actor, ctx.request_id)
    await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(JointProcurementWorkflow.join, member),
        wid,
    )
    return await ctx.db.run(procurement, caller, procurement_id)


async def leave(
    ctx: Context, caller: Caller, procurement_id: str, project_id: str
) -> ProcurementPublic:
    """A member leaves and procures alone from where it stands; refused (409) once the
    vendor is selected."""
    wid = await ctx.db.run(_lead_target, caller, procurement_id, "members")
    member = Membership(f"migration-{project_id}", caller.actor, ctx.request_id)
    await ctx.temporal(
        ctx.client.get_workflow_handle(wid).execute_update(JointProcurementWorkflow.leave, member),
        wid,
    )
    return await ctx.db.run(procurement, caller, procurement_id)
