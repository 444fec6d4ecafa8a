"""Joint procurement (共同調達): one procurement of a standard-compliant system for several
local bodies' projects of the same business, led by a body or a prefecture.

``Procurement`` is the core (state and rules, no Temporal); ``JointProcurementWorkflow`` is
its shell. The procurement carries the joint steps — RFI material, RFI, its analysis, the
RFP and the vendor-selection gate, decided by the lead body's approver — while budget
requests and contracts stay with each member. A member joins by handing those steps to the
procurement (its own ladder stops chasing them) and may leave until the vendor is chosen,
taking them back; on approval every member gets the vendor and the steps done, recorded
there as done by the procurement. The procurement's own ladder tells its lead when a step
is late.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import notification
from workflows.core import (
    APPROVE,
    CONFLICT,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    REJECT,
    VENDOR_GATE,
    Holding,
    JointCompletion,
)
from workflows.ladder import EscalationLadder, rung_instant
from workflows.model import DONE, IN_PROGRESS, NOT_STARTED, Decision, Event, Notification
from workflows.procedure import DEFAULT_TEMPLATE
from workflows.vocabulary import Owner, ProcurementStatus

# The steps a joint procurement carries, in handbook order; each depends on the one before.
JOINT_STEPS = ("rfi_preparation", "rfi", "rfi_analysis", "rfp", VENDOR_GATE)
MEMBER_ACTIVITY = "procurement_member_update"
# The kind of error a member's closed workflow gives: no retry reaches it.
MEMBER_CLOSED = "Conflict"
# What a new run carries of the journal: the read model shows the newest 50 events.
JOURNAL_KEPT = 50
PROJECTION_ACTIVITY = "project_procurement"
OVERDUE = "overdue"
# What a procurement's notices carry as their project: "procurement:ID".
PROCUREMENT_PREFIX = "procurement:"


@dataclass
class ProcurementTask:
    key: str
    name: str
    owner: str
    gate: bool
    status: str = NOT_STARTED
    due_date: date | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    decision: Decision | None = None
    note: str | None = None


@dataclass
class ProcurementOpening:
    id: str
    name: str
    lead_lg_code: str
    lead_name: str
    prefecture: str
    business: str
    business_name: str
    created_by: str
    # Each joint step's due date: the earliest of the members' own when it was set up.
    due: dict[str, date] = field(default_factory=dict)


@dataclass
class ProcurementState(ProcurementOpening):
    created_at: datetime | None = None
    status: str = ProcurementStatus.OPEN
    vendor_id: str | None = None
    members: list[str] = field(default_factory=list)  # member projects' workflow ids
    left: list[str] = field(default_factory=list)
    tasks: dict[str, ProcurementTask] = field(default_factory=dict)
    ladder: EscalationLadder = field(default_factory=EscalationLadder)
    rungs_done: list[str] = field(default_factory=list)
    journal: list[Event] = field(default_factory=list)
    seq: int = 0
    updated_at: datetime | None = None


@dataclass
class ProcurementInput(ProcurementOpening):
    state: ProcurementState | None = None  # set only by continue-as-new


@dataclass
class ProcurementTaskChange:
    task_key: str
    status: str
    actor: str
    note: str | None = None
    request_id: str = ""


@dataclass
class ProcurementDecision:
    outcome: str
    actor: str
    comment: str | None = None
    vendor_id: str | None = None
    request_id: str = ""


@dataclass
class Membership:
    """A member project joining or leaving, by its workflow id."""

    workflow_id: str
    actor: str
    request_id: str = ""


@dataclass
class MemberCall:
    """One update the procurement sends a member project (through an activity, which
    holds the Temporal client); its id makes a retried call one call."""

    workflow_id: str
    update: str
    arg: Any
    update_id: str


class ProcurementRefusal(Exception):
    def __init__(self, kind: str, message: str, japanese: str) -> None:
        super().__init__(message)
        self.kind, self.message, self.japanese = kind, message, japanese


@dataclass
class Procurement:
    s: ProcurementState
    outbox: list[Notification] = field(default_factory=list)

    @classmethod
    def start(cls, o: ProcurementOpening, now: datetime) -> Procurement:
        state = ProcurementState(**{k: getattr(o, k) for k in ProcurementOpening.__annotations__})
        state.created_at = state.updated_at = now
        for key in JOINT_STEPS:
            spec = DEFAULT_TEMPLATE.task(key)
            state.tasks[key] = ProcurementTask(
                key, spec.name, spec.owner, spec.gate, due_date=o.due.get(key)
            )
        m = cls(state)
        m.record("procurement_created", o.created_by, {"name": o.name}, now)
        m._refresh_gate(now)
        return m

    def record(self, kind: str, actor: str, data: dict[str, Any], now: datetime) -> None:
        self.s.seq += 1
        self.s.journal.append(Event(self.s.seq, now, actor, kind, data))
        self.s.updated_at = now

    # ---- checks ----------------------------------------------------------------------------

    def _open(self) -> None:
        if self.s.status != ProcurementStatus.OPEN:
            raise ProcurementRefusal(
                CONFLICT, "the vendor is already selected", "ベンダはすでに決定しています"
            )

    def _before(self, key: str) -> ProcurementTask | None:
        i = JOINT_STEPS.index(key)
        return self.s.tasks[JOINT_STEPS[i - 1]] if i else None

    def check_join(self, m: Membership) -> None:
        self._open()
        if m.workflow_id in self.s.members:
            raise ProcurementRefusal(CONFLICT, "already a member", "すでに参加しています")

    def check_leave(self, m: Membership) -> None:
        self._open()
        if m.workflow_id not in self.s.members:
            raise ProcurementRefusal(NOT_FOUND, "not a member", "参加していません")

    def check_task(self, c: ProcurementTaskChange) -> None:
        self._open()
        task = self.s.tasks.get(c.task_key)
        if task is None:
            raise ProcurementRefusal(
                NOT_FOUND, f"no joint step {c.task_key!r}", "その作業はありません"
            )
        if task.gate:
            raise ProcurementRefusal(
                CONFLICT,
                f"{c.task_key} is a gate: an approver decides it",
                f"「{task.name}」はゲートです。承認者が判定します",
            )
        if c.status not in (IN_PROGRESS, DONE):
            raise ProcurementRefusal(
                INVALID, "status: must be in_progress or done", "状態を選んでください"
            )
        if task.status == DONE or task.status == c.status:
            raise ProcurementRefusal(
                CONFLICT,
                f"{c.task_key} is already {task.status}",
                f"「{task.name}」はすでにその状態です",
            )
        before = self._before(c.task_key)
        if c.status == DONE and before is not None and before.status != DONE:
            raise ProcurementRefusal(
                CONFLICT,
                f"{c.task_key} depends on unfinished tasks: {before.key}",
                f"「{task.name}」の前に終えるべきタスクがあります: {before.name}",
            )

    def check_decision(self, d: ProcurementDecision) -> None:
        self._open()
        gate = self.s.tasks[VENDOR_GATE]
        if gate.status != IN_PROGRESS:
            raise ProcurementRefusal(
                CONFLICT,
                f"{VENDOR_GATE} is not awaiting a decision",
                f"「{gate.name}」は判定待ちではありません",
            )
        if d.outcome not in (APPROVE, REJECT):
            raise ProcurementRefusal(
                INVALID, "outcome: must be approve or reject", "判定を選んでください"
            )
        if d.outcome == REJECT and not (d.comment or "").strip():
            raise ProcurementRefusal(
                INVALID,
                "comment: a rejection needs a comment",
                "差し戻しには理由のコメントが必要です",
            )
        if d.outcome == APPROVE and not d.vendor_id:
            raise ProcurementRefusal(
                INVALID,
                "vendor_id: approving the selection names the vendor",
                "選定したベンダを指定してください",
            )
        if d.outcome == APPROVE and not self.s.members:
            raise ProcurementRefusal(
                FORBIDDEN, "the procurement has no members", "参加団体がありません"
            )

    # ---- changes ---------------------------------------------------------------------------

    def holding(self, m: Membership) -> Holding:
        """What a joining member hands over: every joint step, those already done jointly
        to be done there at once (a late joiner has nothing left to chase)."""
        done = [k for k in JOINT_STEPS if self.s.tasks[k].status == DONE]
        return Holding(self.s.id, m.actor, list(JOINT_STEPS), m.request_id, done)

    def join(self, m: Membership, now: datetime) -> None:
        self.s.members.append(m.workflow_id)
        if m.workflow_id in self.s.left:
            self.s.left.remove(m.workflow_id)
        self.record("member_joined", m.actor, {"workflow_id": m.workflow_id}, now)

    def leave(self, m: Membership, now: datetime) -> None:
        self.s.members.remove(m.workflow_id)
        self.s.left.append(m.workflow_id)
        self.record("member_left", m.actor, {"workflow_id": m.workflow_id}, now)

    def change_task(self, c: ProcurementTaskChange, now: datetime) -> ProcurementTask:
        self.check_task(c)
        task = self.s.tasks[c.task_key]
        before = task.status
        task.status = c.status
        task.started_at = task.started_at or now
        if c.status == DONE:
            task.completed_at = now
        if c.note is not None:
            task.note = c.note
        self.record(
            "task_updated", c.actor, {"task_key": c.task_key, "from": before, "to": c.status}, now
        )
        self._refresh_gate(now)
        return task

    def decide(self, d: ProcurementDecision, now: datetime) -> JointCompletion | None:
        """Approval selects the vendor for every member (what to tell them is returned);
        rejection sends the RFP back."""
        self.check_decision(d)
        gate = self.s.tasks[VENDOR_GATE]
        gate.decision = Decision(d.outcome, d.actor, now, d.comment)
        data: dict[str, Any] = {"gate_key": VENDOR_GATE, "outcome": d.outcome, "comment": d.comment}
        if d.outcome == REJECT:
            rfp = self.s.tasks["rfp"]
            rfp.status, rfp.completed_at, rfp.note = IN_PROGRESS, None, d.comment
            self.record("gate_decided", d.actor, {**data, "reopened": ["rfp"]}, now)
            self._refresh_gate(now)
            return None
        assert d.vendor_id is not None
        gate.status, gate.completed_at = DONE, now
        self.s.status = ProcurementStatus.SELECTED
        self.s.vendor_id = d.vendor_id
        self.record("gate_decided", d.actor, {**data, "vendor_id": d.vendor_id}, now)
        return JointCompletion(self.s.id, d.vendor_id, d.actor, d.actor, d.comment, d.request_id)

    def unreachable(self, workflow_id: str, reason: str, now: datetime) -> None:
        """A member that could not be told of the selection: the lead sees it in the trail."""
        data = {"workflow_id": workflow_id, "reason": reason}
        self.record("member_unreachable", "system", data, now)

    def _refresh_gate(self, now: datetime) -> None:
        gate = self.s.tasks[VENDOR_GATE]
        ready = self.s.tasks["rfp"].status == DONE
        if gate.status == NOT_STARTED and ready:
            gate.status, gate.started_at = IN_PROGRESS, now
        elif gate.status == IN_PROGRESS and not ready:
            gate.status, gate.started_at = NOT_STARTED, None

    # ---- the procurement's own ladder: its lead hears of a late step ----------------------

    def _rung(self, task: ProcurementTask) -> str:
        return f"{task.key}@{task.due_date}:{OVERDUE}"

    def next_rung(self) -> datetime | None:
        if self.s.status != ProcurementStatus.OPEN:
            return None
        times = [
            rung_instant(t.due_date, OVERDUE, self.s.ladder)
            for t in self.s.tasks.values()
            if t.status != DONE and t.due_date and self._rung(t) not in self.s.rungs_done
        ]
        return min(times, default=None)

    def advance_ladder(self, now: datetime) -> bool:
        raised = False
        for task in self.s.tasks.values():
            if (
                task.status == DONE
                or task.due_date is None
                or self.s.status != ProcurementStatus.OPEN
            ):
                continue
            if self._rung(task) in self.s.rungs_done:
                continue
            if rung_instant(task.due_date, OVERDUE, self.s.ladder) > now:
                continue
            self.s.rungs_done.append(self._rung(task))
            who = ["approver"] if task.owner == Owner.APPROVER else ["pm"]
            data = {
                "task_key": task.key,
                "task_name": task.name,
                "level": OVERDUE,
                "due_date": task.due_date.isoformat(),
                "procurement_id": self.s.id,
            }
            self.record("escalation_raised", "system", data, now)
            subject = f"【共同調達 期限超過】{self.s.name}：{task.name}"
            self.outbox.append(
                Notification(
                    f"{self.s.id}.{task.key}.{task.due_date}.{OVERDUE}",
                    f"{PROCUREMENT_PREFIX}{self.s.id}",
                    self.s.lead_lg_code,
                    self.s.prefecture,
                    None,
                    "escalation.overdue",
                    who,
                    subject,
                    f"{subject}（期限 {task.due_date.isoformat()}）",
                    data,
                )
            )
            raised = True
        return raised


def _refused(r: ProcurementRefusal) -> ApplicationError:
    return ApplicationError(
        r.message,
        {"code": "procurement", "params": {}, "japanese": r.japanese},
        type=r.kind,
        non_retryable=True,
    )


# Bounded: a member whose workflow keeps failing the update must not wedge the procurement.
MEMBER_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=20)


@workflow.defn
class JointProcurementWorkflow:
    """The shell: receive, ask the core, tell the members, project, sleep."""

    @workflow.init
    def __init__(self, inp: ProcurementInput) -> None:
        fresh = inp.state is None
        self._p = Procurement.start(inp, workflow.now()) if fresh else Procurement(inp.state)  # type: ignore[arg-type]
        self._lock = asyncio.Lock()
        self._wake = False

    @workflow.run
    async def run(self, inp: ProcurementInput) -> str | None:
        async with self._lock:
            await self._project()
        while self._p.s.status == ProcurementStatus.OPEN:
            wake_at = self._p.next_rung()
            timeout = None if wake_at is None else max(wake_at - workflow.now(), timedelta(0))
            try:
                await workflow.wait_condition(
                    lambda: self._wake or workflow.info().is_continue_as_new_suggested(),
                    timeout=timeout,
                )
            except TimeoutError:
                pass
            self._wake = False
            async with self._lock:
                if self._p.advance_ladder(workflow.now()):
                    await self._project()
            while self._p.outbox:
                await notification.send(self._p.outbox.pop(0))
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                # The read model holds the newest events; older ones need not ride along.
                state = replace(self._p.s, journal=self._p.s.journal[-JOURNAL_KEPT:])
                workflow.continue_as_new(replace(inp, state=state))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._p.s.vendor_id

    @workflow.query
    def state(self) -> ProcurementState:
        return self._p.s

    async def _tell(self, workflow_id: str, update: str, arg: Any) -> None:
        """One update to a member, through an activity; a member's refusal is ours."""
        call = MemberCall(workflow_id, update, arg, f"{self._p.s.id}:{self._p.s.seq}:{update}")
        try:
            await workflow.execute_activity(
                MEMBER_ACTIVITY,
                call,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=MEMBER_RETRY,
            )
        except ActivityError as exc:
            if isinstance(exc.cause, ApplicationError):
                raise exc.cause from None
            raise

    async def _project(self) -> None:
        await workflow.execute_local_activity(
            PROJECTION_ACTIVITY,
            replace(self._p.s, journal=self._p.s.journal[-JOURNAL_KEPT:], rungs_done=[]),
            start_to_close_timeout=timedelta(seconds=30),
        )

    def _check(self, fn: Any) -> None:
        try:
            fn()
        except ProcurementRefusal as r:
            raise _refused(r) from None

    @workflow.update
    async def join(self, m: Membership) -> None:
        async with self._lock:
            self._check(lambda: self._p.check_join(m))
            await self._tell(m.workflow_id, "hold_for_procurement", self._p.holding(m))
            self._p.join(m, workflow.now())
            await self._project()

    @join.validator
    def _validate_join(self, m: Membership) -> None:
        self._check(lambda: self._p.check_join(m))

    @workflow.update
    async def leave(self, m: Membership) -> None:
        async with self._lock:
            self._check(lambda: self._p.check_leave(m))
            await self._tell(m.workflow_id, "release_from_procurement", self._p.holding(m))
            self._p.leave(m, workflow.now())
            await self._project()

    @leave.validator
    def _validate_leave(self, m: Membership) -> None:
        self._check(lambda: self._p.check_leave(m))

    @workflow.update
    async def change_task(self, c: ProcurementTaskChange) -> ProcurementTask:
        async with self._lock:
            self._check(lambda: self._p.check_task(c))
            task = self._p.change_task(c, workflow.now())
            await self._project()
            self._wake = True
            return task

    @change_task.validator
    def _validate_change(self, c: ProcurementTaskChange) -> None:
        self._check(lambda: self._p.check_task(c))

    @workflow.update
    async def decide(self, d: ProcurementDecision) -> ProcurementTask:
        async with self._lock:
            self._check(lambda: self._p.check_decision(d))
            completion = self._p.decide(d, workflow.now())
            if completion is not None:
                # Every member gets the vendor and the joint steps done; each call is one
                # update however often the activity is retried. A member that cannot take it
                # (its project closed) is recorded, and the others are not held up by it.
                members = list(self._p.s.members)
                told = await asyncio.gather(
                    *(
                        self._tell(member, "complete_joint_procurement", completion)
                        for member in members
                    ),
                    return_exceptions=True,
                )
                for member, outcome in zip(members, told, strict=True):
                    if isinstance(outcome, (ApplicationError, ActivityError)):
                        self._p.unreachable(member, str(outcome), workflow.now())
                    elif isinstance(outcome, BaseException):
                        raise outcome
            await self._project()
            self._wake = True
            return self._p.s.tasks[VENDOR_GATE]

    @decide.validator
    def _validate_decide(self, d: ProcurementDecision) -> None:
        self._check(lambda: self._p.check_decision(d))
