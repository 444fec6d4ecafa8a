"""A migration project's state and the pure rules that read it.

Everything here is plain data and pure functions so that the workflow, the projection
activity and the tests all compute stage, health and progress the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from workflows.calendar import JST, jst_today, previous_working_day
from workflows.ladder import LEVELS, EscalationLadder, rung_instant
from workflows.procedure import ProcedureTemplate, TaskSpec

NOT_STARTED = "not_started"
IN_PROGRESS = "in_progress"
DONE = "done"
NOT_APPLICABLE = "not_applicable"
STATUSES = (NOT_STARTED, IN_PROGRESS, DONE, NOT_APPLICABLE)
COMPLETE = frozenset({DONE, NOT_APPLICABLE})

EXTENDED_GROUNDS = ("mainframe", "custom_built", "no_product", "vendor_shortage")
DEFAULT_DEADLINE = date(2026, 3, 31)
D = TypeVar("D")
EXTENDED_TRACK_LIMIT = date(2031, 3, 31)


@dataclass
class Decision:
    outcome: str
    by: str
    at: datetime
    comment: str | None = None


@dataclass
class TaskState:
    key: str
    status: str = NOT_STARTED
    due_date: date | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    percent: int | None = None
    decision: Decision | None = None
    note: str | None = None
    # When this task's ladder starts counting: rungs before it are not raised one by one.
    ladder_since: datetime | None = None
    # How often the ladder started over (reopened, replanned): keeps escalation ids unique.
    ladder_round: int = 0
    updated_at: datetime | None = None


@dataclass
class ExtendedTrack:
    ground: str
    planned_go_live: date
    reason: str
    declared_at: datetime


@dataclass
class Escalation:
    id: str
    task_key: str
    level: str
    audience: list[str]
    due_date: date
    raised_at: datetime
    status: str = "open"  # open | acknowledged | resolved
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass
class Event:
    seq: int
    at: datetime
    actor: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskView:
    key: str
    name: str
    stage: str
    owner: str
    status: str
    gate: bool
    depends_on: list[str]
    due_date: date | None
    started_at: datetime | None
    completed_at: datetime | None
    percent: int | None
    decision: Decision | None
    note: str | None = None


@dataclass
class MilestoneResult:
    milestone_id: str
    duplicate: bool
    task: TaskView
    request_id: str = ""
    fingerprint: str = ""
    attempt_id: str = ""


@dataclass
class Progress:
    done: int
    in_progress: int
    not_started: int
    not_applicable: int
    completion_rate: float
    in_progress_rate: float
    not_started_rate: float


@dataclass
class ProjectFacts:
    """Who migrates what, and with whom: the same in the state and in the read model."""

    lg_code: str
    business: str
    body_name: str
    prefecture: str
    business_name: str
    vendor_id: str | None
    switching_vendor: bool

    @property
    def project_id(self) -> str:
        return f"{self.lg_code}-{self.business}"


@dataclass
class MigrationState(ProjectFacts):
    """Everything a project is, carried whole across continue-as-new."""

    target_go_live: date
    deadline: date
    template: ProcedureTemplate
    ladder: EscalationLadder
    created_at: datetime
    created_by: str
    tasks: dict[str, TaskState] = field(default_factory=dict)
    extended_track: ExtendedTrack | None = None
    escalations: list[Escalation] = field(default_factory=list)
    # Rungs already handled, raised or passed over: "{task}@{due}:{level}".
    rungs_done: list[str] = field(default_factory=list)
    # Tasks already late when their ladder started, behind an unfinished prerequisite: the
    # level each will be raised at once it can be acted on.
    waiting: dict[str, str] = field(default_factory=dict)
    milestones: dict[str, MilestoneResult] = field(default_factory=dict)
    seq: int = 0
    # Every event of the project, oldest first: the audit trail the read model is rebuilt from.
    journal: list[Event] = field(default_factory=list)
    # The last seq written to the read model; events after it are still to be written.
    projected_seq: int = 0
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    # The deadline the PM was last told the plan overshoots (told once per deadline).
    deadline_notice_for: date | None = None
    # The key of the request that created the project: a repeat of it is not a conflict.
    creation_key: str = ""
    # Steps a joint procurement carries for this project: task key -> procurement id.
    held: dict[str, str] = field(default_factory=dict)
    # Milestone answers up to this seq were let go at continue-as-new (the read model
    # keeps them): a key the API finds there, this old, is a repeat.
    answers_let_go_through: int = 0


def pick(cls: type[D], *sources: object, **given: Any) -> D:
    """The dataclass ``cls`` with each field from ``given``, else from the first source that
    has an attribute of its name: one mapping for every shape made from another."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            values[f.name] = given[f.name]
            continue
        for source in sources:
            if hasattr(source, f.name):
                values[f.name] = getattr(source, f.name)
                break
    return cls(**values)


def workflow_id_for(lg_code: str, business: str) -> str:
    return f"migration-{lg_code}-{business}"


def is_complete(task: TaskState) -> bool:
    return task.status in COMPLETE


def effective_dependencies(state: MigrationState, spec: TaskSpec) -> list[str]:
    """A task's prerequisites, looking through those that do not apply to their own: with RFP
    not applicable, vendor selection still waits for the budget request."""
    found: list[str] = []
    for dep in spec.depends_on:
        if state.tasks[dep].status == NOT_APPLICABLE:
            inner = effective_dependencies(state, state.template.task(dep))
            found.extend(k for k in inner if k not in found)
        elif dep not in found:
            found.append(dep)
    return found


def dependencies_complete(state: MigrationState, spec: TaskSpec) -> bool:
    return all(is_complete(state.tasks[d]) for d in effective_dependencies(state, spec))


def awaiting_decision(state: MigrationState, spec: TaskSpec) -> bool:
    """A gate whose prerequisites are complete, unless a joint procurement decides it."""
    return (
        spec.gate
        and not is_complete(state.tasks[spec.key])
        and spec.key not in state.held
        and dependencies_complete(state, spec)
    )


def all_complete(state: MigrationState) -> bool:
    return all(is_complete(t) for t in state.tasks.values())


def stage_of(state: MigrationState) -> str:
    """The stage of the earliest task (in template order) not yet complete."""
    for spec in state.template.tasks:
        if not is_complete(state.tasks[spec.key]):
            return spec.stage
    return "completed"


def progress_of(statuses: list[str]) -> Progress:
    """MIC's formulas over one status per step."""
    counts = {s: statuses.count(s) for s in STATUSES}
    return progress_from_counts(
        counts[DONE], counts[IN_PROGRESS], counts[NOT_STARTED], counts[NOT_APPLICABLE]
    )


def progress_from_counts(
    done: int, in_progress: int, not_started: int, not_applicable: int
) -> Progress:
    """MIC's formulas: completion = (done + n/a) / steps; the others over the same steps.
    Reports add the counts up in the database and come here for the rates."""
    total = done + in_progress + not_started + not_applicable

    def rate(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    return Progress(
        done=done,
        in_progress=in_progress,
        not_started=not_started,
        not_applicable=not_applicable,
        completion_rate=rate(done + not_applicable),
        in_progress_rate=rate(in_progress),
        not_started_rate=rate(not_started),
    )


@dataclass(frozen=True)
class ForecastTerms:
    """A project's forecast go-live as a function of the day it is read on.

    The forecast slips by ``slip_days`` whatever the day, and, from ``slips_from`` on, by
    one more day each day that passes with nothing done (None: time alone never moves it).
    Both change only when the project does, so the read model holds them and every reader
    works out today's forecast itself: right on any day without waking the workflow."""

    slip_days: int = 0
    slips_from: date | None = None


def forecast_terms(state: MigrationState) -> ForecastTerms:
    """Each open task keeps its planned duration (its due date less its latest
    prerequisite's) but cannot finish before the day of reading nor before its
    prerequisites do; the go-live slips by as much as the tasks planned for on or before
    go-live slip. Every finish is then max(a date, the day of reading + some days): the
    terms are the largest of those over the tasks that count."""
    # Each finish as (A, B): max(A, today + B days), B None when today plays no part.
    finish: dict[str, tuple[date, int | None]] = {}
    slip_days = 0
    slips_from: date | None = None
    for spec in state.template.tasks:  # templates list prerequisites first
        task = state.tasks[spec.key]
        if task.status == NOT_APPLICABLE or task.due_date is None:
            continue
        deps = effective_dependencies(state, spec)
        if is_complete(task):
            done_on = jst_today(task.completed_at) if task.completed_at else task.due_date
            finish[spec.key] = (done_on, None)
            continue
        planned_start = max(
            (d for d in (state.tasks[k].due_date for k in deps) if d is not None),
            default=task.due_date,
        )
        duration = max((task.due_date - planned_start).days, 0)
        before = [finish[k] for k in deps if k in finish]
        a_start = max((a for a, _ in before), default=date.min)
        b_start = max([0, *(b for _, b in before if b is not None)])
        a = max(task.due_date, a_start + timedelta(days=duration))
        b = b_start + duration
        finish[spec.key] = (a, b)
        if spec.due_offset_months <= 0:
            slip_days = max(slip_days, (a - task.due_date).days)
            moves_from = task.due_date - timedelta(days=b)
            slips_from = moves_from if slips_from is None else min(slips_from, moves_from)
    return ForecastTerms(slip_days, slips_from)


def forecast_on(target_go_live: date, terms: ForecastTerms, today: date) -> date:
    """The forecast go-live read on ``today``: the target, or the working day on or before
    it moved by the slip."""
    slip = terms.slip_days
    if terms.slips_from is not None:
        slip = max(slip, (today - terms.slips_from).days)
    if slip <= 0:
        return target_go_live
    return previous_working_day(target_go_live + timedelta(days=slip))


def forecast_go_live(
    state: MigrationState, now: datetime, terms: ForecastTerms | None = None
) -> date:
    """The go-live the project is really heading for, read at ``now`` (``terms``: the
    state's forecast terms, when the caller has them already)."""
    terms = forecast_terms(state) if terms is None else terms
    return forecast_on(state.target_go_live, terms, jst_today(now))


def health_of(state: MigrationState, now: datetime, terms: ForecastTerms | None = None) -> str:
    """completed, overdue (an open task past its overdue rung), at_risk, or on_track
    (``terms``: the state's forecast terms, when the caller has them already)."""
    if all_complete(state):
        return "completed"
    at_risk = (
        state.target_go_live > state.deadline
        or forecast_go_live(state, now, terms) > state.deadline
    )
    for spec in state.template.tasks:
        task = state.tasks[spec.key]
        if is_complete(task) or task.due_date is None:
            continue
        if now >= rung_instant(task.due_date, "overdue", state.ladder):
            return "overdue"
        if task.status == NOT_STARTED and now >= rung_instant(
            task.due_date, "reminder", state.ladder
        ):
            at_risk = True
    return "at_risk" if at_risk else "on_track"


def task_view(state: MigrationState, key: str) -> TaskView:
    spec = state.template.task(key)
    return pick(TaskView, state.tasks[key], spec, depends_on=list(spec.depends_on))


def next_rung(state: MigrationState) -> datetime | None:
    """The earliest rung not yet handled of any open task: the one timer a project needs."""
    earliest: datetime | None = None
    done = set(state.rungs_done)
    for task in state.tasks.values():
        if is_complete(task) or task.due_date is None or task.key in state.held:
            continue
        for level in LEVELS:
            if rung_key(task, level) in done:
                continue
            at = rung_instant(task.due_date, level, state.ladder)
            if earliest is None or at < earliest:
                earliest = at
            break
    return earliest


def next_revaluation(state: MigrationState, now: datetime, minute: int = 0) -> datetime | None:
    """The first instant after ``now`` at which the project's health reads otherwise with
    nothing else happening, or None: time alone moves it when a task comes within its
    reminder window or past its due date (held ones too: the procurement's lateness is the
    member's), and when the slipping forecast passes the deadline. Health, unlike the
    forecast (see ForecastTerms), is published, filtered on and rolled up, so the workflow
    wakes to write it.

    Rungs fall at 09:00 JST; a forecast moves at a JST midnight, here ``minute`` minutes
    past it so that many projects do not all wake in the same minute."""
    if all_complete(state):
        return None
    terms = forecast_terms(state)  # time does not move them: worked out once
    health = health_of(state, now, terms)
    candidates: list[datetime] = []
    today_ = jst_today(now)
    if (
        terms.slips_from is not None
        and state.target_go_live <= state.deadline
        and forecast_on(state.target_go_live, terms, today_) <= state.deadline
    ):
        # The first day the forecast is past the deadline: it moves a day a day from
        # slips_from, so it is there within the gap (and a closed stretch) of that.
        gap = (state.deadline - state.target_go_live).days + 14
        lo = today_
        hi = max(today_, terms.slips_from) + timedelta(days=gap)
        while (hi - lo).days > 1:
            mid = lo + timedelta(days=(hi - lo).days // 2)
            if forecast_on(state.target_go_live, terms, mid) > state.deadline:
                hi = mid
            else:
                lo = mid
        candidates.append(datetime.combine(hi, time(0, minute % 60), tzinfo=JST))
    for task in state.tasks.values():
        if is_complete(task) or task.due_date is None:
            continue
        levels = ("reminder", "overdue") if task.status == NOT_STARTED else ("overdue",)
        for level in levels:
            at = rung_instant(task.due_date, level, state.ladder)
            if at > now:
                candidates.append(at)
    for at in sorted(candidates):
        if health_of(state, at, terms) != health:
            return at
    return None


def rung_key(task: TaskState, level: str) -> str:
    return f"{task.key}@{task.due_date}:{level}"


@dataclass
class ProjectSnapshot:
    """A project as it stands, with what is derived from it (the ``describe`` query)."""

    state: MigrationState
    stage: str
    health: str
    progress: Progress
    events: list[Event]
    forecast_go_live: date | None = None
    request_id: str = ""
    # What the forecast is made of, for readers to work it out on their own day.
    forecast_slip_days: int = 0
    forecast_slips_from: date | None = None


@dataclass
class ProjectRow(ProjectFacts):
    """The project's own row in the read model."""

    template: str
    target_go_live: date
    deadline: date
    forecast_go_live: date | None
    stage: str
    health: str
    extended_track: ExtendedTrack | None
    progress: Progress
    seq: int
    created_at: datetime
    updated_at: datetime | None
    completed_at: datetime | None
    # The forecast's terms (ForecastTerms): ``forecast_go_live`` is as of the write.
    forecast_slip_days: int = 0
    forecast_slips_from: date | None = None
    # The template's kind: migration or programme.
    kind: str = "migration"


@dataclass
class TaskRow:
    """What of a task changes over its life; the rest of its row comes from the template."""

    key: str
    status: str
    due_date: date | None
    started_at: datetime | None
    completed_at: datetime | None
    percent: int | None
    decision: Decision | None
    note: str | None
    updated_at: datetime | None


@dataclass
class ProjectionInput:
    """One write to the read model, in one transaction.

    ``full`` writes every task and escalation (with the template for the tasks' fixed
    columns) and replaces the events after ``base_seq``; a partial write carries only what
    changed since the read model held ``base_seq``, and is refused with ``RESYNC`` when it
    holds anything else (a write from a workflow task that never committed, say), so that
    the workflow sends the whole truth instead.
    """

    project: ProjectRow
    tasks: list[TaskRow]
    escalations: list[Escalation]
    events: list[Event]
    base_seq: int
    full: bool
    template: ProcedureTemplate | None = None
    # The API request that caused this write, so its logs can be followed into the worker.
    request_id: str = ""
    # Notices to hand over once the write is applied (projects of the sixth generation of
    # rules): the same local activity does both, so a turn that raises notices records one
    # marker, not two. A write refused with RESYNC hands nothing over.
    notices: list[HandOver] = field(default_factory=list)


APPLIED = "applied"
RESYNC = "resync"
# APPLIED, and the notices the write carried were handed over: what its marker records, so a
# history shows which turns sent notices (the workflow reads it as APPLIED).
HANDED_OVER = "applied-and-handed-over"


def project_row(snap: ProjectSnapshot) -> ProjectRow:
    template = snap.state.template
    return pick(ProjectRow, snap, snap.state, template=template.id, kind=template.kind)


def task_rows(state: MigrationState) -> dict[str, TaskRow]:
    rows = {}
    for spec in state.template.tasks:
        t = state.tasks[spec.key]
        rows[spec.key] = pick(TaskRow, t, decision=replace(t.decision) if t.decision else None)
    return rows


def escalation_rows(state: MigrationState) -> dict[str, Escalation]:
    return {e.id: replace(e, audience=list(e.audience)) for e in state.escalations}


def projection(
    snap: ProjectSnapshot,
    base_seq: int,
    tasks: dict[str, TaskRow],
    escalations: dict[str, Escalation],
    sent_tasks: dict[str, TaskRow] | None,
    sent_escalations: dict[str, Escalation] | None,
    notices: list[HandOver] | None = None,
) -> ProjectionInput:
    """The write that brings a read model holding ``base_seq`` up to ``snap``: only the rows
    that differ from those last sent, or everything when nothing was sent (``None``); with
    ``notices`` to hand over once it is applied."""
    full = sent_tasks is None or sent_escalations is None
    return ProjectionInput(
        project=project_row(snap),
        tasks=[r for k, r in tasks.items() if full or sent_tasks.get(k) != r],  # type: ignore[union-attr]
        escalations=[
            e
            for k, e in escalations.items()
            if full or sent_escalations.get(k) != e  # type: ignore[union-attr]
        ],
        events=[e for e in snap.events if e.seq > base_seq],
        base_seq=base_seq,
        full=full,
        template=snap.state.template if full else None,
        request_id=snap.request_id,
        notices=list(notices or []),
    )


@dataclass
class Notification:
    """A message to people about a project; delivered by NotificationWorkflow on every channel."""

    id: str
    project_id: str
    lg_code: str
    prefecture: str
    vendor_id: str | None
    kind: str
    audience: list[str]
    subject: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class HandOver:
    """A notice for the worker to hand over: to the digest named ``key`` (gathering for
    ``window_seconds``), or, without a key, to a NotificationWorkflow of its own."""

    note: Notification
    key: str | None = None
    window_seconds: float = 60.0
    # Set for a prefecture's gathering: the wave hour it splits its notices by.
    split_hour: str | None = None


@dataclass
class Channel:
    """Where notifications go: a generic JSON webhook or a Slack-compatible incoming webhook."""

    id: str
    kind: str  # "webhook" | "slack"
    url: str
    lg_code: str | None = None


@dataclass
class Delivery:
    delivery_id: str
    channel: Channel
    notification: Notification
