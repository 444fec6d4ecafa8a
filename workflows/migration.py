"""MigrationWorkflow: one local body's migration of one business system, for years.

The workflow is the source of truth. Every write is an Update whose validator rejects a
bad request before it reaches history; the handler then changes the state, records an
event and waits for the read model to hold it, so the caller's next GET sees the change.
One timer at a time drives the escalation ladder: the earliest rung still to fire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows import search_attributes as sa
from workflows.calendar import due_date, jst_today
from workflows.ladder import LEVELS, EscalationLadder, audience, rung_instant
from workflows.model import (
    APPLIED,
    COMPLETE,
    DONE,
    EXTENDED_GROUNDS,
    EXTENDED_TRACK_LIMIT,
    IN_PROGRESS,
    NOT_APPLICABLE,
    NOT_STARTED,
    RESYNC,
    Decision,
    Escalation,
    Event,
    ExtendedTrack,
    MigrationState,
    MilestoneResult,
    Notification,
    ProjectionInput,
    ProjectSnapshot,
    TaskRow,
    TaskState,
    TaskView,
    all_complete,
    awaiting_decision,
    dependencies_complete,
    effective_dependencies,
    escalation_rows,
    forecast_go_live,
    health_of,
    is_complete,
    next_rung,
    progress_of,
    projection,
    rung_key,
    stage_of,
    task_rows,
    task_view,
)
from workflows.notification import NotificationWorkflow
from workflows.procedure import ProcedureTemplate

# Error types an API maps to HTTP status codes; never matched on message text.
NOT_FOUND = "NotFound"
CONFLICT = "Conflict"
FORBIDDEN = "Forbidden"
INVALID = "Invalid"

PROJECTION_ACTIVITY = "project_migration"

# Changes that would alter running projects' histories; see tests/histories.
PATCH_NOT_APPLICABLE_RULE = "not-applicable-needs-prerequisites"
PATCH_FAILED_CUTOVER_LADDER = "failed-cutover-restarts-its-ladder"
PATCH_ESCALATION_ID_ROUND = "escalation-id-per-ladder-round"
PATCH_NOTIFY_AT_ONCE = "notify-without-waiting-for-the-next-wake"
PATCH_GROUP_COMMIT = "handlers-share-projections"
PROJECTION_TIMEOUT = timedelta(seconds=30)
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)


T = TypeVar("T")


def _refuse(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


@dataclass
class MigrationInput:
    lg_code: str
    business: str
    body_name: str
    prefecture: str
    business_name: str
    target_go_live: date
    template: ProcedureTemplate
    vendor_id: str | None = None
    switching_vendor: bool = False
    deadline: date = date(2026, 3, 31)
    ladder: EscalationLadder | None = None
    created_by: str = "system"
    # Continue as new past this many history events, even before the server suggests it.
    history_limit: int = 20_000
    # Set only by continue-as-new: the whole project carried into the next run.
    state: MigrationState | None = None
    # The key of the creating request (Update-with-Start): its repeats are not conflicts.
    creation_key: str = ""


@dataclass
class MigrationResult:
    project_id: str
    completed_at: datetime | None


@dataclass
class TaskChange:
    task_key: str
    status: str
    actor: str
    actor_role: str
    note: str | None = None
    request_id: str = ""


@dataclass
class MilestoneReport:
    idempotency_key: str
    task_key: str
    status: str
    actor: str
    percent: int | None = None
    note: str | None = None
    request_id: str = ""
    fingerprint: str = ""
    # Made by the API for each HTTP request; a replay gets the first attempt's back.
    attempt_id: str = ""


@dataclass
class GateDecisionInput:
    gate_key: str
    outcome: str
    actor: str
    comment: str | None = None
    request_id: str = ""


@dataclass
class ReplanInput:
    target_go_live: date
    reason: str
    actor: str
    request_id: str = ""


@dataclass
class ExtendedTrackInput:
    ground: str
    planned_go_live: date
    reason: str
    actor: str
    request_id: str = ""


@dataclass
class OpenProject:
    """The first update of a project, sent with its start (Update-with-Start)."""

    creation_key: str
    request_id: str = ""


@dataclass
class AcknowledgeInput:
    escalation_id: str
    actor: str
    request_id: str = ""


@workflow.defn
class MigrationWorkflow:
    @workflow.init
    def __init__(self, inp: MigrationInput) -> None:
        self._fresh = inp.state is None
        self._pending_notifications: list[Notification] = []
        self._s = inp.state if inp.state is not None else self._new_state(inp)
        self._lock = asyncio.Lock()
        self._wake = False
        self._grouped: bool | None = None
        # The pending timer for the next rung, and the instant it was set for.
        self._timer: asyncio.Future[None] | None = None
        self._timer_at: datetime | None = None
        # Request ids of changes waiting for the next projection, for the worker's logs.
        self._pending_rids: list[str] = []
        self._published: dict[str, Any] = {}
        # Set once run() has recorded and projected the creation.
        self._opened = False
        # The rows last written to the read model in this run; None until the first (full)
        # write. Rebuilt identically on replay, so it needs no place in the state.
        self._sent_tasks: dict[str, TaskRow] | None = None
        self._sent_escalations: dict[str, Escalation] | None = None

    # ---- run -------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: MigrationInput) -> MigrationResult:
        async with self._lock:
            if self._fresh:
                self._record("project_created", self._s.created_by, self._creation_data())
            self._check_deadline()
            self._advance_ladder()
            await self._project()
            self._opened = True
        # What starting raised (a plan past its deadline, rungs already due) goes out now,
        # not at the next wake-up, which may be months away.
        if workflow.patched(PATCH_NOTIFY_AT_ONCE):
            await self._send_notifications()
        while not all_complete(self._s):
            if self._group_commit():
                await self._wait_for_work(inp)
            else:
                wake_at = next_rung(self._s)
                timeout = None if wake_at is None else max(wake_at - workflow.now(), timedelta(0))
                try:
                    await workflow.wait_condition(
                        lambda: self._wake or self._history_full(inp), timeout=timeout
                    )
                except TimeoutError:
                    pass
            self._wake = False
            async with self._lock:
                noticed = self._check_deadline()
                # Under group commit, handlers leave their changes for this loop to write.
                if self._advance_ladder() or noticed or self._unprojected():
                    await self._project()
            await self._send_notifications()
            if self._history_full(inp):
                # Handlers must finish first, or an update in flight would be lost.
                await self._drain_handlers()
                async with self._lock:
                    await self._project()
                await self._send_notifications()
                workflow.continue_as_new(replace(inp, state=self._s))
        await self._drain_handlers()
        await self._send_notifications()
        return MigrationResult(self._s.project_id, self._s.completed_at)

    async def _wait_for_work(self, inp: MigrationInput) -> None:
        """Sleep until a handler wakes the loop or the next rung is due.

        The timer outlives wake-ups and is replaced only when the next rung moves, so the
        workflow tasks of ordinary updates carry no timer commands."""
        wake_at = next_rung(self._s)
        if wake_at != self._timer_at or (self._timer is not None and self._timer.done()):
            if self._timer is not None and not self._timer.done():
                self._timer.cancel()
            self._timer = None
            if wake_at is not None:
                delay = max((wake_at - workflow.now()).total_seconds(), 0.0)
                self._timer = asyncio.ensure_future(asyncio.sleep(delay))
            self._timer_at = wake_at
        timer = self._timer
        await workflow.wait_condition(
            lambda: self._wake or self._history_full(inp) or (timer is not None and timer.done())
        )
        if timer is not None and timer.done():
            self._timer, self._timer_at = None, None

    async def _drain_handlers(self) -> None:
        """Wait for every update handler to finish, writing what they wait for meanwhile."""
        if not self._group_commit():
            await workflow.wait_condition(workflow.all_handlers_finished)
            return
        while True:
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() or self._unprojected()
            )
            if not self._unprojected():
                return
            async with self._lock:
                await self._project()

    def _unprojected(self) -> bool:
        return self._s.projected_seq < self._s.seq

    def _group_commit(self) -> bool:
        """Whether handlers share projections (new runs) or each write their own under the
        lock (runs recorded before; their histories hold one projection per update)."""
        if self._grouped is None:
            self._grouped = workflow.patched(PATCH_GROUP_COMMIT)
        return self._grouped

    async def _commit(self, apply: Callable[[], tuple[T, bool]], request_id: str) -> T:
        """Apply a handler's change and answer once the read model holds it.

        Changes are applied at once, without awaiting anything, so each is atomic; the run
        loop then writes every change made since its last write in one projection (group
        commit), so concurrent updates of a project share one local activity."""
        if self._group_commit():
            result, changed = apply()
            if changed:
                seq = self._s.seq
                self._pending_rids.append(request_id)
                self._wake = True
                await workflow.wait_condition(lambda: self._s.projected_seq >= seq)
            return result
        async with self._lock:
            result, changed = apply()
            if changed:
                await self._project(request_id)
            return result

    def _history_full(self, inp: MigrationInput) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= inp.history_limit
        )

    # ---- queries ---------------------------------------------------------------------

    @workflow.query
    def describe(self) -> ProjectSnapshot:
        """The live state of the project, with derived stage, health and progress."""
        return self._snapshot(events=[])

    @workflow.query
    def journal(self) -> list[Event]:
        """The whole audit trail, for rebuilding the read model."""
        return list(self._s.journal)

    # ---- updates ---------------------------------------------------------------------

    @workflow.update
    async def sync(self) -> int:
        """Returns once the read model holds everything recorded so far."""
        await workflow.wait_condition(lambda: self._opened and self._s.projected_seq >= self._s.seq)
        return self._s.seq

    @workflow.update
    async def open_project(self, req: OpenProject) -> int:
        """Sent with the start: returns once the creation is recorded and in the read model."""
        await workflow.wait_condition(lambda: self._opened and self._s.projected_seq >= self._s.seq)
        return self._s.seq

    @open_project.validator
    def _validate_open(self, req: OpenProject) -> None:
        # Update-with-Start on a project that exists runs this update on it instead.
        if req.creation_key != self._s.creation_key:
            raise _refuse(CONFLICT, f"project {self._s.project_id} already exists")

    @workflow.update
    async def change_task(self, change: TaskChange) -> TaskView:
        return await self._commit(lambda: self._change_task(change), change.request_id)

    def _change_task(self, change: TaskChange) -> tuple[TaskView, bool]:
        # Validators do not run on replay; the handler keeps old histories' rule.
        self._check_task_change(change, workflow.patched(PATCH_NOT_APPLICABLE_RULE))
        now = workflow.now()
        task = self._s.tasks[change.task_key]
        before = task.status
        self._set_status(task, change.status, now)
        if change.note is not None:
            task.note = change.note
        self._record(
            "task_updated",
            change.actor,
            {"task_key": task.key, "from": before, "to": task.status, "note": change.note},
        )
        self._after_change(now)
        return task_view(self._s, task.key), True

    @change_task.validator
    def _validate_change_task(self, change: TaskChange) -> None:
        self._check_task_change(change)

    @workflow.update
    async def report_milestone(self, report: MilestoneReport) -> MilestoneResult:
        return await self._commit(lambda: self._report_milestone(report), report.request_id)

    def _report_milestone(self, report: MilestoneReport) -> tuple[MilestoneResult, bool]:
        earlier = self._s.milestones.get(report.idempotency_key)
        if earlier is not None:
            return earlier, False
        self._check_milestone(report)
        now = workflow.now()
        task = self._s.tasks[report.task_key]
        before = task.status
        if report.status == "failed":
            self._fail_cutover(task, now)
        else:
            self._set_status(task, report.status, now)
            if report.percent is not None and report.status == IN_PROGRESS:
                task.percent = report.percent
        if report.note is not None:
            task.note = report.note
        milestone_id = f"m{self._s.seq + 1}"
        self._record(
            "milestone_reported",
            report.actor,
            {
                "milestone_id": milestone_id,
                "idempotency_key": report.idempotency_key,
                "task_key": task.key,
                "status": report.status,
                "percent": report.percent,
                "note": report.note,
                "from": before,
                "to": task.status,
            },
        )
        self._after_change(now)
        result = MilestoneResult(
            milestone_id=milestone_id,
            duplicate=False,
            task=task_view(self._s, task.key),
            request_id=report.request_id,
            fingerprint=report.fingerprint,
            attempt_id=report.attempt_id,
        )
        self._s.milestones[report.idempotency_key] = result
        return result, True

    @report_milestone.validator
    def _validate_milestone(self, report: MilestoneReport) -> None:
        if report.idempotency_key not in self._s.milestones:
            self._check_milestone(report)

    @workflow.update
    async def decide_gate(self, decision: GateDecisionInput) -> TaskView:
        return await self._commit(lambda: self._decide_gate(decision), decision.request_id)

    def _decide_gate(self, decision: GateDecisionInput) -> tuple[TaskView, bool]:
        self._check_decision(decision)
        now = workflow.now()
        gate = self._s.tasks[decision.gate_key]
        gate.decision = Decision(decision.outcome, decision.actor, now, decision.comment)
        reopened: list[str] = []
        if decision.outcome == "approve":
            self._set_status(gate, DONE, now)
        else:
            for dep in effective_dependencies(self._s, self._s.template.task(gate.key)):
                task = self._s.tasks[dep]
                task.status = IN_PROGRESS
                task.completed_at = None
                task.percent = None
                task.note = decision.comment
                task.updated_at = now
                self._restart_ladder(task, now)
                reopened.append(dep)
        self._record(
            "gate_decided",
            decision.actor,
            {
                "gate_key": gate.key,
                "outcome": decision.outcome,
                "comment": decision.comment,
                "reopened": reopened,
            },
        )
        self._after_change(now)
        return task_view(self._s, gate.key), True

    @decide_gate.validator
    def _validate_decision(self, decision: GateDecisionInput) -> None:
        self._check_decision(decision)

    @workflow.update
    async def replan(self, plan: ReplanInput) -> None:
        await self._commit(lambda: self._replan(plan), plan.request_id)

    def _replan(self, plan: ReplanInput) -> tuple[None, bool]:
        self._check_go_live(plan.target_go_live, "target_go_live")
        now = workflow.now()
        before = self._s.target_go_live
        self._apply_target(plan.target_go_live, now)
        self._record(
            "replanned",
            plan.actor,
            {
                "from": before.isoformat(),
                "to": plan.target_go_live.isoformat(),
                "reason": plan.reason,
            },
        )
        self._after_change(now)
        return None, True

    @replan.validator
    def _validate_replan(self, plan: ReplanInput) -> None:
        self._check_go_live(plan.target_go_live, "target_go_live")
        if not plan.reason.strip():
            raise _refuse(INVALID, "reason: a replan needs a reason")

    @workflow.update
    async def declare_extended_track(self, track: ExtendedTrackInput) -> None:
        await self._commit(lambda: self._declare_extended_track(track), track.request_id)

    def _declare_extended_track(self, track: ExtendedTrackInput) -> tuple[None, bool]:
        self._check_extended_track(track)
        now = workflow.now()
        self._s.extended_track = ExtendedTrack(
            track.ground, track.planned_go_live, track.reason, now
        )
        self._s.deadline = track.planned_go_live
        if self._s.target_go_live != track.planned_go_live:
            self._apply_target(track.planned_go_live, now)
        self._record(
            "extended_track_declared",
            track.actor,
            {
                "ground": track.ground,
                "planned_go_live": track.planned_go_live.isoformat(),
                "reason": track.reason,
            },
        )
        self._after_change(now)
        return None, True

    @declare_extended_track.validator
    def _validate_extended_track(self, track: ExtendedTrackInput) -> None:
        self._check_extended_track(track)

    @workflow.update
    async def acknowledge_escalation(self, ack: AcknowledgeInput) -> None:
        await self._commit(lambda: self._acknowledge(ack), ack.request_id)

    def _acknowledge(self, ack: AcknowledgeInput) -> tuple[None, bool]:
        esc = self._check_ack(ack)
        now = workflow.now()
        esc.status = "acknowledged"
        esc.acknowledged_by = ack.actor
        esc.acknowledged_at = now
        self._record("escalation_acknowledged", ack.actor, {"escalation_id": esc.id})
        return None, True

    @acknowledge_escalation.validator
    def _validate_ack(self, ack: AcknowledgeInput) -> None:
        self._check_ack(ack)

    # ---- rules -----------------------------------------------------------------------

    def _check_task_change(self, change: TaskChange, strict_not_applicable: bool = True) -> None:
        if change.task_key not in self._s.tasks:
            raise _refuse(NOT_FOUND, f"no task {change.task_key!r} in this project")
        spec = self._s.template.task(change.task_key)
        task = self._s.tasks[change.task_key]
        if spec.gate:
            raise _refuse(CONFLICT, f"{spec.key} is a gate: an approver decides it")
        allowed_owner = {"pm": "municipality", "vendor": "vendor"}.get(change.actor_role)
        if change.actor_role != "admin" and allowed_owner != spec.owner:
            raise _refuse(FORBIDDEN, f"{spec.key} is a {spec.owner} task")
        if change.status not in (IN_PROGRESS, DONE, NOT_APPLICABLE):
            raise _refuse(INVALID, f"status: cannot set {change.status!r}")
        if task.status in COMPLETE:
            raise _refuse(CONFLICT, f"{spec.key} is already {task.status}")
        if change.status == IN_PROGRESS and task.status == IN_PROGRESS:
            raise _refuse(CONFLICT, f"{spec.key} is already in_progress")
        if strict_not_applicable and change.status == NOT_APPLICABLE:
            # Not applicable counts as complete, so it is decided when the task is reached:
            # a cutover must not be waved through before go/no-go.
            if task.status != NOT_STARTED:
                raise _refuse(CONFLICT, f"{spec.key} is under way: it cannot become not_applicable")
            if not dependencies_complete(self._s, spec):
                raise _refuse(
                    CONFLICT, f"{spec.key} is not reached yet: its prerequisites are open"
                )
        if change.status == DONE and not dependencies_complete(self._s, spec):
            missing = [
                d
                for d in effective_dependencies(self._s, spec)
                if not is_complete(self._s.tasks[d])
            ]
            raise _refuse(CONFLICT, f"{spec.key} depends on unfinished tasks: {', '.join(missing)}")

    def _check_milestone(self, report: MilestoneReport) -> None:
        if report.task_key not in self._s.tasks:
            raise _refuse(NOT_FOUND, f"no task {report.task_key!r} in this project")
        spec = self._s.template.task(report.task_key)
        task = self._s.tasks[report.task_key]
        if spec.owner != "vendor":
            raise _refuse(FORBIDDEN, f"{spec.key} is a {spec.owner} task, not the vendor's")
        if report.status not in (IN_PROGRESS, DONE, "failed"):
            raise _refuse(INVALID, f"status: cannot report {report.status!r}")
        if report.percent is not None and not 0 <= report.percent <= 100:
            raise _refuse(INVALID, "percent: must be between 0 and 100")
        if report.status == "failed":
            if not self._gate_before(spec.key) or spec.stage != "cutover":
                raise _refuse(INVALID, "status: 'failed' is only for the cutover")
            if task.status in COMPLETE or not dependencies_complete(self._s, spec):
                raise _refuse(CONFLICT, f"{spec.key} is not under way: nothing to fail")
            return
        if task.status in COMPLETE:
            raise _refuse(CONFLICT, f"{spec.key} is already {task.status}")
        if report.status == DONE and not dependencies_complete(self._s, spec):
            missing = [
                d
                for d in effective_dependencies(self._s, spec)
                if not is_complete(self._s.tasks[d])
            ]
            raise _refuse(CONFLICT, f"{spec.key} depends on unfinished tasks: {', '.join(missing)}")

    def _gate_before(self, key: str) -> str | None:
        for dep in self._s.template.task(key).depends_on:
            if self._s.template.task(dep).gate:
                return dep
        return None

    def _check_decision(self, decision: GateDecisionInput) -> None:
        key = decision.gate_key
        if key not in self._s.tasks or not self._s.template.task(key).gate:
            raise _refuse(NOT_FOUND, f"no gate {key!r} in this project")
        if decision.outcome not in ("approve", "reject"):
            raise _refuse(INVALID, "outcome: must be approve or reject")
        if decision.outcome == "reject" and not (decision.comment or "").strip():
            raise _refuse(INVALID, "comment: a rejection needs a comment")
        if not awaiting_decision(self._s, self._s.template.task(key)):
            raise _refuse(CONFLICT, f"{key} is not awaiting a decision")

    def _check_go_live(self, value: date, field_name: str) -> None:
        if value <= jst_today(workflow.now()):
            raise _refuse(INVALID, f"{field_name}: must be in the future")
        if value > EXTENDED_TRACK_LIMIT:
            raise _refuse(INVALID, f"{field_name}: must be on or before {EXTENDED_TRACK_LIMIT}")

    def _check_extended_track(self, track: ExtendedTrackInput) -> None:
        if track.ground not in EXTENDED_GROUNDS:
            raise _refuse(INVALID, f"ground: must be one of {', '.join(EXTENDED_GROUNDS)}")
        self._check_go_live(track.planned_go_live, "planned_go_live")
        if not track.reason.strip():
            raise _refuse(INVALID, "reason: the extended track needs a reason")

    def _check_ack(self, ack: AcknowledgeInput) -> Escalation:
        for esc in self._s.escalations:
            if esc.id == ack.escalation_id:
                if esc.status != "open":
                    raise _refuse(CONFLICT, f"escalation {esc.id} is already {esc.status}")
                return esc
        raise _refuse(NOT_FOUND, f"no escalation {ack.escalation_id!r}")

    # ---- state changes ---------------------------------------------------------------

    def _new_state(self, inp: MigrationInput) -> MigrationState:
        now = workflow.now()
        state = MigrationState(
            lg_code=inp.lg_code,
            business=inp.business,
            body_name=inp.body_name,
            prefecture=inp.prefecture,
            business_name=inp.business_name,
            vendor_id=inp.vendor_id,
            switching_vendor=inp.switching_vendor,
            target_go_live=inp.target_go_live,
            deadline=inp.deadline,
            template=inp.template,
            ladder=inp.ladder or EscalationLadder(),
            created_at=now,
            created_by=inp.created_by,
            creation_key=inp.creation_key,
        )
        for spec in inp.template.tasks:
            task = TaskState(key=spec.key, updated_at=now, ladder_since=now)
            if spec.switching_vendor_only and not inp.switching_vendor:
                task.status = NOT_APPLICABLE
            else:
                task.due_date = due_date(inp.target_go_live, spec.due_offset_months)
            state.tasks[spec.key] = task
        state.updated_at = now
        self._s = state
        self._refresh_gates(now)
        return state

    def _creation_data(self) -> dict[str, Any]:
        s = self._s
        return {
            "lg_code": s.lg_code,
            "business": s.business,
            "vendor_id": s.vendor_id,
            "switching_vendor": s.switching_vendor,
            "target_go_live": s.target_go_live.isoformat(),
            "template": s.template.id,
        }

    def _set_status(self, task: TaskState, status: str, now: datetime) -> None:
        task.status = status
        task.updated_at = now
        if status == IN_PROGRESS and task.started_at is None:
            task.started_at = now
        if status == DONE:
            task.started_at = task.started_at or now
            task.completed_at = now
            task.percent = 100
        if status in COMPLETE:
            self._resolve_escalations(task.key, now)

    def _fail_cutover(self, task: TaskState, now: datetime) -> None:
        gate_key = self._gate_before(task.key)
        assert gate_key is not None
        task.status = NOT_STARTED
        task.percent = None
        task.started_at = None
        task.updated_at = now
        if workflow.patched(PATCH_FAILED_CUTOVER_LADDER):
            self._restart_ladder(task, now)
        gate = self._s.tasks[gate_key]
        gate.status = NOT_STARTED
        gate.completed_at = None
        gate.decision = None
        gate.updated_at = now
        self._restart_ladder(gate, now)

    def _refresh_gates(self, now: datetime) -> None:
        """A gate is in progress exactly while it awaits a decision."""
        for spec in self._s.template.tasks:
            if not spec.gate:
                continue
            gate = self._s.tasks[spec.key]
            if is_complete(gate):
                continue
            if dependencies_complete(self._s, spec):
                if gate.status == NOT_STARTED:
                    gate.status = IN_PROGRESS
                    gate.started_at = now
                    gate.updated_at = now
            elif gate.status == IN_PROGRESS:
                gate.status = NOT_STARTED
                gate.started_at = None
                gate.updated_at = now

    def _after_change(self, now: datetime) -> None:
        self._refresh_gates(now)
        self._s.updated_at = now
        if all_complete(self._s) and self._s.completed_at is None:
            self._s.completed_at = now
            self._record("project_completed", "system", {})
        self._wake = True

    def _apply_target(self, target: date, now: datetime) -> None:
        self._s.target_go_live = target
        for spec in self._s.template.tasks:
            task = self._s.tasks[spec.key]
            if is_complete(task):
                continue
            new_due = due_date(target, spec.due_offset_months)
            if new_due != task.due_date:
                task.due_date = new_due
                self._restart_ladder(task, now)

    def _restart_ladder(self, task: TaskState, now: datetime) -> None:
        """A new due date or a reopened task: old rungs no longer apply, the ladder starts over."""
        task.ladder_since = now
        task.ladder_round += 1
        self._resolve_escalations(task.key, now, keep_due=None)
        prefix = f"{task.key}@"
        self._s.rungs_done = [r for r in self._s.rungs_done if not r.startswith(prefix)]

    def _resolve_escalations(
        self, task_key: str, now: datetime, keep_due: date | None = None
    ) -> None:
        for esc in self._s.escalations:
            if esc.task_key == task_key and esc.status != "resolved" and esc.due_date != keep_due:
                esc.status = "resolved"
                esc.resolved_at = now
                self._record("escalation_resolved", "system", {"escalation_id": esc.id})

    def _check_deadline(self) -> bool:
        """Tell the PM, once per deadline, that the plan goes live after it."""
        s = self._s
        if s.target_go_live <= s.deadline or s.deadline_notice_for == s.deadline:
            return False
        if all_complete(s):
            return False
        s.deadline_notice_for = s.deadline
        self._record(
            "deadline_exceeded",
            "system",
            {"deadline": s.deadline.isoformat(), "target_go_live": s.target_go_live.isoformat()},
        )
        subject = f"【移行期限超過】{s.body_name} {s.business_name}"
        self._pending_notifications.append(
            Notification(
                id=f"{s.project_id}.deadline.{s.deadline.isoformat()}",
                project_id=s.project_id,
                lg_code=s.lg_code,
                prefecture=s.prefecture,
                vendor_id=s.vendor_id,
                kind="deadline.exceeded",
                audience=["pm"],
                subject=subject,
                text=(
                    f"{subject}: 本番移行予定日 {s.target_go_live.isoformat()} が移行期限 "
                    f"{s.deadline.isoformat()} を過ぎています。特定移行支援システムに該当する場合は"
                    "「移行期限の延長（特定移行支援システム）」を申告してください。"
                ),
                data={
                    "deadline": s.deadline.isoformat(),
                    "target_go_live": s.target_go_live.isoformat(),
                    "extended_track": f"/api/v1/projects/{s.project_id}/extended-track",
                },
            )
        )
        return True

    def _advance_ladder(self) -> bool:
        """Raise every rung whose time has come; rungs already past when a task's ladder
        (re)started are passed over, except the latest, which says where the task stands."""
        now = workflow.now()
        raised = False
        for spec in self._s.template.tasks:
            task = self._s.tasks[spec.key]
            if is_complete(task) or task.due_date is None:
                continue
            due = task.due_date
            pending = [
                lvl
                for lvl in LEVELS
                if rung_key(task, lvl) not in self._s.rungs_done
                and rung_instant(due, lvl, self._s.ladder) <= now
            ]
            since = task.ladder_since or self._s.created_at
            stale = [lvl for lvl in pending if rung_instant(due, lvl, self._s.ladder) < since]
            for lvl in pending:
                self._s.rungs_done.append(rung_key(task, lvl))
                if lvl in stale and lvl != stale[-1]:
                    continue
                self._raise(spec.key, spec.name, spec.owner, due, lvl, now, task.ladder_round)
                raised = True
        if raised:
            self._s.updated_at = now
        return raised

    def _raise(
        self, key: str, name: str, owner: str, due: date, level: str, now: datetime, round_: int
    ) -> None:
        s = self._s
        esc_id = f"{s.project_id}.{key}.{due.isoformat()}.{level}"
        # A ladder that started over on the same due date (a reopened task) must not reuse
        # the ids, and so the notification workflow ids, of its earlier round.
        if round_ and workflow.patched(PATCH_ESCALATION_ID_ROUND):
            esc_id += f".r{round_}"
        esc = Escalation(
            id=esc_id,
            task_key=key,
            level=level,
            audience=audience(level, owner),
            due_date=due,
            raised_at=now,
        )
        s.escalations.append(esc)
        self._record(
            "escalation_raised",
            "system",
            {
                "escalation_id": esc.id,
                "task_key": key,
                "level": level,
                "audience": esc.audience,
                "due_date": due.isoformat(),
            },
        )
        self._notify(esc, name)

    def _notify(self, esc: Escalation, task_name: str) -> None:
        s = self._s
        level_ja = {
            "reminder": "期限が近づいています",
            "overdue": "期限を過ぎています",
            "approver": "期限超過（承認者へ）",
            "prefecture": "期限超過（都道府県へ）",
        }[esc.level]
        subject = f"【{level_ja}】{s.body_name} {s.business_name}: {task_name}"
        text = f"{subject}（期限 {esc.due_date.isoformat()}）"
        self._pending_notifications.append(
            Notification(
                id=esc.id,
                project_id=s.project_id,
                lg_code=s.lg_code,
                prefecture=s.prefecture,
                vendor_id=s.vendor_id,
                kind=f"escalation.{esc.level}",
                audience=list(esc.audience),
                subject=subject,
                text=text,
                data={
                    "task_key": esc.task_key,
                    "task_name": task_name,
                    "due_date": esc.due_date.isoformat(),
                    "level": esc.level,
                },
            )
        )

    def _record(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        self._s.seq += 1
        self._s.journal.append(Event(self._s.seq, workflow.now(), actor, kind, data))

    # ---- side effects ----------------------------------------------------------------

    def _snapshot(self, events: list[Event]) -> ProjectSnapshot:
        s = self._s
        return ProjectSnapshot(
            # Without what only the workflow needs (the journal, milestone answers, fired
            # rungs), which only grow.
            state=replace(s, journal=[], milestones={}, rungs_done=[]),
            stage=stage_of(s),
            health=health_of(s, workflow.now()),
            progress=progress_of([t.status for t in s.tasks.values()]),
            events=events,
            forecast_go_live=None if all_complete(s) else forecast_go_live(s, workflow.now()),
        )

    def _unprojected_events(self) -> list[Event]:
        pending: list[Event] = []
        for ev in reversed(self._s.journal):
            if ev.seq <= self._s.projected_seq:
                break
            pending.append(ev)
        pending.reverse()
        return pending

    async def _project(self, request_id: str = "") -> None:
        """Bring the read model up to the workflow's truth: only what changed since the last
        write of this run, or everything when the read model holds something else."""
        s = self._s
        seq = s.seq
        snap = self._snapshot(events=self._unprojected_events())
        rids = [r for r in (request_id, *self._pending_rids) if r]
        self._pending_rids = []
        request_id = snap.request_id = ",".join(dict.fromkeys(rids))
        if request_id:
            workflow.logger.info(
                "recorded %s",
                ",".join(e.kind for e in snap.events),
                extra={"request_id": request_id, "project_id": s.project_id},
            )
        self._publish(snap)
        tasks, escalations = task_rows(s), escalation_rows(s)
        write = projection(
            snap, s.projected_seq, tasks, escalations, self._sent_tasks, self._sent_escalations
        )
        outcome = await self._write(write)
        if outcome == RESYNC:
            # The read model saw writes this run's history does not have (a workflow task
            # that never committed) or lost some: overwrite it with the whole truth.
            write = projection(snap, s.projected_seq, tasks, escalations, None, None)
            await self._write(write)
        self._sent_tasks, self._sent_escalations = tasks, escalations
        # Handlers may have changed more while this was written: only what it held counts.
        s.projected_seq = max(s.projected_seq, seq)

    async def _write(self, write: ProjectionInput) -> Any:
        # Old histories recorded a bool here; only the new RESYNC answer asks for more.
        outcome = await workflow.execute_local_activity(
            PROJECTION_ACTIVITY,
            write,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PROJECTION_RETRY,
        )
        return outcome if outcome in (APPLIED, RESYNC) else APPLIED

    def _publish(self, snap: ProjectSnapshot) -> None:
        s = snap.state
        wanted: dict[str, Any] = {
            sa.LG_CODE.name: s.lg_code,
            sa.PREFECTURE.name: s.prefecture,
            sa.BUSINESS.name: s.business,
            sa.STAGE.name: snap.stage,
            sa.HEALTH.name: snap.health,
            sa.VENDOR.name: s.vendor_id or "",
            sa.TARGET_GO_LIVE.name: s.target_go_live.isoformat(),
        }
        if wanted == self._published:
            return
        target = datetime(
            s.target_go_live.year,
            s.target_go_live.month,
            s.target_go_live.day,
            tzinfo=workflow.now().tzinfo,
        )
        workflow.upsert_search_attributes(
            [
                sa.LG_CODE.value_set(s.lg_code),
                sa.PREFECTURE.value_set(s.prefecture),
                sa.BUSINESS.value_set(s.business),
                sa.STAGE.value_set(snap.stage),
                sa.HEALTH.value_set(snap.health),
                sa.VENDOR.value_set(s.vendor_id or ""),
                sa.TARGET_GO_LIVE.value_set(target),
            ]
        )
        self._published = wanted

    async def _send_notifications(self) -> None:
        """Each notification is its own workflow, so a dead channel never holds this one up."""
        while self._pending_notifications:
            note = self._pending_notifications.pop(0)
            try:
                await workflow.start_child_workflow(
                    NotificationWorkflow.run,
                    note,
                    id=f"notify-{note.id}",
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                pass  # the same rung was already sent by an earlier run of this project
