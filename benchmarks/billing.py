"""Temporal Cloud billable actions: counted from workflow histories, and per project over a
typical life (registration to decommissioning), for ``benchmarks.load`` and
``benchmarks.national`` to print.

Counting rules (Temporal Cloud's published list of actions, docs.temporal.io/cloud/actions),
applied to one history's events by ``count_actions``:

- workflow started: 1 for ``WorkflowExecutionStarted`` (a client start, Update-with-Start's
  start, a Schedule's start), and 1 for ``WorkflowExecutionContinuedAsNew`` (the next run's
  start, billed here so that the next run's own started event is not counted again). A child's
  started event counts 0: its start is billed to the parent (below).
- child workflow: 2 for ``StartChildWorkflowExecutionInitiated`` (the start and the attempted
  execution), also when the start then fails because the id is taken (a digest already
  gathering: billed as attempted).
- update: 1 for ``WorkflowExecutionUpdateAccepted``. A rejected update is billed too but leaves
  no event (none here: the API validates before it asks); a deduplicated one is not billed.
- signal: 1 for ``SignalExternalWorkflowExecutionInitiated`` (sent from a workflow) and 1 for
  ``WorkflowExecutionSignaled`` from a client; a signal from a workflow counts once, at its
  sender.
- timer: 1 for ``TimerStarted`` (``workflow.sleep``, ``asyncio.sleep`` and condition timeouts).
- activity: 1 per attempt: ``ActivityTaskStarted`` carries its attempt number (history keeps
  only the last attempt's start), so retries count each.
- local activities and other markers: 1 for all the ``MarkerRecorded`` events of one workflow
  task (they are counted per workflow task, not per marker). Workflow-task heartbeats of a
  local activity longer than the task timeout would add one each; none here (projections take
  milliseconds).
- search attributes: 1 per ``UpsertWorkflowSearchAttributes`` (however many attributes), 0
  for one that sets only ``TemporalChangeVersion``; attributes given at start are free.
- others: 1 for ``WorkflowExecutionOptionsUpdated``, ``NexusOperationScheduled`` and
  ``NexusOperationCancelRequested`` (unused here).
- Not in any history, so added by the estimate, not the counter: a query is billed (1 per
  query received by a worker: the nightly reconciliation asks each running project one, once
  a week); each Schedule run is 2 actions besides the workflow it starts; an activity
  heartbeat that reaches the server (throttled to 80 % of the heartbeat timeout) is 1.

Workflow tasks, completions, activity scheduling and results, timer firings and cancellations,
update completions and child results are free. Replays are free.
"""

from __future__ import annotations

import argparse
import calendar
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory

from workflows.digest import HAND_OVER_ACTIVITY
from workflows.model import HANDED_OVER
from workflows.notification import DELIVER_ACTIVITY
from workflows.procedure import DEFAULT_TEMPLATE
from workflows.reconcile import ReconcileInput

# Action kinds, in the order the table prints them.
STARTED = "workflow started"
CHILD = "child workflow (start + run)"
UPDATE = "update"
SIGNAL = "signal"
TIMER = "timer started"
ACTIVITY = "activity attempt"
MARKERS = "local activities (per workflow task)"
UPSERT = "search attribute upsert"
OTHER = "other (options, nexus)"
QUERY = "query (nightly reconciliation)"
SCHEDULE = "schedules' share"
KINDS = (STARTED, CHILD, UPDATE, SIGNAL, TIMER, ACTIVITY, MARKERS, UPSERT, OTHER, QUERY, SCHEDULE)
# A projection's marker result when it handed notices over, as the payload converter wrote it.
_HANDED_OVER = json.dumps(HANDED_OVER).encode()

# The prices and sizes the estimate states as assumptions (README, "Temporal Cloud actions
# per project"). Temporal Cloud's list price starts at about $50 per million actions and falls
# with volume; a contract's own price replaces it.
PRICE_PER_MILLION_USD = 50.0
NATIONAL_PROJECTS = 34_600
# Registration about three months before the first task's due date (governance, 24 months
# before go-live) to decommissioning, three months after it.
LIFE_MONTHS = 30
# A municipality task is moved twice (under way, then done); a vendor task reports this
# many milestones (progress, then done); each gate is decided once, and one in three
# projects has a plan rejected once and decided again.
CHANGES_PER_MUNICIPALITY_TASK = 2
MILESTONES_PER_VENDOR_TASK = 5
EXTRA_GATE_DECISIONS = 1 / 3
# Rungs: every task's reminder fires (open five working days before it is due); a fifth of
# the tasks run late (the national seed's share of late projects) and get their overdue
# notice, half of those the approver's and a quarter the prefecture's.
LATE_SHARE = 0.20
APPROVER_SHARE = 0.5
PREFECTURE_SHARE = 0.25
# Wakes without a rung: a late task's health moves once on the lists (the clock's wake).
CLOCK_WAKES_PER_LATE_TASK = 1
# One deadline notice over a project's life (a forecast past 2026-03-31).
DEADLINE_NOTICES = 1
# Notices per digest message (1: each notice alone, the dearest case) and the channels each
# message goes to (one delivery activity each, sent at the first attempt).
NOTICES_PER_DIGEST = 1.0
CHANNELS_PER_BODY = 1
# The nightly reconciliation: one query (truth) per project it checks, each running project
# once every ReconcileInput.share nights; its run lasts about this long and heartbeats every
# 96 s (80 % of its 2-minute timeout).
QUERIES_PER_NIGHT = 1 / ReconcileInput().share
RECONCILE_HOURS = 2.0
HEARTBEAT_SECONDS = 96

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "histories"


def _name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


def _events(history: WorkflowHistory | Iterable[HistoryEvent]) -> list[HistoryEvent]:
    return list(history.events if isinstance(history, WorkflowHistory) else history)


def count_actions(history: WorkflowHistory | Iterable[HistoryEvent]) -> Counter[str]:
    """The billable actions in one history, by kind (see the module's rules)."""
    out: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    for e in _events(history):
        kind = _name(e)
        if kind == "WORKFLOW_EXECUTION_STARTED":
            a = e.workflow_execution_started_event_attributes
            if not a.HasField("parent_workflow_execution") and not a.continued_execution_run_id:
                out[STARTED] += 1
        elif kind == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
            out[STARTED] += 1
        elif kind == "START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            out[CHILD] += 2
        elif kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            out[UPDATE] += 1
        elif kind == "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED":
            out[SIGNAL] += 1
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            if not e.workflow_execution_signaled_event_attributes.HasField(
                "external_workflow_execution"
            ):
                out[SIGNAL] += 1
        elif kind == "TIMER_STARTED":
            out[TIMER] += 1
        elif kind == "ACTIVITY_TASK_STARTED":
            out[ACTIVITY] += max(1, e.activity_task_started_event_attributes.attempt)
        elif kind == "MARKER_RECORDED":
            task = e.marker_recorded_event_attributes.workflow_task_completed_event_id
            if task not in marker_tasks:
                marker_tasks.add(task)
                out[MARKERS] += 1
        elif kind == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {"TemporalChangeVersion"}:
                out[UPSERT] += 1
        elif kind in (
            "WORKFLOW_EXECUTION_OPTIONS_UPDATED",
            "NEXUS_OPERATION_SCHEDULED",
            "NEXUS_OPERATION_CANCEL_REQUESTED",
        ):
            out[OTHER] += 1
    return out


def activity_attempts(history: WorkflowHistory | Iterable[HistoryEvent]) -> Counter[str]:
    """Activity attempts by activity type."""
    events = _events(history)
    types = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if _name(e) == "ACTIVITY_TASK_SCHEDULED"
    }
    out: Counter[str] = Counter()
    for e in events:
        if _name(e) == "ACTIVITY_TASK_STARTED":
            a = e.activity_task_started_event_attributes
            out[types.get(a.scheduled_event_id, "?")] += max(1, a.attempt)
    return out


# Update names as the steps of a project's life.
_UPDATE_STEPS = {
    "report_milestone": "milestone",
    "report_milestones": "milestones (one bulk feed)",
    "decide_gate": "gate decision",
    "change_task": "task change",
}


@dataclass
class Step:
    """One stimulus of a project's workflow (its creation, an update, a timer firing, a
    signal from a client) and every event up to the next one."""

    kind: str
    events: list[HistoryEvent] = field(default_factory=list)

    @property
    def actions(self) -> Counter[str]:
        return count_actions(self.events)


def steps(history: WorkflowHistory | Iterable[HistoryEvent]) -> list[Step]:
    """A project's history cut at each stimulus. The creation keeps the update it was started
    with (Update-with-Start) and what follows until the next stimulus; an update is named by
    its handler; a timer firing is a ``rung`` when what follows hands a notice over (a child
    started, or a signal sent to a digest), else a ``wake``. What follows a stimulus without
    one of its own (a child started, an activity's result) belongs to it."""
    out: list[Step] = []
    creation_update = False
    for e in _events(history):
        kind = _name(e)
        if kind == "WORKFLOW_EXECUTION_STARTED":
            out.append(Step("creation"))
        elif kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            name = e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
            if out and out[-1].kind == "creation" and not creation_update:
                creation_update = True
            else:
                out.append(Step(_UPDATE_STEPS.get(name, f"update {name}")))
        elif kind == "TIMER_FIRED":
            out.append(Step("wake"))
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            a = e.workflow_execution_signaled_event_attributes
            if not a.HasField("external_workflow_execution"):
                out.append(Step(f"signal {a.signal_name}"))
        if not out:
            out.append(Step("creation"))
        out[-1].events.append(e)
    for step in out:
        if step.kind == "wake" and any(_hands_over(e) for e in step.events):
            step.kind = "rung"
    return out


def _hands_over(e: HistoryEvent) -> bool:
    """Whether an event hands a notice over: a child started or a signal sent to a digest
    (projects started before the fourth generation of rules), or the local activity that
    signals-with-start the digest from the worker (``hand_over_notices``), or that activity
    run by a gathering to hand its messages on (gatherings of the first rules), or a
    projection that handed its turn's notices over (projects of the sixth generation)."""
    kind = _name(e)
    if kind in (
        "START_CHILD_WORKFLOW_EXECUTION_INITIATED",
        "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
    ):
        return True
    if kind == "ACTIVITY_TASK_SCHEDULED":
        activity_type = e.activity_task_scheduled_event_attributes.activity_type.name
        return bool(activity_type == HAND_OVER_ACTIVITY)
    if kind != "MARKER_RECORDED":
        return False
    details = e.marker_recorded_event_attributes.details
    data, result = details.get("data"), details.get("result")
    if data is not None and any(
        f'"activity_type":"{HAND_OVER_ACTIVITY}"'.encode() in p.data for p in data.payloads
    ):
        return True
    return result is not None and any(p.data == _HANDED_OVER for p in result.payloads)


@dataclass
class StepCost:
    """The mean actions of one kind of step, by action kind, over ``n`` steps seen."""

    total: Counter[str] = field(default_factory=Counter)
    n: int = 0
    source: str = ""

    def add(self, actions: Counter[str]) -> None:
        self.total.update(actions)
        self.n += 1

    def mean(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.total.items()} if self.n else {}

    def actions(self) -> float:
        return sum(self.total.values()) / self.n if self.n else 0.0


def measure(
    histories: Iterable[WorkflowHistory | Sequence[HistoryEvent]], source: str
) -> dict[str, StepCost]:
    """Mean actions per kind of step over projects' histories."""
    costs: dict[str, StepCost] = {}
    for history in histories:
        for step in steps(history):
            costs.setdefault(step.kind, StepCost(source=source)).add(step.actions)
    return costs


def digest_cost(
    histories: Iterable[WorkflowHistory | Sequence[HistoryEvent]], source: str
) -> StepCost:
    """Mean actions of one digest message without its deliveries and without the notices'
    signals (one a notice, however many a digest gathered: the estimate adds them per
    notice), from digests that have closed. A prefecture's gathering hands its messages to
    NotificationWorkflows of their own: each counts as one message here (the dearest case),
    with its workflow's start and channel lookup added."""
    cost = StepCost(source=source)
    for history in histories:
        actions = count_actions(history)
        delivered = activity_attempts(history)[DELIVER_ACTIVITY]
        actions[ACTIVITY] -= delivered
        actions[SIGNAL] = 0
        if any(_hands_over(e) for e in _events(history)):
            actions[STARTED] += 1
            actions[ACTIVITY] += 1
        cost.add(+actions)
    return cost


def recorded_histories() -> list[tuple[str, WorkflowHistory]]:
    """The recorded histories of projects (tests/histories/vN-*.json) of the newest release
    that recorded projects (a release may record only another workflow's history)."""
    files = sorted(RECORDED.glob("v*-*.json"))
    for version in sorted({int(f.name[1:].split("-")[0]) for f in files}, reverse=True):
        out = []
        for f in files:
            if int(f.name[1:].split("-")[0]) != version:
                continue
            history = WorkflowHistory.from_json(f.stem, f.read_text())
            first = history.events[0].workflow_execution_started_event_attributes
            if first.workflow_type.name == "MigrationWorkflow":
                out.append((f.name, history))
        if out:
            return out
    return []


def recorded_step_costs() -> dict[str, StepCost]:
    histories = recorded_histories()
    prefix = histories[0][0].split("-")[0] if histories else "v?"
    return measure((h for _, h in histories), f"tests/histories/{prefix}-*.json")


def schedule_runs_per_year(year: int = 2026) -> dict[str, int]:
    """How often each of the worker's Schedules (worker/runner.py) starts its workflow in a
    year: the nightly reconciliation (03:00), the daily mail (09:30 Monday to Friday), the
    month-end snapshot (23:30 on days 28 to 31), the survey reminder (09:00 on days 1 to 7)
    and the programme follower (every ten minutes)."""
    days = [
        date(year, 1, 1) + timedelta(days=i) for i in range(366 if calendar.isleap(year) else 365)
    ]
    return {
        "read-model reconciliation": len(days),
        "daily mail": sum(d.weekday() < 5 for d in days),
        "progress snapshot": sum(d.day >= 28 for d in days),
        "survey reminder": sum(d.day <= 7 for d in days),
        "programme follower": len(days) * 24 * 6,
    }


def schedule_actions_per_year(single_activity_run: float) -> float:
    """Actions of every Schedule in a year: 2 per run for the Schedule, plus what the run's
    workflow does (``single_activity_run``, measured: its start and one activity), plus the
    reconciliation's heartbeats. The survey reminder runs its activity on the month's first
    working day only (its other runs are a start alone); its notices to bodies are left out."""
    runs = schedule_runs_per_year()
    total = 0.0
    for name, n in runs.items():
        total += 2 * n
        if name == "survey reminder":
            total += n + 12 * (single_activity_run - 1)
        else:
            total += n * single_activity_run
    total += runs["read-model reconciliation"] * RECONCILE_HOURS * 3600 / HEARTBEAT_SECONDS
    return total


def life_counts() -> dict[str, float]:
    """How many of each step a typical project has over its life (the assumptions above)."""
    tasks = DEFAULT_TEMPLATE.tasks
    municipality = sum(1 for t in tasks if t.owner == "municipality")
    vendor = sum(1 for t in tasks if t.owner == "vendor")
    gates = sum(1 for t in tasks if t.gate)
    late = len(tasks) * LATE_SHARE
    rungs = len(tasks) + late * (1 + APPROVER_SHARE + PREFECTURE_SHARE)
    return {
        "creation": 1,
        "task change": municipality * CHANGES_PER_MUNICIPALITY_TASK,
        "milestone": vendor * MILESTONES_PER_VENDOR_TASK,
        "gate decision": gates + EXTRA_GATE_DECISIONS,
        "rung": rungs,
        "wake": late * CLOCK_WAKES_PER_LATE_TASK,
        "digest message": (rungs + DEADLINE_NOTICES) / NOTICES_PER_DIGEST,
    }


# What a digest message costs when no digest in the run has closed, taking a prefecture's
# gathering of one message (the dearest case): its start (a signal-with-start from the
# worker; the signal is the notice's), its window and settling timers, the activity handing
# its message on, and the message's own workflow with its channel lookup (workflows/digest.py,
# workflows/notification.py).
_DIGEST_FROM_CODE = Counter({STARTED: 2, TIMER: 2, ACTIVITY: 2})
# What a schedule-started workflow costs when none was measured: its start and one activity.
_SINGLE_ACTIVITY_FROM_CODE = Counter({STARTED: 1, ACTIVITY: 1})


@dataclass
class Estimate:
    per_project: dict[str, float]
    costs: dict[str, StepCost]
    counts: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.per_project.values())


def estimate(
    measured: dict[str, StepCost],
    digest: StepCost | None = None,
    scheduled: StepCost | None = None,
) -> Estimate:
    """Actions per project over a typical life: each kind of step's measured cost (this run's
    histories first, the recorded ones for kinds the run did not take) times how many a life
    has, plus deliveries, queries and the Schedules' share."""
    costs = dict(recorded_step_costs())
    costs.update({k: v for k, v in measured.items() if v.n})
    if digest is None or not digest.n:
        digest = StepCost(Counter(_DIGEST_FROM_CODE), 1, "workflows/digest.py")
    costs["digest message"] = digest
    counts = life_counts()
    per = dict.fromkeys(KINDS, 0.0)
    for kind, n in counts.items():
        cost = costs.get(kind)
        if cost is None:
            continue
        for action, mean in cost.mean().items():
            per[action] += n * mean
    per[ACTIVITY] += counts["digest message"] * CHANNELS_PER_BODY
    # Each notice handed over is one signal(-with-start) of its digest.
    per[SIGNAL] += counts["rung"] + DEADLINE_NOTICES
    years = LIFE_MONTHS / 12
    per[QUERY] += QUERIES_PER_NIGHT * 365 * years
    if scheduled is None or not scheduled.n:
        scheduled = StepCost(Counter(_SINGLE_ACTIVITY_FROM_CODE), 1, "workflows/programme.py")
    per[SCHEDULE] += schedule_actions_per_year(scheduled.actions()) * years / NATIONAL_PROJECTS
    costs["schedule run"] = scheduled
    return Estimate(per, costs, counts)


def scheduled_cost() -> StepCost:
    """The recorded schedule-started workflows with one activity (programme follower,
    snapshot): their actions per run."""
    cost = StepCost(source="tests/histories (programme, snapshot)")
    files = sorted(RECORDED.glob("v*-*.json"))
    for stem in ("programme", "snapshot"):
        versions = [f for f in files if f.stem.endswith(f"-{stem}")]
        if versions:
            newest = max(versions, key=lambda f: int(f.name[1:].split("-")[0]))
            cost.add(count_actions(WorkflowHistory.from_json(newest.stem, newest.read_text())))
    return cost


def add_price_option(parser: argparse.ArgumentParser) -> None:
    """``--price-per-million``, for the benchmarks that print the estimate."""
    parser.add_argument(
        "--price-per-million",
        type=float,
        default=PRICE_PER_MILLION_USD,
        help="USD per million Temporal Cloud actions (an assumption)",
    )


def report(
    measured: dict[str, StepCost],
    digest: StepCost | None = None,
    price_per_million: float = PRICE_PER_MILLION_USD,
) -> str:
    """The table both benchmarks print."""
    est = estimate(measured, digest, scheduled_cost())
    lines = [
        f"Temporal Cloud actions per project over a typical life ({LIFE_MONTHS} months; "
        "assumptions in README, 'Temporal Cloud actions per project')",
        "  step                        per life   actions each   measured from",
    ]
    for kind, n in est.counts.items():
        cost = est.costs.get(kind)
        each = f"{cost.actions():8.2f}" if cost else "       -"
        source = f"{cost.source} (n={cost.n})" if cost else "not measured"
        lines.append(f"  {kind:<26} {n:9.1f}   {each}       {source}")
    sched = est.costs["schedule run"]
    lines.append(
        f"  {'schedule run (shared)':<26} {'':>9}   {sched.actions():8.2f}       "
        f"{sched.source} (n={sched.n}), + 2 per run for the Schedule"
    )
    lines.append("  action kind                                 per project")
    for kind, value in est.per_project.items():
        lines.append(f"  {kind:<40} {value:12.1f}")
    lines.append(f"  {'total':<40} {est.total:12.1f}")
    national = est.total * NATIONAL_PROJECTS
    lines.append(
        f"  national ({NATIONAL_PROJECTS:,} projects)           {national / 1e6:12.2f} M actions"
    )
    lines.append(
        f"  cost at ${price_per_million:g} per million actions (assumed list price): "
        f"${national / 1e6 * price_per_million:,.0f} over the programme, "
        f"${est.total / 1e6 * price_per_million * 1000:.2f} per 1,000 projects"
    )
    return "\n".join(lines)


async def histories_of(client: Client, ids: Iterable[str]) -> list[WorkflowHistory]:
    """The histories of these workflows (ids) as they stand."""
    return [await client.get_workflow_handle(wid).fetch_history() for wid in ids]


async def closed_digests(client: Client, limit: int = 50) -> list[WorkflowHistory]:
    """Histories of digests that have delivered (closed), up to ``limit``."""
    out = []
    async for wf in client.list_workflows("WorkflowType = 'DigestWorkflow'"):
        if wf.status == WorkflowExecutionStatus.COMPLETED:
            out.append(await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
            if len(out) >= limit:
                break
    return out


async def measured_report(
    client: Client,
    workflow_ids: Sequence[str],
    source: str,
    price_per_million: float = PRICE_PER_MILLION_USD,
) -> str:
    """The table, its step costs measured from these projects' histories (and the digests
    that have closed) on ``client``'s server, the recorded histories filling in the rest."""
    measured = measure(await histories_of(client, workflow_ids), source)
    digests = await closed_digests(client)
    digest = digest_cost(digests, f"{source}, digests") if digests else None
    return report(measured, digest, price_per_million)
