"""MigrationWorkflow: one local body's migration of one business system, for years.

The workflow is the source of truth. Every write is an Update whose validator rejects a
bad request before it reaches history; the handler then changes the state, records an
event and waits for the read model to hold it, so the caller's next GET sees the change.
One timer at a time drives the escalation ladder: the earliest rung still to fire.
"""

from __future__ import annotations

import asyncio
import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

from workflows import core, notification
from workflows import search_attributes as sa
from workflows.core import CONFLICT, DEADLINE_NOTICE, Migration, Opening, Refusal
from workflows.digest import (
    HandOver,
    digest_key,
    hand_over,
    hand_over_all,
    prefecture_key,
    wave_hour,
)
from workflows.model import (
    APPLIED,
    RESYNC,
    Escalation,
    Event,
    MigrationState,
    MilestoneResult,
    Notification,
    ProjectionInput,
    ProjectSnapshot,
    TaskRow,
    TaskView,
    all_complete,
    escalation_rows,
    health_of,
    next_revaluation,
    next_rung,
    projection,
    task_rows,
)

PROJECTION_ACTIVITY = "project_migration"

# Changes to the shell that would alter running projects' histories (the core's are in
# workflows/core.py); see tests/histories.
PATCH_NOTIFY_AT_ONCE = "notify-without-waiting-for-the-next-wake"
PATCH_GROUP_COMMIT = "handlers-share-projections"
PATCH_SUMMARY_AT_REGISTRATION = "one-notice-per-audience-at-registration"
PATCH_BOUNDED_STATE = "continue-as-new-lets-written-history-go"
PATCH_DIGEST = "escalations-go-out-as-one-message-per-body-audience-and-wave"
PATCH_DEADLINE_DIGEST = "deadline-notices-go-through-the-digest-too"
PATCH_FRESH_HEALTH = "health-follows-the-clock"
PATCH_HAND_OVER = "notices-are-handed-over-by-one-local-activity"
PATCH_PREFECTURE_DIGEST = "notices-gather-by-prefecture-and-go-out-by-body"
# Only for projects born under it (no patch: running projects keep their two activities).
RULE_PROJECTION_HANDS_OVER = "a-projection-hands-its-turns-notices-over"

# The rules a project is started under. A project started before ``rules`` existed carries 0
# and asks ``workflow.patched`` for each rule changed since, as its history expects; a new
# one is born with every rule of its generation and records no patch marker (each marker
# also costs an upsert of TemporalChangeVersion: most of a new project's first history).
# A rule changed from now on gets a patch of the next generation, and RULES becomes it.
RULES = 6
GENERATION_1 = frozenset(
    {
        core.PATCH_NOT_APPLICABLE_RULE,
        core.PATCH_FAILED_CUTOVER_LADDER,
        core.PATCH_ESCALATION_ID_ROUND,
        core.PATCH_ACTIONABLE_STALE_RUNGS,
        PATCH_NOTIFY_AT_ONCE,
        PATCH_GROUP_COMMIT,
        PATCH_SUMMARY_AT_REGISTRATION,
        PATCH_BOUNDED_STATE,
        PATCH_DIGEST,
    }
)
GENERATION_2 = frozenset({PATCH_DEADLINE_DIGEST})
GENERATION_3 = frozenset(
    {
        core.PATCH_IMPORT_RULES,
        core.PATCH_GATE_OVERDUE_TO_PM,
        core.PATCH_HELD_GATES,
        core.PATCH_NEWER_TEMPLATES,
        PATCH_FRESH_HEALTH,
    }
)
GENERATION_4 = frozenset({PATCH_HAND_OVER})
GENERATION_5 = frozenset({PATCH_PREFECTURE_DIGEST})
GENERATION_6 = frozenset({RULE_PROJECTION_HANDS_OVER})
_GENERATIONS = (
    GENERATION_1,
    GENERATION_2,
    GENERATION_3,
    GENERATION_4,
    GENERATION_5,
    GENERATION_6,
)
# The most milestones one bulk update to a project carries (the API cuts larger ones up).
MAX_BATCH = 100
PROJECTION_TIMEOUT = timedelta(seconds=30)
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)


T = TypeVar("T")


@dataclass
class MigrationInput(Opening):
    # Continue as new past this many history events, even before the server suggests it.
    history_limit: int = 20_000
    # What a new run carries of what the read model already holds: the newest events of the
    # audit trail and the newest milestone answers (older ones are answered from the read
    # model), so that a project's state stays bounded over years.
    journal_kept: int = 200
    answers_kept: int = 1000
    # Resolved escalations a new run carries (the read model keeps them all).
    escalations_kept: int = 200
    # How long a wave's escalation notices gather into one message per body and audience.
    digest_window_seconds: float = 60.0
    # The generation of rules the project was started under (see RULES); 0 for projects
    # started before it was recorded, which is what their inputs decode to.
    rules: int = 0
    # Set only by continue-as-new: the whole project carried into the next run.
    state: MigrationState | None = None


def start_attributes(inp: MigrationInput, now: datetime) -> TypedSearchAttributes:
    """The search attributes a new project's first turn would publish, worked out by its
    starter so that they are set with the start and the first turn need not upsert them.
    Pure: the creation, its deadline check and ladder on a copy of the input at ``now``
    (the first turn, a moment later, upserts if it sees a different stage or health)."""
    m = Migration.start(copy.deepcopy(inp), now)
    m.record_creation(now, inp.progress)
    m.check_deadline(now)
    m.advance_ladder(now)
    return sa.pairs_of(sa.attributes_of(sa.published(m.snapshot(now, events=[])), now.tzinfo))


@dataclass
class MigrationResult:
    project_id: str
    completed_at: datetime | None


@dataclass
class OpenProject:
    """The first update of a project, sent with its start (Update-with-Start)."""

    creation_key: str
    request_id: str = ""


def _refused(r: Refusal) -> ApplicationError:
    """A refusal as Temporal carries it: the kind decides the status code; the code and
    parameters let a front end say it in its own words."""
    return ApplicationError(
        r.message,
        {"code": r.code, "params": r.params, "japanese": r.japanese},
        type=r.kind,
        non_retryable=True,
    )


def _validate(check: Callable[[], object]) -> None:
    try:
        check()
    except Refusal as r:
        raise _refused(r) from None


def _history_full(inp: MigrationInput) -> bool:
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() >= inp.history_limit
    )


async def _write(write: ProjectionInput) -> Any:
    # Old histories recorded a bool here; only the new RESYNC answer asks for more (HANDED_OVER
    # is APPLIED with the write's notices handed over).
    outcome = await workflow.execute_local_activity(
        PROJECTION_ACTIVITY,
        write,
        start_to_close_timeout=PROJECTION_TIMEOUT,
        retry_policy=PROJECTION_RETRY,
    )
    return outcome if outcome in (APPLIED, RESYNC) else APPLIED


class _LazyCounter:
    """A workflow metric created on first use (the meter exists only inside a workflow)."""

    def add(self, value: int, attributes: dict[str, str]) -> None:
        workflow.metric_meter().create_counter(
            "hyojunka_escalations_raised", "Escalations raised, by ladder level"
        ).add(value, attributes)


_ESCALATIONS = _LazyCounter()


class RungTimer:
    """One timer for the next rung, kept across wake-ups and replaced only when the next
    rung moves, so the workflow tasks of ordinary updates carry no timer commands."""

    def __init__(self) -> None:
        self._timer: asyncio.Future[None] | None = None
        self._at: datetime | None = None

    async def wait(self, wake_at: datetime | None, woken: Callable[[], bool]) -> None:
        """Sleep until ``woken()`` or ``wake_at``, whichever comes first."""
        if wake_at != self._at or (self._timer is not None and self._timer.done()):
            if self._timer is not None and not self._timer.done():
                self._timer.cancel()
            self._timer = None
            if wake_at is not None:
                delay = max((wake_at - workflow.now()).total_seconds(), 0.0)
                self._timer = asyncio.ensure_future(asyncio.sleep(delay))
            self._at = wake_at
        timer = self._timer
        await workflow.wait_condition(lambda: woken() or (timer is not None and timer.done()))
        if timer is not None and timer.done():
            self._timer, self._at = None, None


@workflow.defn
class MigrationWorkflow:
    """The shell around the core: receive, ask the core, record, project, publish, sleep."""

    @workflow.init
    def __init__(self, inp: MigrationInput) -> None:
        self._fresh = inp.state is None
        self._rules = inp.rules
        if inp.state is None:
            self._m = Migration.start(inp, workflow.now(), self._rule)
        else:
            self._m = Migration(inp.state, self._rule)
        self._s = self._m.s
        self._lock = asyncio.Lock()
        self._wake = False
        self._grouped: bool | None = None
        self._digests: bool | None = None
        self._deadline_digests: bool | None = None
        self._hand_over: bool | None = None
        self._by_prefecture: bool | None = None
        self._digest_window = inp.digest_window_seconds
        self._timer = RungTimer()
        # Request ids of changes waiting for the next projection, for the worker's logs.
        self._pending_rids: list[str] = []
        # The search attributes last published. A new project's starter may have set them
        # (start_attributes); the first turn then publishes only if it finds otherwise.
        started_with = sa.published_of(workflow.info().typed_search_attributes)
        self._published: tuple[Any, ...] = (started_with or ()) if self._fresh else ()
        # Set once run() has recorded and projected the creation.
        self._opened = False
        # The rows last written to the read model in this run; None until the first (full)
        # write. Rebuilt identically on replay, so it needs no place in the state.
        self._sent_tasks: dict[str, TaskRow] | None = None
        self._sent_escalations: dict[str, Escalation] | None = None
        self._sent_vendor = self._s.vendor_id
        self._sent_template = self._s.template.id
        # Health as last written: time alone moves it (see _derived_moved).
        self._sent_health: str | None = None
        self._clock_rule: bool | None = None
        # The minute past midnight its forecast may pass the deadline: spread, not all at once.
        self._minute = zlib.crc32(self._s.project_id.encode()) % 60

    @workflow.run
    async def run(self, inp: MigrationInput) -> MigrationResult:
        async with self._lock:
            if self._fresh:
                self._m.record_creation(workflow.now(), inp.progress)
            self._m.check_deadline(workflow.now())
            self._advance()
            if self._fresh and self._rule(PATCH_SUMMARY_AT_REGISTRATION):
                self._m.summarise_outbox()
            await self._project()
            self._opened = True
        # What starting raised (a plan past its deadline, rungs already due) goes out now,
        # not at the next wake-up, which may be months away.
        if self._rule(PATCH_NOTIFY_AT_ONCE):
            await self._send_notifications()
        while not all_complete(self._s):
            if self._group_commit():
                await self._timer.wait(self._next_wake(), lambda: self._wake or _history_full(inp))
            else:
                wake_at = self._next_wake()
                timeout = None if wake_at is None else max(wake_at - workflow.now(), timedelta(0))
                try:
                    await workflow.wait_condition(
                        lambda: self._wake or _history_full(inp), timeout=timeout
                    )
                except TimeoutError:
                    pass
            self._wake = False
            async with self._lock:
                noticed = self._m.check_deadline(workflow.now())
                # Under group commit, handlers leave their changes for this loop to write.
                moved = self._derived_moved()
                if self._advance() or noticed or self._unprojected() or moved:
                    await self._project()
            await self._send_notifications()
            if _history_full(inp):
                # Handlers must finish first, or an update in flight would be lost.
                await self._drain_handlers()
                async with self._lock:
                    await self._project()
                await self._send_notifications()
                if self._rule(PATCH_BOUNDED_STATE):
                    self._m.let_go(inp.journal_kept, inp.answers_kept, inp.escalations_kept)
                workflow.continue_as_new(replace(inp, state=self._s))
        await self._drain_handlers()
        await self._send_notifications()
        return MigrationResult(self._s.project_id, self._s.completed_at)

    def _rule(self, name: str) -> bool:
        """Whether a rule changed while projects were running applies to this one."""
        return self._born_with(name) or workflow.patched(name)

    def _born_with(self, name: str) -> bool:
        """Whether the project was started under the rule. A rule that changes only what a
        running project's next turns cost asks this alone, and no patch (a patch asked at a
        new place could read otherwise on replay)."""
        generation = next(
            (g for g, names in enumerate(_GENERATIONS, start=1) if name in names), RULES + 1
        )
        return self._rules >= generation

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

    def _follows_clock(self) -> bool:
        """Whether this project wakes when time alone changes its health (new runs), or
        only for its rungs (runs recorded before)."""
        if self._clock_rule is None:
            self._clock_rule = self._rule(PATCH_FRESH_HEALTH)
        return self._clock_rule

    def _next_wake(self) -> datetime | None:
        """The next rung, or sooner the moment the lists would show a stale health."""
        wake_at = next_rung(self._s)
        if not self._follows_clock():
            return wake_at
        moves_at = next_revaluation(self._s, workflow.now(), self._minute)
        if moves_at is not None and (wake_at is None or moves_at < wake_at):
            return moves_at
        return wake_at

    def _derived_moved(self) -> bool:
        """Whether health reads otherwise now than the read model holds it (the forecast's
        terms do not move with time: readers work the forecast out on their own day)."""
        if self._sent_health is None or not self._follows_clock():
            return False
        return health_of(self._s, workflow.now()) != self._sent_health

    def _advance(self) -> bool:
        """The ladder's turn; each rung raised is counted by level (not on replay)."""
        before = len(self._s.escalations)
        raised = self._m.advance_ladder(workflow.now())
        for esc in self._s.escalations[before:]:
            _ESCALATIONS.add(1, {"level": esc.level})
        return raised

    def _unprojected(self) -> bool:
        return self._s.projected_seq < self._s.seq

    def _group_commit(self) -> bool:
        """Whether handlers share projections (new runs) or each write their own under the
        lock (runs recorded before; their histories hold one projection per update)."""
        if self._grouped is None:
            self._grouped = self._rule(PATCH_GROUP_COMMIT)
        return self._grouped

    async def _commit(self, apply: Callable[[], T], request_id: str, wakes: bool = True) -> T:
        """Ask the core for a change and answer once the read model holds it.

        The core changes the state at once, without awaiting anything, so each change is
        atomic; the run loop then writes every change made since its last write in one
        projection (group commit), so concurrent updates share one local activity."""

        def ask() -> tuple[T, bool]:
            seq = self._s.seq
            try:
                result = apply()
            except Refusal as r:
                raise _refused(r) from None
            changed = self._s.seq != seq
            self._wake = self._wake or (changed and wakes)
            return result, changed

        if self._group_commit():
            result, changed = ask()
            if changed:
                seq = self._s.seq
                self._pending_rids.append(request_id)
                self._wake = True
                await workflow.wait_condition(lambda: self._s.projected_seq >= seq)
            return result
        async with self._lock:
            result, changed = ask()
            if changed:
                await self._project(request_id)
            return result

    # ---- queries and updates ------------------------------------------------------------

    @workflow.query
    def describe(self) -> ProjectSnapshot:
        """The live state of the project, with derived stage, health and progress."""
        return self._m.snapshot(workflow.now(), events=[])

    @workflow.query
    def truth(self) -> ProjectSnapshot:
        """``describe`` with the events of ``journal``, read at one instant: what the nightly
        reconciliation and ``readmodel rebuild`` compare the read model with, in one query
        (each query is a billed action on Temporal Cloud)."""
        return self._m.snapshot(workflow.now(), events=list(self._s.journal))

    @workflow.query
    def journal(self) -> list[Event]:
        """The events this run holds, oldest first (what ``readmodel rebuild`` replays): all
        of them, or since continue-as-new last let written ones go."""
        return list(self._s.journal)

    @workflow.update
    async def sync(self) -> int:
        """Answers once everything recorded so far is in the read model (kept for tools)."""
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
            raise ApplicationError(
                f"project {self._s.project_id} already exists", type=CONFLICT, non_retryable=True
            )

    @workflow.update
    async def change_task(self, change: core.TaskChange) -> TaskView:
        return await self._commit(
            lambda: self._m.change_task(change, workflow.now()), change.request_id
        )

    @change_task.validator
    def _validate_change_task(self, change: core.TaskChange) -> None:
        _validate(lambda: self._m.check_task_change(change))

    @workflow.update
    async def report_milestone(self, report: core.MilestoneReport) -> MilestoneResult:
        return await self._commit(
            lambda: self._m.report_milestone(report, workflow.now()), report.request_id
        )

    @report_milestone.validator
    def _validate_milestone(self, report: core.MilestoneReport) -> None:
        if report.idempotency_key not in self._s.milestones and not self._m.let_go_answer(report):
            _validate(lambda: self._m.check_milestone(report))

    @workflow.update
    async def report_milestones(self, batch: core.MilestoneBatch) -> list[core.MilestoneOutcome]:
        """A vendor's bulk feed for this project: every report in the order given, in one
        update and one write to the read model; each answered as ``report_milestone``."""
        return await self._commit(
            lambda: self._m.report_milestones(batch, workflow.now()), batch.request_id
        )

    @report_milestones.validator
    def _validate_milestones(self, batch: core.MilestoneBatch) -> None:
        if not 0 < len(batch.reports) <= MAX_BATCH:
            raise ApplicationError(
                f"a batch holds 1 to {MAX_BATCH} milestones", type=core.INVALID, non_retryable=True
            )

    @workflow.update
    async def decide_gate(self, decision: core.GateDecisionInput) -> TaskView:
        return await self._commit(
            lambda: self._m.decide_gate(decision, workflow.now()), decision.request_id
        )

    @decide_gate.validator
    def _validate_decision(self, decision: core.GateDecisionInput) -> None:
        _validate(lambda: self._m.check_decision(decision))

    @workflow.update
    async def replan(self, plan: core.ReplanInput) -> None:
        await self._commit(lambda: self._m.replan(plan, workflow.now()), plan.request_id)

    @replan.validator
    def _validate_replan(self, plan: core.ReplanInput) -> None:
        _validate(lambda: self._m.check_replan(plan, workflow.now(), validating=True))

    @workflow.update
    async def declare_extended_track(self, track: core.ExtendedTrackInput) -> None:
        await self._commit(
            lambda: self._m.declare_extended_track(track, workflow.now()), track.request_id
        )

    @declare_extended_track.validator
    def _validate_extended_track(self, track: core.ExtendedTrackInput) -> None:
        _validate(lambda: self._m.check_extended_track(track, workflow.now()))

    @workflow.update
    async def acknowledge_escalation(self, ack: core.AcknowledgeInput) -> None:
        await self._commit(
            lambda: self._m.acknowledge(ack, workflow.now()), ack.request_id, wakes=False
        )

    @workflow.update
    async def assign_vendor(self, a: core.VendorAssignment) -> None:
        await self._commit(lambda: self._m.assign_vendor(a, workflow.now()), a.request_id)

    @assign_vendor.validator
    def _validate_assign_vendor(self, a: core.VendorAssignment) -> None:
        _validate(lambda: self._m.check_assignment(a))

    @acknowledge_escalation.validator
    def _validate_ack(self, ack: core.AcknowledgeInput) -> None:
        _validate(lambda: self._m.check_ack(ack))

    @workflow.update
    async def upgrade_template(self, u: core.TemplateUpgrade) -> None:
        await self._commit(lambda: self._m.upgrade_template(u, workflow.now()), u.request_id)

    @upgrade_template.validator
    def _validate_upgrade(self, u: core.TemplateUpgrade) -> None:
        _validate(lambda: self._m.check_upgrade(u))

    # A joint procurement (JointProcurementWorkflow) takes over some steps and gives them
    # back, or completes them and assigns its vendor. Only these updates change ``held``,
    # so projects that never join one run exactly as before.

    @workflow.update
    async def hold_for_procurement(self, h: core.Holding) -> None:
        await self._commit(lambda: self._m.hold(h, workflow.now()), h.request_id)

    @hold_for_procurement.validator
    def _validate_hold(self, h: core.Holding) -> None:
        _validate(lambda: self._m.check_hold(h))

    @workflow.update
    async def release_from_procurement(self, h: core.Holding) -> None:
        await self._commit(lambda: self._m.release(h, workflow.now()), h.request_id)

    @workflow.update
    async def complete_joint_procurement(self, c: core.JointCompletion) -> None:
        await self._commit(lambda: self._m.complete_jointly(c, workflow.now()), c.request_id)

    # ---- side effects --------------------------------------------------------------------

    async def _project(self, request_id: str = "") -> None:
        """Bring the read model up to the workflow's truth: only what changed since the last
        write of this run, or everything when the read model holds something else."""
        s = self._s
        seq = s.seq
        snap = self._m.snapshot(workflow.now(), events=self._m.unprojected_events())
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
        if self._sent_template != s.template.id:
            self._sent_tasks = None  # another template: its tasks written whole
        sent = self._sent_escalations
        if sent is not None and self._sent_vendor != s.vendor_id:
            sent = {}  # each escalation row names the vendor who may see it
        notices = self._notices_to_hand_over()
        write = projection(
            snap, s.projected_seq, tasks, escalations, self._sent_tasks, sent, notices
        )
        if await _write(write) == RESYNC:
            # The read model saw writes this run's history does not have (a workflow task
            # that never committed) or lost some: overwrite it with the whole truth, and the
            # notices the refused write carried with it.
            await _write(projection(snap, s.projected_seq, tasks, escalations, None, None, notices))
        self._sent_tasks, self._sent_escalations = tasks, escalations
        self._sent_vendor = s.vendor_id
        self._sent_template = s.template.id
        self._sent_health = snap.health
        # Handlers may have changed more while this was written: only what it held counts.
        s.projected_seq = max(s.projected_seq, seq)

    def _publish(self, snap: ProjectSnapshot) -> None:
        wanted = sa.published(snap)
        if wanted != self._published:
            workflow.upsert_search_attributes(sa.attributes_of(wanted, workflow.now().tzinfo))
            self._published = wanted

    async def _send_notifications(self) -> None:
        """Each notification is its own workflow, so a dead channel never holds this one up;
        escalation notices go through the digest of their body, audience and hour, so a
        wave of rungs across a body's projects is one message per audience."""
        if self._digests is None:
            self._digests = self._rule(PATCH_DIGEST)
        while self._m.outbox:
            notes, self._m.outbox = self._m.outbox, []
            if not self._digests:
                for note in notes:
                    # A rung sent by an earlier run of this project is not sent again.
                    await notification.send(note)
                continue
            hour = wave_hour(workflow.now())
            if self._hand_over is None:
                self._hand_over = self._rule(PATCH_HAND_OVER)
            if self._hand_over:
                await hand_over_all([self._handing(note, hour) for note in notes])
                continue
            for note in notes:
                if note.kind.startswith("escalation.") or self._to_digest(note):
                    await hand_over(note, digest_key(note, hour), self._digest_window)
                else:
                    await notification.send(note)

    def _notices_to_hand_over(self) -> list[HandOver]:
        """The turn's notices, for its projection to hand over once written (sixth
        generation): one local activity, and one marker, for the write and the notices.
        Earlier projects hand them over in an activity of their own (``_send_notifications``,
        which still takes any notice raised after a turn's projection)."""
        if not self._m.outbox or not self._born_with(RULE_PROJECTION_HANDS_OVER):
            return []
        notes, self._m.outbox = self._m.outbox, []
        hour = wave_hour(workflow.now())
        return [self._handing(note, hour) for note in notes]

    def _handing(self, note: Notification, hour: str) -> HandOver:
        """Where a notice goes: the gathering of its prefecture's wave (fifth generation),
        else of its body's and audience's, or, if it is not gathered, its own workflow."""
        if not (note.kind.startswith("escalation.") or self._to_digest(note)):
            return HandOver(note)
        if self._by_prefecture is None:
            self._by_prefecture = self._rule(PATCH_PREFECTURE_DIGEST)
        if self._by_prefecture:
            return HandOver(note, prefecture_key(note, hour), self._digest_window, hour)
        return HandOver(note, digest_key(note, hour), self._digest_window)

    def _to_digest(self, note: Notification) -> bool:
        """A deadline notice joins the digest of its body too: an import of a body's late
        projects is one message to its PM, not one per project."""
        if note.kind != DEADLINE_NOTICE:
            return False
        if self._deadline_digests is None:
            self._deadline_digests = self._rule(PATCH_DEADLINE_DIGEST)
        return self._deadline_digests
