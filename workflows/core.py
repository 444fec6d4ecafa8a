"""The migration core: a project's state and every rule that changes it, with no Temporal and
no I/O.

``Migration`` holds a ``MigrationState`` and changes it only through its methods: task moves,
gate decisions, vendor milestones and failed cutovers, replans, the extended track,
acknowledgements, the deadline notice and the escalation ladder. Each change records its
events in the journal and leaves the notifications it raised in ``outbox``; a refused
request raises ``Refusal`` (a kind for the status code, a code and parameters for the
words) before anything changed. The caller supplies the time, and ``patched`` for the
rules that changed while projects were running (the workflow passes
``workflow.patched``; everything else may take the default: the newest rules).

``MigrationWorkflow`` is the shell around it: it receives, asks the core, records,
projects, publishes and sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any

from workflows.calendar import JST, due_date, jst_today
from workflows.ladder import LEVELS, EscalationLadder, earliest_rung, rung_instant
from workflows.model import (
    COMPLETE,
    DEFAULT_DEADLINE,
    DONE,
    EXTENDED_GROUNDS,
    EXTENDED_TRACK_LIMIT,
    IN_PROGRESS,
    NOT_APPLICABLE,
    NOT_STARTED,
    Decision,
    Escalation,
    Event,
    ExtendedTrack,
    ForecastTerms,
    MigrationState,
    MilestoneResult,
    Notification,
    ProjectSnapshot,
    TaskState,
    TaskView,
    all_complete,
    awaiting_decision,
    dependencies_complete,
    effective_dependencies,
    forecast_go_live,
    forecast_terms,
    health_of,
    is_complete,
    pick,
    progress_of,
    rung_key,
    stage_of,
    task_view,
)
from workflows.procedure import ProcedureTemplate
from workflows.roles import acts_for, audience
from workflows.vocabulary import EscalationLevel, Owner, TaskStatus

# Refusal kinds; the API maps them to HTTP status codes, never matching message text.
NOT_FOUND = "NotFound"
CONFLICT = "Conflict"
FORBIDDEN = "Forbidden"
INVALID = "Invalid"

# The kind of the notice telling the PM the plan goes live after the deadline.
DEADLINE_NOTICE = "deadline.exceeded"

# Rules that changed while projects were running; old histories replay with the old rule.
PATCH_NOT_APPLICABLE_RULE = "not-applicable-needs-prerequisites"
PATCH_FAILED_CUTOVER_LADDER = "failed-cutover-restarts-its-ladder"
PATCH_ESCALATION_ID_ROUND = "escalation-id-per-ladder-round"
PATCH_ACTIONABLE_STALE_RUNGS = "stale-rungs-wait-until-actionable"
PATCH_IMPORT_RULES = "progress-keeps-the-task-rules"
PATCH_GATE_OVERDUE_TO_PM = "a-late-gate-s-overdue-rung-goes-to-the-pm"
PATCH_HELD_GATES = "a-held-gate-does-not-await-a-decision"
PATCH_NEWER_TEMPLATES = "a-project-moves-only-to-a-newer-template"
# Not of a generation: a project asks for it (and records its marker) only on the rare turn
# where it matters, a system live after its deadline that was never told.
PATCH_LIVE_NOT_TOLD_LATE = "a-system-already-live-is-not-told-it-goes-live-late"

FAILED = "failed"  # a vendor's report that the cutover failed; never a task's status
APPROVE, REJECT = "approve", "reject"
VENDOR_GATE = "vendor_selection"  # approving it may name the vendor
ON_IMPORT = "on import"  # who decided a gate given as done when a project is registered
GO_LIVE_TASK = "cutover"  # the task whose completion is the go-live

# Each refusal: its kind, and what it says in English (the API) and Japanese (the pages).
REFUSALS: dict[str, tuple[str, str, str]] = {
    "no_task": (NOT_FOUND, "no task {task!r} in this project", "タスク「{name}」はありません"),
    "no_gate": (NOT_FOUND, "no gate {task!r} in this project", "ゲート「{name}」はありません"),
    "no_escalation": (NOT_FOUND, "no escalation {id!r}", "エスカレーション {id} はありません"),
    "gate_is_decided": (
        CONFLICT,
        "{task} is a gate: an approver decides it",
        "「{name}」はゲートです。承認者が判定します",
    ),
    "not_your_task": (
        FORBIDDEN,
        "{task} is a {owner} task",
        "「{name}」は{owner}の担当です",
    ),
    "not_vendor_task": (
        FORBIDDEN,
        "{task} is a {owner} task, not the vendor's",
        "「{name}」は{owner}の担当で、ベンダーの担当ではありません",
    ),
    "bad_status": (INVALID, "status: cannot set {status!r}", "この状態には変更できません"),
    "bad_report": (INVALID, "status: cannot report {status!r}", "この状態は報告できません"),
    "already": (CONFLICT, "{task} is already {status}", "「{name}」はすでに{status}です"),
    "under_way": (
        CONFLICT,
        "{task} is under way: it cannot become not_applicable",
        "「{name}」は作業中のため対象外にできません",
    ),
    "not_reached": (
        CONFLICT,
        "{task} is not reached yet: its prerequisites are open",
        "「{name}」はまだ前提タスクが終わっていません",
    ),
    "depends_on": (
        CONFLICT,
        "{task} depends on unfinished tasks: {missing}",
        "「{name}」の前に終えるべきタスクがあります: {missing}",
    ),
    "percent_range": (
        INVALID,
        "percent: must be between 0 and 100",
        "進捗率は0から100の間で入力してください",
    ),
    "failed_only_cutover": (
        INVALID,
        "status: 'failed' is only for the cutover",
        "「失敗」は本番移行にだけ報告できます",
    ),
    "nothing_to_fail": (
        CONFLICT,
        "{task} is not under way: nothing to fail",
        "「{name}」は実施中ではないため失敗にできません",
    ),
    "bad_outcome": (
        INVALID,
        "outcome: must be approve or reject",
        "判定は承認か差し戻しを選んでください",
    ),
    "reject_needs_comment": (
        INVALID,
        "comment: a rejection needs a comment",
        "差し戻しには理由のコメントが必要です",
    ),
    "not_awaiting": (
        CONFLICT,
        "{task} is not awaiting a decision",
        "「{name}」は判定待ちではありません",
    ),
    "not_future": (INVALID, "{field}: must be in the future", "日付は明日以降にしてください"),
    "not_future_unless_live": (
        INVALID,
        "{field}: must be in the future, unless the system is already live (its cutover given "
        "as done, on that date)",
        "本番移行予定日は明日以降にしてください（稼働済みのシステムは、本番移行を完了とし、"
        "稼働した日を本番移行予定日として登録します）",
    ),
    "live_on_cutover": (
        INVALID,
        "{field}: a system already live is registered with the day it went live, its cutover's "
        "date {on}",
        "稼働済みのシステムの本番移行予定日は、稼働した日（本番移行の完了日 {on}）にしてください",
    ),
    "past_limit": (
        INVALID,
        "{field}: must be on or before {limit}",
        "日付は{limit}以前にしてください",
    ),
    "needs_reason": (INVALID, "reason: {what} needs a reason", "理由を入力してください"),
    "bad_ground": (
        INVALID,
        "ground: must be one of {grounds}",
        "延長の事由を選んでください",
    ),
    "no_vendor": (
        CONFLICT,
        "{task} is the vendor's: assign a vendor to the project first",
        "「{name}」はベンダーの担当です。先にベンダーを割り当ててください",
    ),
    "same_vendor": (
        CONFLICT,
        "{vendor} is already the project's vendor",
        "{vendor} はすでにこのプロジェクトのベンダーです",
    ),
    "vendor_not_here": (
        INVALID,
        "vendor_id: only the vendor_selection gate assigns a vendor",
        "ベンダーを割り当てられるのはベンダー選定のゲートだけです",
    ),
    "progress_task": (
        INVALID,
        "progress.{task}: no such task in the template",
        "タスク「{task}」は手順にありません",
    ),
    "progress_status": (
        INVALID,
        "progress.{task}: status must be done, in_progress or not_applicable",
        "「{name}」の状態は完了・作業中・対象外のいずれかです",
    ),
    "progress_future": (
        INVALID,
        "progress.{task}: the completion date {on} is in the future",
        "「{name}」の完了日 {on} が未来の日付です",
    ),
    "progress_order": (
        INVALID,
        "progress.{task}: done before its prerequisites ({missing})",
        "「{name}」が前提タスクより先に完了しています: {missing}",
    ),
    "progress_gate": (
        INVALID,
        "progress.{task}: a gate is either done (approved) or not given",
        "ゲート「{name}」は完了（承認済み）のときだけ指定できます",
    ),
    "held": (
        CONFLICT,
        "{task} is carried out by joint procurement {procurement}",
        "「{name}」は共同調達（{procurement}）で実施しています",
    ),
    "in_procurement": (
        CONFLICT,
        "the project is already a member of joint procurement {procurement}",
        "このプロジェクトはすでに共同調達（{procurement}）に参加しています",
    ),
    "not_in_procurement": (
        CONFLICT,
        "the project is not a member of joint procurement {procurement}",
        "このプロジェクトは共同調達（{procurement}）に参加していません",
    ),
    "vendor_selected": (
        CONFLICT,
        "the project's vendor selection is already decided",
        "このプロジェクトのベンダ選定はすでに決定しています",
    ),
    "vendor_by_procurement": (
        CONFLICT,
        "joint procurement {procurement} selects this project's vendor",
        "このプロジェクトのベンダは共同調達（{procurement}）で選定します",
    ),
    "template_other": (
        INVALID,
        "template: {new} is not a version of {old}",
        "手順書 {new} は {old} の別の版ではありません",
    ),
    "template_same": (
        CONFLICT,
        "the project already follows {new}",
        "このプロジェクトはすでに手順書 {new} に沿っています",
    ),
    "template_moved": (
        CONFLICT,
        "the project is on {old}, not {expected}: left as it is",
        "このプロジェクトは手順書 {old} に移っているため、そのままにしました",
    ),
    "template_drops": (
        CONFLICT,
        "{new} drops tasks done or under way: {missing}",
        "手順書 {new} には、完了済みまたは作業中のタスクがありません: {missing}",
    ),
    "not_your_project": (NOT_FOUND, "no project {project!r}", "このプロジェクトは見つかりません"),
    "progress_not_applicable": (
        INVALID,
        "progress.{task}: the task does not apply to this project (not switching vendor)",
        "「{name}」はこのプロジェクトの対象外です（ベンダを変更しないため）",
    ),
    "progress_not_reached": (
        INVALID,
        "progress.{task}: not applicable before its prerequisites are complete ({missing})",
        "「{name}」は前提タスクが終わるまで対象外にできません: {missing}",
    ),
    "template_older": (
        CONFLICT,
        "{new} is not newer than {old}: a project moves only to a newer version",
        "手順書 {new} は {old} より新しい版ではありません",
    ),
    "no_joint_steps": (
        CONFLICT,
        "this project's procedure has no {task}: it cannot join a joint procurement",
        "このプロジェクトの手順には「{name}」がないため、共同調達に参加できません",
    ),
    "ack_closed": (
        CONFLICT,
        "escalation {id} is already {status}",
        "このエスカレーションはすでに対応済みです",
    ),
}


class Refusal(Exception):
    """A request the rules refuse; nothing has changed. ``words`` replace parameters in the
    Japanese text (a task's name for its key)."""

    def __init__(self, code: str, words: dict[str, Any] | None = None, **params: Any) -> None:
        self.kind, english, self._japanese = REFUSALS[code]
        self.code, self.params = code, params
        self._words = {**params, **{k: v for k, v in (words or {}).items() if v}}
        super().__init__(english.format(**params))

    @property
    def message(self) -> str:
        return str(self)

    @property
    def japanese(self) -> str:
        return self._japanese.format(**self._words)


# ---- requests ----------------------------------------------------------------------------


@dataclass
class TaskChange:
    task_key: str
    status: str
    actor: str
    actor_role: str
    note: str | None = None
    request_id: str = ""
    # The vendor a vendor's change comes from: refused once the project has another.
    vendor_id: str | None = None


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
    # The milestone id the read model holds for this key when the workflow may have let its
    # answer go at continue-as-new: then it is a repeat, answered from that id.
    recorded_id: str = ""
    # The vendor reporting: refused once the project has another (checked again here, as a
    # report may have passed the API's check before the vendor was replaced).
    vendor_id: str | None = None


@dataclass
class MilestoneBatch:
    """One project's milestones from a vendor's bulk feed, applied in the order given in one
    update, each exactly as ``report_milestone`` (one refused leaves the others to apply)."""

    reports: list[MilestoneReport] = field(default_factory=list)
    request_id: str = ""


@dataclass
class MilestoneOutcome:
    """One report of a batch: its result, or the refusal's kind, code and words."""

    result: MilestoneResult | None = None
    kind: str = ""
    code: str = ""
    message: str = ""
    japanese: str = ""


@dataclass
class GateDecisionInput:
    gate_key: str
    outcome: str
    actor: str
    comment: str | None = None
    request_id: str = ""
    # Approving vendor_selection with a vendor assigns it.
    vendor_id: str | None = None


@dataclass
class VendorAssignment:
    vendor_id: str
    reason: str
    actor: str
    request_id: str = ""


@dataclass
class Holding:
    """A joint procurement takes over some of a member's steps (joining), or gives them back
    (leaving: the member procures alone from where it stands)."""

    procurement_id: str
    actor: str
    keys: list[str] = field(default_factory=list)
    request_id: str = ""
    # Joining: those of ``keys`` the procurement has already done; done here at once.
    done: list[str] = field(default_factory=list)


@dataclass
class JointCompletion:
    """The joint procurement selected the vendor: its steps are done in every member."""

    procurement_id: str
    vendor_id: str
    decided_by: str
    actor: str
    comment: str | None = None
    request_id: str = ""


@dataclass
class TemplateUpgrade:
    """A running project moves to another version of its template (process-instance
    migration): tasks kept by key keep their state; new ones start; none done or under way
    may be dropped."""

    template: ProcedureTemplate
    reason: str
    actor: str
    request_id: str = ""
    # The version the mover expects the project on ("ID@VERSION"; a rollout's "from"): a
    # project moved on since it was listed is left as it is.
    expected: str = ""


@dataclass
class TaskProgress:
    """Where a task stood when a project already under way was registered."""

    status: str
    on: date | None = None  # when it was completed


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
class AcknowledgeInput:
    escalation_id: str
    actor: str
    request_id: str = ""


@dataclass
class Opening:
    """What a new project starts from (the workflow's input adds what only it needs)."""

    lg_code: str
    business: str
    body_name: str
    prefecture: str
    business_name: str
    target_go_live: date
    template: ProcedureTemplate
    vendor_id: str | None = None
    switching_vendor: bool = False
    deadline: date = DEFAULT_DEADLINE
    ladder: EscalationLadder | None = None
    created_by: str = "system"
    # The key of the creating request (Update-with-Start): its repeats are not conflicts.
    creation_key: str = ""
    # A migration already under way: each task's status and completion date.
    progress: dict[str, TaskProgress] = field(default_factory=dict)


def _label(vocabulary: type[TaskStatus] | type[Owner], code: str | None) -> str | None:
    return vocabulary(code).label if code in set(vocabulary) else code


def _newest(_: str) -> bool:
    return True


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A template version in order: parts split at ".", "_" and "-" compare as numbers
    where they are numbers ("1.10" after "1.9", "2.0" after both), and a version that adds
    parts to another ("1.0.1" to "1.0") is the newer."""
    parts = re.split(r"[._-]", version)
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts)


@dataclass
class Migration:
    """One project and its rules. ``patched(name)`` answers whether a changed rule applies."""

    s: MigrationState
    patched: Callable[[str], bool] = _newest
    outbox: list[Notification] = field(default_factory=list)

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def start(
        cls, o: Opening, now: datetime, patched: Callable[[str], bool] = _newest
    ) -> Migration:
        state = pick(MigrationState, o, ladder=o.ladder or EscalationLadder(), created_at=now)
        for spec in o.template.tasks:
            task = TaskState(key=spec.key, updated_at=now, ladder_since=now)
            if spec.switching_vendor_only and not o.switching_vendor:
                task.status = NOT_APPLICABLE
            else:
                task.due_date = due_date(o.target_go_live, spec.due_offset_months)
            state.tasks[spec.key] = task
        state.updated_at = now
        m = cls(state, patched)
        m._apply_progress(o.progress, now)
        m._refresh_gates(now)
        return m

    @staticmethod
    def live_progress(o: Opening, now: datetime) -> dict[str, TaskProgress]:
        """The progress a new project is recorded with: a system already live (a target
        go-live on or before today) whose cutover is given as done without a date went live
        on its target, and its cutover is dated so."""
        cutover = o.progress.get(GO_LIVE_TASK)
        if (
            o.target_go_live <= jst_today(now)
            and cutover is not None
            and cutover.status == DONE
            and cutover.on is None
        ):
            return {**o.progress, GO_LIVE_TASK: replace(cutover, on=o.target_go_live)}
        return o.progress

    @staticmethod
    def check_opening(o: Opening, now: datetime) -> None:
        """A new project's target go-live. A plan goes live in the future (by the extended
        track's limit at the latest). A system already live is registered as it stands, with
        the day it went live: a target on or before today is accepted only with the cutover
        given as done on that very date (``live_progress`` dates an undated one); the rest of
        its progress is then checked as any project's under way (``start``)."""
        name = "target_go_live"
        if o.target_go_live > jst_today(now):
            Migration.check_go_live(o.target_go_live, name, now)
            return
        cutover = o.progress.get(GO_LIVE_TASK)
        has_cutover = any(spec.key == GO_LIVE_TASK for spec in o.template.tasks)
        if not has_cutover or cutover is None or cutover.status != DONE or cutover.on is None:
            raise Refusal("not_future_unless_live", field=name)
        if cutover.on != o.target_go_live:
            raise Refusal("live_on_cutover", field=name, on=cutover.on.isoformat())

    def _import(self, task: TaskState, p: TaskProgress, now: datetime) -> None:
        at = datetime.combine(p.on, time(0), tzinfo=JST) if p.on else now
        # A done without a date has none: dated today, it would come after the dated tasks
        # that depend on it.
        undated = p.on is None and self.patched(PATCH_IMPORT_RULES)
        task.status = p.status
        if p.status == IN_PROGRESS:
            task.started_at = now
        if p.status == DONE:
            task.started_at = task.completed_at = None if undated else at
            task.percent = 100
            if self.s.template.task(task.key).gate:
                # The approval was recorded now, whenever it was given.
                task.decision = Decision(APPROVE, ON_IMPORT, at)

    def record_creation(self, now: datetime, progress: dict[str, TaskProgress]) -> None:
        s = self.s
        data: dict[str, Any] = {
            "lg_code": s.lg_code,
            "business": s.business,
            "vendor_id": s.vendor_id,
            "switching_vendor": s.switching_vendor,
            "target_go_live": s.target_go_live.isoformat(),
            "template": s.template.id,
        }
        if progress:
            data["progress"] = {
                k: {"status": p.status, "on": p.on.isoformat() if p.on else None}
                for k, p in progress.items()
            }
        self.record("project_created", s.created_by, data, now)

    def _apply_progress(self, progress: dict[str, TaskProgress], now: datetime) -> None:
        """Where a migration already under way stands. It must be one the handbook allows:
        known tasks, dates not in the future, nothing done before its prerequisites (or on
        an earlier date), gates only as approved."""
        s = self.s
        for key, p in progress.items():
            if key not in s.tasks:
                raise self._no("progress_task", task=key)
            if p.status not in (DONE, IN_PROGRESS, NOT_APPLICABLE):
                raise self._no("progress_status", task=key)
            if s.template.task(key).gate and p.status != DONE:
                raise self._no("progress_gate", task=key)
            if p.on is not None and p.on > jst_today(now):
                raise self._no("progress_future", task=key, on=p.on.isoformat())
        strict = bool(progress) and self.patched(PATCH_IMPORT_RULES)
        from_start = {k for k, t in s.tasks.items() if t.status == NOT_APPLICABLE}
        if strict:
            for key, p in progress.items():
                # A step that does not apply from the start (an RFP when staying with the
                # vendor) is not_applicable, or not given.
                if s.tasks[key].status == NOT_APPLICABLE and p.status != NOT_APPLICABLE:
                    raise self._no("progress_not_applicable", task=key)
        for key, p in progress.items():
            self._import(s.tasks[key], p, now)
        if strict:
            for key, p in progress.items():
                spec = s.template.task(key)
                # As for a task change: not applicable is decided once the task is reached.
                reached = key in from_start or dependencies_complete(s, spec)
                if p.status == NOT_APPLICABLE and not reached:
                    missing = [
                        d for d in effective_dependencies(s, spec) if not is_complete(s.tasks[d])
                    ]
                    raise self._no("progress_not_reached", task=key, missing=", ".join(missing))
        for key, p in progress.items():
            if p.status != DONE:
                continue
            deps = [s.tasks[d] for d in effective_dependencies(s, s.template.task(key))]
            late = [
                d.key
                for d in deps
                if not is_complete(d)
                or (d.status == DONE and p.on and d.completed_at and d.completed_at.date() > p.on)
            ]
            if late:
                raise self._no("progress_order", task=key, missing=", ".join(late))

    # ---- checks (validators and handlers both ask them) ---------------------------------

    def check_task_change(self, change: TaskChange, strict_not_applicable: bool = True) -> None:
        s = self.s
        if change.task_key not in s.tasks:
            raise self._no("no_task", task=change.task_key)
        self._check_vendor(change.vendor_id)
        spec = s.template.task(change.task_key)
        task = s.tasks[change.task_key]
        self._check_not_held(spec.key)
        if spec.gate:
            raise self._no("gate_is_decided", task=spec.key)
        if spec.owner not in acts_for(change.actor_role):
            raise self._no("not_your_task", task=spec.key, owner=spec.owner)
        if change.status not in (IN_PROGRESS, DONE, NOT_APPLICABLE):
            raise self._no("bad_status", status=change.status)
        if spec.owner == "vendor" and s.vendor_id is None and change.status != NOT_APPLICABLE:
            raise self._no("no_vendor", task=spec.key)
        if task.status in COMPLETE:
            raise self._no("already", task=spec.key, status=task.status)
        if change.status == IN_PROGRESS and task.status == IN_PROGRESS:
            raise self._no("already", task=spec.key, status=IN_PROGRESS)
        # Not applicable counts as complete, so it is decided when the task is reached: a
        # cutover must not be waved through before go/no-go.
        if change.status == NOT_APPLICABLE and strict_not_applicable:
            if task.status != NOT_STARTED:
                raise self._no("under_way", task=spec.key)
            if not dependencies_complete(s, spec):
                raise self._no("not_reached", task=spec.key)
        if change.status == DONE:
            self._check_prerequisites(spec.key)

    def check_milestone(self, report: MilestoneReport) -> None:
        s = self.s
        self._check_vendor(report.vendor_id)
        if report.task_key not in s.tasks:
            raise self._no("no_task", task=report.task_key)
        spec = s.template.task(report.task_key)
        task = s.tasks[report.task_key]
        if spec.owner != "vendor":
            raise self._no("not_vendor_task", task=spec.key, owner=spec.owner)
        if report.status not in (IN_PROGRESS, DONE, FAILED):
            raise self._no("bad_report", status=report.status)
        if report.percent is not None and not 0 <= report.percent <= 100:
            raise self._no("percent_range")
        if report.status == FAILED:
            if not self.gate_before(spec.key) or spec.stage != "cutover":
                raise self._no("failed_only_cutover")
            if task.status in COMPLETE or not dependencies_complete(s, spec):
                raise self._no("nothing_to_fail", task=spec.key)
            return
        if task.status in COMPLETE:
            raise self._no("already", task=spec.key, status=task.status)
        if report.status == DONE:
            self._check_prerequisites(spec.key)

    def _check_vendor(self, vendor_id: str | None) -> None:
        """A vendor writes only while it is the project's vendor: one replaced since the API
        let its request through is refused as the API would refuse it now."""
        if vendor_id is not None and vendor_id != self.s.vendor_id:
            raise self._no("not_your_project", project=self.s.project_id)

    def _check_not_held(self, key: str) -> None:
        if key in self.s.held:
            raise self._no("held", task=key, procurement=self.s.held[key])

    def _check_prerequisites(self, key: str) -> None:
        spec = self.s.template.task(key)
        if not dependencies_complete(self.s, spec):
            missing = [
                d for d in effective_dependencies(self.s, spec) if not is_complete(self.s.tasks[d])
            ]
            raise self._no("depends_on", task=key, missing=", ".join(missing))

    def check_decision(self, decision: GateDecisionInput) -> None:
        key = decision.gate_key
        if key not in self.s.tasks or not self.s.template.task(key).gate:
            raise self._no("no_gate", task=key)
        self._check_not_held(key)
        if decision.outcome not in (APPROVE, REJECT):
            raise self._no("bad_outcome")
        if decision.outcome == REJECT and not (decision.comment or "").strip():
            raise self._no("reject_needs_comment")
        if not awaiting_decision(self.s, self.s.template.task(key)):
            raise self._no("not_awaiting", task=key)
        if decision.vendor_id is not None and (key != VENDOR_GATE or decision.outcome != APPROVE):
            raise self._no("vendor_not_here")

    @staticmethod
    def check_go_live(value: date, field_name: str, now: datetime) -> None:
        if value <= jst_today(now):
            raise Refusal("not_future", field=field_name)
        if value > EXTENDED_TRACK_LIMIT:
            raise Refusal("past_limit", field=field_name, limit=EXTENDED_TRACK_LIMIT)

    def check_replan(self, plan: ReplanInput, now: datetime, validating: bool) -> None:
        self.check_go_live(plan.target_go_live, "target_go_live", now)
        if validating and not plan.reason.strip():
            raise self._no("needs_reason", what="a replan")

    def check_extended_track(self, track: ExtendedTrackInput, now: datetime) -> None:
        if track.ground not in EXTENDED_GROUNDS:
            raise self._no("bad_ground", grounds=", ".join(EXTENDED_GROUNDS))
        self.check_go_live(track.planned_go_live, "planned_go_live", now)
        if not track.reason.strip():
            raise self._no("needs_reason", what="the extended track")

    def check_ack(self, ack: AcknowledgeInput) -> Escalation:
        for esc in self.s.escalations:
            if esc.id == ack.escalation_id:
                if esc.status != "open":
                    raise self._no("ack_closed", id=esc.id, status=esc.status)
                return esc
        raise self._no("no_escalation", id=ack.escalation_id)

    def _no(self, code: str, **params: Any) -> Refusal:
        """A refusal naming tasks by key for the API and by their names for people."""
        names = {spec.key: spec.name for spec in self.s.template.tasks}
        words = {"status": _label(TaskStatus, params.get("status"))}
        words["name"] = names.get(params.get("task", ""), params.get("task"))
        words["owner"] = _label(Owner, params.get("owner"))
        words["missing"] = "、".join(
            names.get(k, k) for k in params.get("missing", "").split(", ") if k
        )
        return Refusal(code, words=words, **params)

    def gate_before(self, key: str) -> str | None:
        for dep in self.s.template.task(key).depends_on:
            if self.s.template.task(dep).gate:
                return dep
        return None

    # ---- changes: each checks, changes, records; returns its answer --------------------

    def change_task(self, change: TaskChange, now: datetime) -> TaskView:
        # Validators do not run on replay: the handler keeps the rule old histories ran with.
        self.check_task_change(change, self.patched(PATCH_NOT_APPLICABLE_RULE))
        task = self.s.tasks[change.task_key]
        before = task.status
        self._set_status(task, change.status, now)
        if change.note is not None:
            task.note = change.note
        self.record(
            "task_updated",
            change.actor,
            {"task_key": task.key, "from": before, "to": task.status, "note": change.note},
            now,
        )
        self._after_change(now)
        return task_view(self.s, task.key)

    def report_milestone(self, report: MilestoneReport, now: datetime) -> MilestoneResult:
        """A repeat of a key is answered with its first result and changes nothing."""
        earlier = self.s.milestones.get(report.idempotency_key)
        if earlier is not None:
            return earlier
        if self.let_go_answer(report):
            # Recorded long ago (its answer let go at continue-as-new): a repeat all the same,
            # answered with the task as it stands now; nothing changes.
            return MilestoneResult(
                milestone_id=report.recorded_id,
                duplicate=True,
                task=task_view(self.s, report.task_key),
                request_id=report.request_id,
                fingerprint=report.fingerprint,
            )
        self.check_milestone(report)
        task = self.s.tasks[report.task_key]
        before = task.status
        if report.status == FAILED:
            self._fail_cutover(task, now)
        else:
            self._set_status(task, report.status, now)
            if report.percent is not None and report.status == IN_PROGRESS:
                task.percent = report.percent
        if report.note is not None:
            task.note = report.note
        milestone_id = f"m{self.s.seq + 1}"
        self.record(
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
            now,
        )
        self._after_change(now)
        result = MilestoneResult(
            milestone_id=milestone_id,
            duplicate=False,
            task=task_view(self.s, task.key),
            request_id=report.request_id,
            fingerprint=report.fingerprint,
            attempt_id=report.attempt_id,
        )
        self.s.milestones[report.idempotency_key] = result
        return result

    def report_milestones(self, batch: MilestoneBatch, now: datetime) -> list[MilestoneOutcome]:
        """Each report in turn, as ``report_milestone``; a refusal is that report's answer."""
        outcomes: list[MilestoneOutcome] = []
        for report in batch.reports:
            try:
                outcomes.append(MilestoneOutcome(result=self.report_milestone(report, now)))
            except Refusal as r:
                outcomes.append(MilestoneOutcome(None, r.kind, r.code, r.message, r.japanese))
        return outcomes

    def decide_gate(self, decision: GateDecisionInput, now: datetime) -> TaskView:
        """Approval completes the gate; rejection reopens the work it judged."""
        self.check_decision(decision)
        gate = self.s.tasks[decision.gate_key]
        gate.decision = Decision(decision.outcome, decision.actor, now, decision.comment)
        reopened: list[str] = []
        if decision.outcome == APPROVE:
            self._set_status(gate, DONE, now)
            if decision.vendor_id is not None and decision.vendor_id != self.s.vendor_id:
                reason = f"{gate.key} approved"
                assignment = VendorAssignment(decision.vendor_id, reason, decision.actor)
                self._assign(assignment, now)
        else:
            for dep in effective_dependencies(self.s, self.s.template.task(gate.key)):
                task = self.s.tasks[dep]
                task.status = IN_PROGRESS
                task.completed_at = None
                task.percent = None
                task.note = decision.comment
                task.updated_at = now
                self._restart_ladder(task, now)
                reopened.append(dep)
        self.record(
            "gate_decided",
            decision.actor,
            {
                "gate_key": gate.key,
                "outcome": decision.outcome,
                "comment": decision.comment,
                "reopened": reopened,
            },
            now,
        )
        self._after_change(now)
        return task_view(self.s, gate.key)

    def replan(self, plan: ReplanInput, now: datetime) -> None:
        self.check_replan(plan, now, validating=False)
        before = self.s.target_go_live
        self._apply_target(plan.target_go_live, now)
        self.record(
            "replanned",
            plan.actor,
            {
                "from": before.isoformat(),
                "to": plan.target_go_live.isoformat(),
                "reason": plan.reason,
            },
            now,
        )
        self._after_change(now)

    def declare_extended_track(self, track: ExtendedTrackInput, now: datetime) -> None:
        """The project moves to the extended deadline and plans to go live on it."""
        self.check_extended_track(track, now)
        s = self.s
        s.extended_track = ExtendedTrack(track.ground, track.planned_go_live, track.reason, now)
        s.deadline = track.planned_go_live
        if s.target_go_live != track.planned_go_live:
            self._apply_target(track.planned_go_live, now)
        self.record(
            "extended_track_declared",
            track.actor,
            {
                "ground": track.ground,
                "planned_go_live": track.planned_go_live.isoformat(),
                "reason": track.reason,
            },
            now,
        )
        self._after_change(now)

    def check_assignment(self, a: VendorAssignment) -> None:
        if VENDOR_GATE in self.s.held:
            raise self._no("vendor_by_procurement", procurement=self.s.held[VENDOR_GATE])
        if a.vendor_id == self.s.vendor_id:
            raise self._no("same_vendor", vendor=a.vendor_id)
        if not a.reason.strip():
            raise self._no("needs_reason", what="a vendor assignment")

    def assign_vendor(self, a: VendorAssignment, now: datetime) -> None:
        """The project's vendor from now on: the previous one, if any, loses it at once."""
        self.check_assignment(a)
        self._assign(a, now)
        self._after_change(now)

    def _assign(self, a: VendorAssignment, now: datetime) -> None:
        before, self.s.vendor_id = self.s.vendor_id, a.vendor_id
        data = {"from": before, "to": a.vendor_id, "reason": a.reason}
        self.record("vendor_assigned", a.actor, data, now)

    # ---- another version of the template -----------------------------------------------

    def check_upgrade(self, u: TemplateUpgrade, newer_only: bool = True) -> None:
        s, new = self.s, u.template
        if new.name != s.template.name:
            raise self._no("template_other", new=new.id, old=s.template.id)
        if new.version == s.template.version:
            raise self._no("template_same", new=new.id)
        if u.expected and u.expected != s.template.id:
            raise self._no("template_moved", old=s.template.id, expected=u.expected)
        if newer_only and version_key(new.version) <= version_key(s.template.version):
            raise self._no("template_older", new=new.id, old=s.template.id)
        if not u.reason.strip():
            raise self._no("needs_reason", what="a template upgrade")
        keys = {spec.key for spec in new.tasks}
        dropped = [
            k for k, t in s.tasks.items() if k not in keys and t.status in (DONE, IN_PROGRESS)
        ]
        if dropped:
            raise self._no("template_drops", new=new.id, missing=", ".join(dropped))

    def upgrade_template(self, u: TemplateUpgrade, now: datetime) -> None:
        # Validators do not run on replay: the handler keeps the rule old histories ran with.
        self.check_upgrade(u, self.patched(PATCH_NEWER_TEMPLATES))
        s, old = self.s, self.s.template
        keys = {spec.key for spec in u.template.tasks}
        dropped = [k for k in s.tasks if k not in keys]
        for key in dropped:
            self._resolve_escalations(key, now)
            s.waiting.pop(key, None)
            s.held.pop(key, None)
            del s.tasks[key]
        s.template = u.template
        added = []
        for spec in u.template.tasks:
            task = s.tasks.get(spec.key)
            if task is None:
                task = TaskState(key=spec.key, updated_at=now, ladder_since=now)
                if spec.switching_vendor_only and not s.switching_vendor:
                    task.status = NOT_APPLICABLE
                else:
                    task.due_date = due_date(s.target_go_live, spec.due_offset_months)
                s.tasks[spec.key] = task
                added.append(spec.key)
            elif not is_complete(task):
                new_due = due_date(s.target_go_live, spec.due_offset_months)
                if new_due != task.due_date:
                    task.due_date = new_due
                    self._restart_ladder(task, now)
        s.tasks = {spec.key: s.tasks[spec.key] for spec in u.template.tasks}
        data = {"from": old.id, "to": u.template.id, "added": added, "dropped": dropped}
        self.record("template_upgraded", u.actor, {**data, "reason": u.reason}, now)
        self._after_change(now)

    # ---- joint procurement (共同調達) -------------------------------------------------------

    def check_hold(self, h: Holding) -> None:
        s = self.s
        other = next((p for p in s.held.values() if p != h.procurement_id), None)
        if other is not None:
            raise self._no("in_procurement", procurement=other)
        if VENDOR_GATE not in s.tasks:
            raise self._no("no_joint_steps", task=VENDOR_GATE)
        if is_complete(s.tasks[VENDOR_GATE]):
            raise self._no("vendor_selected")

    def hold(self, h: Holding, now: datetime) -> None:
        """The procurement carries these steps for this member from now on: the member's
        ladder stops chasing them and nobody moves them here. Joining twice is one join."""
        self.check_hold(h)
        s = self.s
        # Steps this project's procedure does not have are none of its business.
        keys = [
            k for k in h.keys if k in s.tasks and not is_complete(s.tasks[k]) and k not in s.held
        ]
        if not keys:
            return
        for key in keys:
            s.held[key] = h.procurement_id
            s.waiting.pop(key, None)
            self._resolve_escalations(key, now)
        self.record(
            "procurement_joined", h.actor, {"procurement_id": h.procurement_id, "keys": keys}, now
        )
        # What the procurement did before this member joined is done here too, as it is
        # for every member when the procurement selects its vendor.
        done = [k for k in keys if k in h.done]
        if done:
            self._complete_held(h.procurement_id, done, None, now)
            data = {"procurement_id": h.procurement_id, "keys": done}
            self.record("procurement_steps_done", h.actor, data, now)
            self._after_change(now)
        self._refresh_gates(now)  # a held gate awaits the procurement's approver, not ours
        s.updated_at = now

    def check_release(self, h: Holding) -> None:
        if h.procurement_id not in self.s.held.values():
            raise self._no("not_in_procurement", procurement=h.procurement_id)

    def release(self, h: Holding, now: datetime) -> None:
        """The member left: it procures alone from where it stands, its ladder starting over
        for the steps it takes back. Leaving twice is one leave."""
        s = self.s
        keys = [k for k, p in s.held.items() if p == h.procurement_id]
        if not keys:
            return
        for key in keys:
            del s.held[key]
            self._restart_ladder(s.tasks[key], now)
        self.record(
            "procurement_left", h.actor, {"procurement_id": h.procurement_id, "keys": keys}, now
        )
        self._after_change(now)

    def complete_jointly(self, c: JointCompletion, now: datetime) -> None:
        """The procurement's vendor selection was approved: the steps it held are done here,
        recorded as done by the procurement, and its vendor is this project's."""
        s = self.s
        keys = [k for k, p in s.held.items() if p == c.procurement_id]
        if not keys:
            return  # done already (a repeated call)
        self._complete_held(c.procurement_id, keys, c, now)
        self.record(
            "procurement_completed",
            c.actor,
            {"procurement_id": c.procurement_id, "keys": keys, "vendor_id": c.vendor_id},
            now,
        )
        if c.vendor_id != s.vendor_id:
            reason = f"joint procurement {c.procurement_id}"
            self._assign(VendorAssignment(c.vendor_id, reason, c.actor), now)
        self._after_change(now)

    def _complete_held(
        self, procurement_id: str, keys: list[str], c: JointCompletion | None, now: datetime
    ) -> None:
        """The procurement did these steps: done here, recorded as done by it."""
        s = self.s
        for key in keys:
            del s.held[key]
            task = s.tasks[key]
            self._set_status(task, DONE, now)
            task.note = f"共同調達（{procurement_id}）で実施"
            if s.template.task(key).gate and c is not None:
                task.decision = Decision(APPROVE, c.decided_by, now, c.comment)

    def acknowledge(self, ack: AcknowledgeInput, now: datetime) -> None:
        esc = self.check_ack(ack)
        esc.status = "acknowledged"
        esc.acknowledged_by = ack.actor
        esc.acknowledged_at = now
        self.record("escalation_acknowledged", ack.actor, {"escalation_id": esc.id}, now)

    # ---- the deadline and the ladder ------------------------------------------------------

    def check_deadline(self, now: datetime) -> bool:
        """Tell the PM, once per deadline, that the plan goes live after it."""
        s = self.s
        if s.target_go_live <= s.deadline or s.deadline_notice_for == s.deadline:
            return False
        if all_complete(s):
            return False
        # A system already live (registered so, or gone live since) went live when it did:
        # telling it the plan is late would be news of nothing it can change.
        went_live = GO_LIVE_TASK in s.tasks and s.tasks[GO_LIVE_TASK].status == DONE
        if went_live and self.patched(PATCH_LIVE_NOT_TOLD_LATE):
            return False
        s.deadline_notice_for = s.deadline
        self.record(
            "deadline_exceeded",
            "system",
            {"deadline": s.deadline.isoformat(), "target_go_live": s.target_go_live.isoformat()},
            now,
        )
        subject = f"【移行期限超過】{s.body_name} {s.business_name}"
        text = (
            f"{subject}: 本番移行予定日 {s.target_go_live.isoformat()} が移行期限 "
            f"{s.deadline.isoformat()} を過ぎています。特定移行支援システムに該当する場合は"
            "「移行期限の延長（特定移行支援システム）」を申告してください。"
        )
        data = {
            "deadline": s.deadline.isoformat(),
            "target_go_live": s.target_go_live.isoformat(),
            "extended_track": f"/api/v1/projects/{s.project_id}/extended-track",
        }
        note_id = f"{s.project_id}.deadline.{s.deadline.isoformat()}"
        self._notify(note_id, DEADLINE_NOTICE, ["pm"], subject, text, data)
        return True

    def advance_ladder(self, now: datetime) -> bool:
        """Raise every rung whose time has come; rungs already past when a task's ladder
        (re)started are passed over, except the latest, which says where the task stands."""
        s = self.s
        raised = False
        done = set(s.rungs_done)  # looked up for every rung of every task
        for spec in s.template.tasks:
            task = s.tasks[spec.key]
            if is_complete(task) or task.due_date is None or spec.key in s.held:
                s.waiting.pop(spec.key, None)
                continue
            due = task.due_date
            if spec.key not in s.waiting and earliest_rung(due, s.ladder) > now:
                continue  # no rung of it has come (most tasks on most turns)
            pending = [
                lvl
                for lvl in LEVELS
                if rung_instant(due, lvl, s.ladder) <= now and rung_key(task, lvl) not in done
            ]
            since = task.ladder_since or s.created_at
            stale = [lvl for lvl in pending if rung_instant(due, lvl, s.ladder) < since]
            actionable = dependencies_complete(s, spec)
            if spec.key in s.waiting and actionable:
                # Late since registration and now workable: where it stands, unless a newer
                # rung says so itself.
                level = s.waiting.pop(spec.key)
                if not pending:
                    self._raise(spec.key, spec.name, spec.owner, due, level, now, task.ladder_round)
                    raised = True
            # A task already late when its ladder started escalates once someone can act on
            # it, not while it waits behind an unfinished prerequisite.
            if (
                pending
                and stale == pending
                and not actionable
                and self.patched(PATCH_ACTIONABLE_STALE_RUNGS)
            ):
                s.rungs_done.extend(rung_key(task, lvl) for lvl in pending)
                s.waiting[spec.key] = stale[-1]
                continue
            for lvl in pending:
                s.rungs_done.append(rung_key(task, lvl))
                if lvl in stale and lvl != stale[-1]:
                    continue
                self._raise(spec.key, spec.name, spec.owner, due, lvl, now, task.ladder_round)
                raised = True
        if raised:
            s.updated_at = now
        return raised

    def summarise_outbox(self) -> None:
        """One notification per audience for the escalations waiting to be sent (a project
        registered late raises several at once), instead of one per rung."""
        s = self.s
        rungs = [n for n in self.outbox if n.kind.startswith("escalation.")]
        by_audience: dict[tuple[str, ...], list[Notification]] = {}
        for note in rungs:
            by_audience.setdefault(tuple(note.audience), []).append(note)
        self.outbox = [n for n in self.outbox if n not in rungs]
        for to, notes in by_audience.items():
            if len(notes) == 1:
                self.outbox.append(notes[0])
                continue
            names = "、".join(n.data["task_name"] for n in notes)
            subject = f"【期限超過 {len(notes)}件】{s.body_name} {s.business_name}"
            text = f"{subject}: {names}"
            data = {"escalations": [n.id for n in notes], "tasks": [n.data for n in notes]}
            note_id = f"{s.project_id}.summary.{notes[0].id}"
            self._notify(note_id, "escalation.summary", list(to), subject, text, data)

    def _raise(
        self, key: str, name: str, owner: str, due: date, level: str, now: datetime, round_: int
    ) -> None:
        s = self.s
        esc_id = f"{s.project_id}.{key}.{due.isoformat()}.{level}"
        # A ladder that started over on the same due date (a reopened task) must not reuse
        # the ids, and so the notification workflow ids, of its earlier round.
        if round_ and self.patched(PATCH_ESCALATION_ID_ROUND):
            esc_id += f".r{round_}"
        esc = Escalation(
            id=esc_id,
            task_key=key,
            level=level,
            audience=audience(
                level,
                owner,
                legacy_gate_overdue=(
                    level == EscalationLevel.OVERDUE
                    and owner == Owner.APPROVER
                    and not self.patched(PATCH_GATE_OVERDUE_TO_PM)
                ),
            ),
            due_date=due,
            raised_at=now,
        )
        s.escalations.append(esc)
        self.record(
            "escalation_raised",
            "system",
            {
                "escalation_id": esc.id,
                "task_key": key,
                "level": level,
                "audience": esc.audience,
                "due_date": due.isoformat(),
            },
            now,
        )
        subject = f"【{EscalationLevel(level).notice}】{s.body_name} {s.business_name}: {name}"
        text = f"{subject}（期限 {due.isoformat()}）"
        data = {"task_key": key, "task_name": name, "due_date": due.isoformat(), "level": level}
        self._notify(esc.id, f"escalation.{level}", list(esc.audience), subject, text, data)

    def _notify(
        self, id_: str, kind: str, to: list[str], subject: str, text: str, data: dict[str, Any]
    ) -> None:
        s = self.s
        where = (s.project_id, s.lg_code, s.prefecture, s.vendor_id)
        self.outbox.append(Notification(id_, *where, kind, to, subject, text, data))

    # ---- the record and what is derived from it -----------------------------------------

    def let_go_answer(self, report: MilestoneReport) -> bool:
        """Whether the read model's milestone for this key is one whose answer this project
        let go. Only then is it trusted: a row written by a workflow task that never
        committed (a crashed server) is newer than anything let go, and is no repeat."""
        seq = report.recorded_id[1:]
        return seq.isdigit() and 0 < int(seq) <= self.s.answers_let_go_through

    def let_go(self, journal_kept: int, answers_kept: int, escalations_kept: int = 200) -> None:
        """What a new run need not carry, so that a project's state stays bounded over the
        years: events and milestone answers the read model already holds, beyond the newest
        ``journal_kept`` and ``answers_kept`` (a repeat of an older key is recognised by
        the API from the read model and answered by ``report_milestone``), and resolved
        escalations beyond the newest ``escalations_kept`` (the read model keeps them; open
        and acknowledged ones stay, as they may yet change)."""
        s = self.s
        if s.escalations and self.s.projected_seq == self.s.seq:
            resolved = [e for e in s.escalations if e.status == "resolved"]
            gone = {e.id for e in resolved[: max(0, len(resolved) - escalations_kept)]}
            s.escalations = [e for e in s.escalations if e.id not in gone]
        kept = [e for e in s.journal if e.seq > s.projected_seq]  # not yet written: all stay
        written = [e for e in s.journal if e.seq <= s.projected_seq]
        s.journal = written[max(0, len(written) - journal_kept) :] + kept
        if len(s.milestones) > answers_kept:
            answers = list(s.milestones.items())
            for _, answer in answers[:-answers_kept]:
                seq = answer.milestone_id[1:]
                if seq.isdigit():
                    s.answers_let_go_through = max(s.answers_let_go_through, int(seq))
            s.milestones = dict(answers[-answers_kept:])

    def record(self, kind: str, actor: str, data: dict[str, Any], now: datetime) -> None:
        self.s.seq += 1
        self.s.journal.append(Event(self.s.seq, now, actor, kind, data))

    def unprojected_events(self) -> list[Event]:
        pending: list[Event] = []
        for ev in reversed(self.s.journal):
            if ev.seq <= self.s.projected_seq:
                break
            pending.append(ev)
        pending.reverse()
        return pending

    def snapshot(self, now: datetime, events: list[Event]) -> ProjectSnapshot:
        s = self.s
        complete = all_complete(s)
        terms = ForecastTerms() if complete else forecast_terms(s)
        return ProjectSnapshot(
            # Without what only the workflow needs (the journal, milestone answers, fired
            # rungs), which only grow.
            state=replace(s, journal=[], milestones={}, rungs_done=[]),
            stage=stage_of(s),
            health=health_of(s, now, terms),
            progress=progress_of([t.status for t in s.tasks.values()]),
            events=events,
            forecast_go_live=None if complete else forecast_go_live(s, now, terms),
            forecast_slip_days=terms.slip_days,
            forecast_slips_from=terms.slips_from,
        )

    # ---- state moves ----------------------------------------------------------------------

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
        """The cutover goes back to the go/no-go gate, which must be decided again."""
        gate_key = self.gate_before(task.key)
        assert gate_key is not None
        task.status = NOT_STARTED
        task.percent = None
        task.started_at = None
        task.updated_at = now
        if self.patched(PATCH_FAILED_CUTOVER_LADDER):
            self._restart_ladder(task, now)
        gate = self.s.tasks[gate_key]
        gate.status = NOT_STARTED
        gate.completed_at = None
        gate.percent = None
        gate.decision = None
        gate.updated_at = now
        self._restart_ladder(gate, now)

    def _refresh_gates(self, now: datetime) -> None:
        """A gate is in progress exactly while it awaits a decision."""
        for spec in self.s.template.tasks:
            if not spec.gate:
                continue
            gate = self.s.tasks[spec.key]
            if is_complete(gate):
                continue
            # A joint procurement decides a gate it holds: here it awaits nobody.
            held = spec.key in self.s.held and self.patched(PATCH_HELD_GATES)
            if dependencies_complete(self.s, spec) and not held:
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
        self.s.updated_at = now
        if all_complete(self.s) and self.s.completed_at is None:
            self.s.completed_at = now
            self.record("project_completed", "system", {}, now)

    def _apply_target(self, target: date, now: datetime) -> None:
        self.s.target_go_live = target
        for spec in self.s.template.tasks:
            task = self.s.tasks[spec.key]
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
        self.s.waiting.pop(task.key, None)
        self._resolve_escalations(task.key, now)
        prefix = f"{task.key}@"
        self.s.rungs_done = [r for r in self.s.rungs_done if not r.startswith(prefix)]

    def _resolve_escalations(self, task_key: str, now: datetime) -> None:
        for esc in self.s.escalations:
            if esc.task_key == task_key and esc.status != "resolved":
                esc.status = "resolved"
                esc.resolved_at = now
                self.record("escalation_resolved", "system", {"escalation_id": esc.id}, now)
