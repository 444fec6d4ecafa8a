"""Every rule of a migration, without a server: the core is plain Python.

The workflow tests prove that these rules survive crashes, replays and years of timers;
these prove the rules themselves, in milliseconds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from tests.workflows.helpers import judged_by, new_input, newer_template
from workflows.calendar import JST, is_working_day
from workflows.core import (
    CONFLICT,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    PATCH_ESCALATION_ID_ROUND,
    PATCH_NOT_APPLICABLE_RULE,
    AcknowledgeInput,
    ExtendedTrackInput,
    GateDecisionInput,
    Holding,
    JointCompletion,
    Migration,
    MilestoneReport,
    Refusal,
    ReplanInput,
    TaskChange,
    TaskProgress,
    TemplateUpgrade,
    VendorAssignment,
)
from workflows.ladder import rung_instant
from workflows.model import (
    DONE,
    IN_PROGRESS,
    NOT_APPLICABLE,
    NOT_STARTED,
    forecast_go_live,
    health_of,
    next_rung,
    progress_of,
    stage_of,
)
from workflows.procedure import DEFAULT_TEMPLATE
from workflows.procurement import (
    Membership,
    Procurement,
    ProcurementDecision,
    ProcurementOpening,
    ProcurementRefusal,
    ProcurementTaskChange,
)

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=JST)
FAR = date(2029, 12, 3)  # every due date years ahead: no rung is due at the start

BEFORE_VENDOR = judged_by("gate_migration_plan")


def project(target: date = FAR, switching: bool = False, deadline: date = FAR) -> Migration:
    opening = replace(new_input(target, switching_vendor=switching), deadline=deadline)
    m = Migration.start(opening, NOW)
    m.record_creation(NOW, {})
    return m


def pm(key: str, status: str = DONE, note: str | None = None) -> TaskChange:
    return TaskChange(key, status, "pm:suzuki", "pm", note)


def finish(m: Migration, *keys: str) -> None:
    for key in keys:
        m.change_task(TaskChange(key, DONE, "admin:ops", "admin"), NOW)


def approve(m: Migration, gate: str) -> None:
    m.decide_gate(GateDecisionInput(gate, "approve", "approver:sato"), NOW)


class refused:  # noqa: N801 - reads as a phrase: with refused("code", KIND)
    """``with refused("depends_on", CONFLICT):`` - the rule refuses with that code and kind."""

    def __init__(self, code: str, kind: str) -> None:
        self.code, self.kind = code, kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        assert isinstance(exc, Refusal), f"expected a refusal {self.code}, got {exc!r}"
        assert (exc.code, exc.kind) == (self.code, self.kind), (exc.code, exc.kind)
        assert exc.japanese and exc.message
        return True


def complete_before(m: Migration, key: str | None = None) -> None:
    """Complete every task before ``key`` in the handbook's order, approving the gates."""
    for spec in DEFAULT_TEMPLATE.tasks:
        if spec.key == key:
            return
        if m.s.tasks[spec.key].status in (DONE, NOT_APPLICABLE):
            continue
        if spec.gate:
            approve(m, spec.key)
        else:
            finish(m, spec.key)


def kinds(m: Migration) -> list[str]:
    return [e.kind for e in m.s.journal]


# ---- starting ---------------------------------------------------------------------------


def test_a_new_project_has_every_task_due_before_its_go_live_and_records_its_creation() -> None:
    m = project()
    assert kinds(m) == ["project_created"]
    assert m.s.tasks["cutover"].due_date == FAR
    assert all(
        t.due_date and t.due_date <= date(2030, 3, 3) for t in m.s.tasks.values() if t.due_date
    )
    assert m.s.tasks["setup_governance"].due_date < m.s.tasks["fit_gap_analysis"].due_date  # type: ignore[operator]


def test_switching_only_tasks_are_not_applicable_unless_the_body_switches_vendor() -> None:
    assert project().s.tasks["rfp"].status == NOT_APPLICABLE
    assert project(switching=True).s.tasks["rfp"].status == NOT_STARTED


# ---- task moves -------------------------------------------------------------------------


def test_a_task_cannot_be_done_before_its_prerequisites() -> None:
    m = project()
    with refused("depends_on", CONFLICT):
        m.change_task(pm("fit_gap_analysis"), NOW)
    assert m.s.tasks["fit_gap_analysis"].status == NOT_STARTED
    assert kinds(m) == ["project_created"]


def test_starting_and_finishing_a_task_records_who_and_when() -> None:
    m = project()
    view = m.change_task(pm("setup_governance", IN_PROGRESS), NOW)
    assert view.status == IN_PROGRESS and m.s.tasks["setup_governance"].started_at == NOW
    later = NOW + timedelta(days=3)
    m.change_task(pm("setup_governance", DONE, "体制決定"), later)
    task = m.s.tasks["setup_governance"]
    assert (task.status, task.completed_at, task.percent, task.note) == (
        DONE,
        later,
        100,
        "体制決定",
    )
    ev = m.s.journal[-1]
    assert (ev.kind, ev.actor, ev.data["from"], ev.data["to"]) == (
        "task_updated",
        "pm:suzuki",
        IN_PROGRESS,
        DONE,
    )


def test_each_role_moves_only_its_own_tasks() -> None:
    m = project()
    with refused("not_your_task", FORBIDDEN):
        m.change_task(TaskChange("setup_governance", IN_PROGRESS, "vendor:acme", "vendor"), NOW)
    with refused("not_your_task", FORBIDDEN):
        m.change_task(pm("system_setup", IN_PROGRESS), NOW)
    with refused("gate_is_decided", CONFLICT):
        m.change_task(TaskChange("go_no_go", DONE, "admin:ops", "admin"), NOW)
    with refused("no_task", NOT_FOUND):
        m.change_task(pm("nothing"), NOW)


def test_finished_tasks_stay_finished_and_statuses_are_checked() -> None:
    m = project()
    finish(m, "setup_governance")
    with refused("already", CONFLICT):
        m.change_task(pm("setup_governance", IN_PROGRESS), NOW)
    with refused("bad_status", INVALID):
        m.change_task(pm("current_system_survey", NOT_STARTED), NOW)
    m.change_task(pm("current_system_survey", IN_PROGRESS), NOW)
    with refused("already", CONFLICT):
        m.change_task(pm("current_system_survey", IN_PROGRESS), NOW)


def test_not_applicable_is_decided_when_the_task_is_reached_and_not_once_under_way() -> None:
    m = project()
    with refused("not_reached", CONFLICT):
        m.change_task(pm("fit_gap_analysis", NOT_APPLICABLE), NOW)
    finish(m, "setup_governance")
    m.change_task(pm("interface_inventory", IN_PROGRESS), NOW)
    with refused("under_way", CONFLICT):
        m.change_task(pm("interface_inventory", NOT_APPLICABLE), NOW)
    m.change_task(pm("current_system_survey", NOT_APPLICABLE), NOW)
    assert m.s.tasks["current_system_survey"].status == NOT_APPLICABLE


def test_histories_recorded_before_the_not_applicable_rule_keep_the_old_rule() -> None:
    m = project()
    m.patched = lambda name: name != PATCH_NOT_APPLICABLE_RULE
    m.change_task(pm("fit_gap_analysis", NOT_APPLICABLE), NOW)
    assert m.s.tasks["fit_gap_analysis"].status == NOT_APPLICABLE


def test_a_gate_awaits_its_decision_exactly_while_its_prerequisites_are_complete() -> None:
    m = project()
    assert m.s.tasks["gate_migration_plan"].status == NOT_STARTED
    finish(m, *BEFORE_VENDOR)
    assert m.s.tasks["gate_migration_plan"].status == IN_PROGRESS


def test_the_project_completes_when_every_task_is_complete() -> None:
    m = project()
    complete_before(m)
    assert m.s.completed_at == NOW
    assert kinds(m)[-1] == "project_completed"


# ---- gates ------------------------------------------------------------------------------


def test_approval_completes_a_gate_and_opens_what_follows() -> None:
    m = project()
    finish(m, *BEFORE_VENDOR)
    view = m.decide_gate(GateDecisionInput("gate_migration_plan", "approve", "approver:sato"), NOW)
    assert view.status == DONE and view.decision is not None and view.decision.by == "approver:sato"
    m.change_task(pm("rfi_preparation", IN_PROGRESS), NOW)


def test_rejection_needs_a_comment_and_reopens_the_work_it_judged() -> None:
    m = project()
    finish(m, *BEFORE_VENDOR)
    with refused("reject_needs_comment", INVALID):
        m.decide_gate(GateDecisionInput("gate_migration_plan", "reject", "approver:sato", " "), NOW)
    m.decide_gate(
        GateDecisionInput("gate_migration_plan", "reject", "approver:sato", "移行計画に不足"), NOW
    )
    plan = m.s.tasks["migration_plan"]
    assert (plan.status, plan.note, plan.completed_at) == (IN_PROGRESS, "移行計画に不足", None)
    assert m.s.tasks["gate_migration_plan"].status == NOT_STARTED
    assert m.s.journal[-1].data["reopened"] == ["migration_plan"]


def test_only_a_gate_awaiting_its_decision_can_be_decided() -> None:
    m = project()
    with refused("not_awaiting", CONFLICT):
        approve(m, "gate_migration_plan")
    with refused("no_gate", NOT_FOUND):
        approve(m, "migration_plan")
    with refused("bad_outcome", INVALID):
        m.decide_gate(GateDecisionInput("gate_migration_plan", "maybe", "approver:sato"), NOW)


# ---- vendor milestones and the failed cutover ---------------------------------------------


def report(key: str, task: str, status: str, percent: int | None = None) -> MilestoneReport:
    return MilestoneReport(key, task, status, "vendor:acme", percent, attempt_id=key)


def test_a_milestone_is_recorded_once_per_key_and_a_repeat_gets_the_first_answer() -> None:
    m = project()
    complete_before(m, "pia")  # the vendor's work is open from the contract on
    first = m.report_milestone(report("k1", "system_setup", IN_PROGRESS, 40), NOW)
    seq = m.s.seq
    again = m.report_milestone(report("k1", "system_setup", IN_PROGRESS, 90), NOW)
    assert again is first and first.milestone_id == f"m{seq}"
    assert m.s.seq == seq and m.s.tasks["system_setup"].percent == 40


def test_milestones_are_for_the_vendors_tasks_with_a_sane_percent() -> None:
    m = project()
    with refused("not_vendor_task", FORBIDDEN):
        m.report_milestone(report("k1", "setup_governance", IN_PROGRESS), NOW)
    with refused("percent_range", INVALID):
        m.report_milestone(report("k2", "system_setup", IN_PROGRESS, 101), NOW)
    with refused("bad_report", INVALID):
        m.report_milestone(report("k3", "system_setup", NOT_APPLICABLE), NOW)
    with refused("failed_only_cutover", INVALID):
        m.report_milestone(report("k4", "system_setup", "failed"), NOW)
    with refused("depends_on", CONFLICT):
        m.report_milestone(report("k5", "system_setup", DONE), NOW)
    assert m.s.milestones == {}


def test_a_failed_cutover_sends_the_project_back_to_go_no_go() -> None:
    m = project()
    with refused("nothing_to_fail", CONFLICT):
        m.report_milestone(report("k0", "cutover", "failed"), NOW)
    complete_before(m, "cutover")
    m.report_milestone(report("k1", "cutover", IN_PROGRESS, 50), NOW)
    m.report_milestone(report("k2", "cutover", "failed"), NOW)
    cutover, gate = m.s.tasks["cutover"], m.s.tasks["go_no_go"]
    assert (cutover.status, cutover.percent, cutover.ladder_round) == (NOT_STARTED, None, 1)
    assert (gate.decision, gate.ladder_round) == (None, 1)
    assert gate.status == IN_PROGRESS  # awaiting a new go/no-go at once
    assert m.s.journal[-1].data["status"] == "failed"


# ---- replans, the extended track and the deadline -----------------------------------------


def test_a_replan_moves_open_due_dates_and_restarts_their_ladders() -> None:
    m = project()
    finish(m, "setup_governance")
    kept = m.s.tasks["setup_governance"].due_date
    m.replan(ReplanInput(date(2030, 6, 3), "調達の遅れ", "pm:suzuki"), NOW)
    assert m.s.tasks["cutover"].due_date == date(2030, 6, 3)
    assert m.s.tasks["cutover"].ladder_round == 1
    assert m.s.tasks["setup_governance"].due_date == kept
    with refused("not_future", INVALID):
        m.replan(ReplanInput(date(2026, 11, 30), "x", "pm:suzuki"), NOW)
    with refused("past_limit", INVALID):
        m.replan(ReplanInput(date(2031, 4, 1), "x", "pm:suzuki"), NOW)
    with refused("needs_reason", INVALID):
        m.check_replan(ReplanInput(date(2030, 1, 6), " ", "pm:suzuki"), NOW, validating=True)


def test_a_plan_past_the_deadline_is_told_once_per_deadline() -> None:
    m = project(target=date(2028, 3, 1), deadline=date(2026, 3, 31))
    assert m.check_deadline(NOW) is True
    assert m.check_deadline(NOW) is False
    (note,) = m.outbox
    assert note.kind == "deadline.exceeded" and note.audience == ["pm"]
    assert "移行期限" in note.text and "千代田区" in note.subject


def test_the_extended_track_moves_the_deadline_and_the_plan() -> None:
    m = project(target=date(2028, 3, 1), deadline=date(2026, 3, 31))
    with refused("bad_ground", INVALID):
        m.declare_extended_track(
            ExtendedTrackInput("whim", date(2029, 3, 1), "理由", "pm:suzuki"), NOW
        )
    with refused("needs_reason", INVALID):
        m.declare_extended_track(ExtendedTrackInput("mainframe", date(2029, 3, 1), "", "p"), NOW)
    m.declare_extended_track(
        ExtendedTrackInput("mainframe", date(2029, 3, 1), "メインフレーム", "pm:suzuki"), NOW
    )
    assert (m.s.deadline, m.s.target_go_live) == (date(2029, 3, 1), date(2029, 3, 1))
    assert m.s.extended_track is not None and m.s.extended_track.ground == "mainframe"
    assert m.check_deadline(NOW) is False


# ---- the escalation ladder ----------------------------------------------------------------


def test_the_ladder_climbs_from_reminder_to_prefecture_on_working_mornings() -> None:
    m = project()
    due = m.s.tasks["setup_governance"].due_date
    assert due is not None
    seen = []
    for level in ("reminder", "overdue", "approver", "prefecture"):
        at = rung_instant(due, level, m.s.ladder)
        assert m.advance_ladder(at - timedelta(minutes=1)) is False
        assert m.advance_ladder(at) is True
        seen.append(m.s.escalations[-1])
    assert [e.level for e in seen] == ["reminder", "overdue", "approver", "prefecture"]
    assert [e.audience for e in seen] == [["pm"], ["pm"], ["approver"], ["prefecture"]]
    assert all(e.raised_at.astimezone(JST).hour == 9 for e in seen)
    assert [n.kind for n in m.outbox] == [f"escalation.{e.level}" for e in seen]


def test_rungs_already_past_when_a_ladder_starts_are_passed_over_except_the_latest() -> None:
    m = project(target=date(2027, 1, 4))  # some due dates already far behind
    assert m.advance_ladder(NOW) is True
    late = m.s.tasks["setup_governance"]
    levels = [e.level for e in m.s.escalations if e.task_key == late.key]
    assert levels == ["prefecture"]
    assert m.advance_ladder(NOW) is False  # each rung once


def test_finishing_a_task_resolves_its_escalations_and_acknowledging_needs_an_open_one() -> None:
    m = project(target=date(2027, 1, 4))
    m.advance_ladder(NOW)
    esc = next(e for e in m.s.escalations if e.task_key == "setup_governance")
    m.acknowledge(AcknowledgeInput(esc.id, "prefecture:tokyo"), NOW)
    assert (esc.status, esc.acknowledged_by) == ("acknowledged", "prefecture:tokyo")
    with refused("ack_closed", CONFLICT):
        m.acknowledge(AcknowledgeInput(esc.id, "prefecture:tokyo"), NOW)
    with refused("no_escalation", NOT_FOUND):
        m.acknowledge(AcknowledgeInput("nope", "prefecture:tokyo"), NOW)
    finish(m, "setup_governance")
    assert esc.status == "resolved" and esc.resolved_at == NOW


def test_a_reopened_task_climbs_a_new_ladder_with_new_escalation_ids() -> None:
    m = project(target=date(2027, 1, 4))
    finish(m, *BEFORE_VENDOR)
    m.decide_gate(GateDecisionInput("gate_migration_plan", "reject", "approver:sato", "不足"), NOW)
    m.advance_ladder(NOW)
    ids = [e.id for e in m.s.escalations if e.task_key == "migration_plan"]
    assert ids and all(i.endswith(".r1") for i in ids)
    old = project(target=date(2027, 1, 4))
    old.patched = lambda name: name != PATCH_ESCALATION_ID_ROUND
    finish(old, *BEFORE_VENDOR)
    old.decide_gate(
        GateDecisionInput("gate_migration_plan", "reject", "approver:sato", "不足"), NOW
    )
    old.advance_ladder(NOW)
    assert not any(e.id.endswith(".r1") for e in old.s.escalations)


# ---- what the rules say ---------------------------------------------------------------------


def test_refusals_say_what_is_wrong_in_english_and_in_japanese() -> None:
    m = project()
    with pytest.raises(Refusal) as caught:
        m.change_task(pm("fit_gap_analysis"), NOW)
    r = caught.value
    assert r.message == ("fit_gap_analysis depends on unfinished tasks: current_system_survey")
    assert (
        r.japanese == "「Fit&Gap分析」の前に終えるべきタスクがあります: 現行システム環境の基礎調査"
    )
    assert r.params == {"task": "fit_gap_analysis", "missing": "current_system_survey"}


# ---- the vendor, chosen in procurement --------------------------------------------------


def without_vendor() -> Migration:
    opening = replace(new_input(FAR), vendor_id=None)
    return Migration.start(opening, NOW)


def test_vendor_work_waits_for_a_vendor() -> None:
    m = without_vendor()
    complete_before(m, "pia")
    with refused("no_vendor", CONFLICT):
        m.change_task(TaskChange("system_setup", IN_PROGRESS, "admin:ops", "admin"), NOW)
    assert m.s.tasks["system_setup"].status == NOT_STARTED


def test_approving_vendor_selection_with_a_vendor_assigns_it() -> None:
    m = without_vendor()
    complete_before(m, "vendor_selection")
    with refused("vendor_not_here", INVALID):
        m.decide_gate(
            GateDecisionInput(
                "vendor_selection", "reject", "approver:sato", "高い", vendor_id="acme"
            ),
            NOW,
        )
    m.decide_gate(
        GateDecisionInput("vendor_selection", "approve", "approver:sato", vendor_id="acme"), NOW
    )
    assert m.s.vendor_id == "acme"
    ev = m.s.journal[-2]
    assert (ev.kind, ev.data["from"], ev.data["to"]) == ("vendor_assigned", None, "acme")


def test_a_vendor_is_replaced_with_a_reason_and_recorded() -> None:
    m = project()
    with refused("same_vendor", CONFLICT):
        m.assign_vendor(VendorAssignment("acme", "再契約", "pm:suzuki"), NOW)
    with refused("needs_reason", INVALID):
        m.assign_vendor(VendorAssignment("beta", " ", "pm:suzuki"), NOW)
    m.assign_vendor(VendorAssignment("beta", "契約解除のため", "pm:suzuki"), NOW)
    assert m.s.vendor_id == "beta"
    assert m.s.journal[-1].data == {"from": "acme", "to": "beta", "reason": "契約解除のため"}


# ---- a migration already under way -------------------------------------------------------


def under_way(progress: dict[str, TaskProgress], target: date = FAR) -> Migration:
    return Migration.start(replace(new_input(target), progress=progress), NOW)


def test_a_project_under_way_starts_where_it_stands() -> None:
    done_on = date(2026, 6, 1)
    progress = {k: TaskProgress(DONE, done_on) for k in judged_by("gate_migration_plan")}
    progress["gate_migration_plan"] = TaskProgress(DONE, date(2026, 7, 1))
    progress["rfi_preparation"] = TaskProgress(IN_PROGRESS)
    m = under_way(progress)
    gate = m.s.tasks["gate_migration_plan"]
    assert gate.status == DONE and gate.decision is not None
    assert (gate.decision.outcome, gate.decision.by) == ("approve", "on import")
    assert m.s.tasks["migration_plan"].completed_at == datetime(2026, 6, 1, tzinfo=JST)
    assert m.s.tasks["rfi_preparation"].status == IN_PROGRESS
    m.record_creation(NOW, progress)
    assert m.s.journal[-1].data["progress"]["migration_plan"] == {
        "status": DONE,
        "on": "2026-06-01",
    }


@pytest.mark.parametrize(
    ("progress", "code"),
    [
        ({"nothing": TaskProgress(DONE)}, "progress_task"),
        ({"setup_governance": TaskProgress("finished")}, "progress_status"),
        ({"setup_governance": TaskProgress(DONE, date(2027, 1, 1))}, "progress_future"),
        ({"current_system_survey": TaskProgress(DONE)}, "progress_order"),
        (
            {
                "setup_governance": TaskProgress(DONE, date(2026, 5, 1)),
                "current_system_survey": TaskProgress(DONE, date(2026, 4, 1)),
            },
            "progress_order",
        ),
        ({"gate_migration_plan": TaskProgress(IN_PROGRESS)}, "progress_gate"),
    ],
)
def test_progress_the_handbook_does_not_allow_is_refused(
    progress: dict[str, TaskProgress], code: str
) -> None:
    with refused(code, INVALID):
        under_way(progress)


def test_a_late_registration_escalates_only_what_someone_can_act_on_in_one_notice_each() -> None:
    m = project(target=date(2027, 6, 1))  # the first year's tasks are long overdue
    m.advance_ladder(NOW)
    late = {e.task_key for e in m.s.escalations}
    assert late == {"setup_governance"}  # the rest wait behind it
    wake = next_rung(m.s)
    assert wake is not None and wake > NOW  # the waiting ones do not keep the project awake
    m.summarise_outbox()
    assert len({tuple(n.audience) for n in m.outbox}) == len(m.outbox)
    finish(m, "setup_governance")
    later = NOW + timedelta(days=1)
    m.advance_ladder(later)
    now_late = {e.task_key for e in m.s.escalations if e.status == "open"}
    assert {"current_system_survey", "interface_inventory"} <= now_late
    assert "fit_gap_analysis" not in now_late  # still behind the survey


def test_summary_gathers_rungs_for_the_same_audience() -> None:
    m = project(target=date(2027, 6, 1))
    finish(m, "setup_governance")
    m.advance_ladder(NOW)
    assert len([n for n in m.outbox if n.kind.startswith("escalation.")]) == 2
    m.summarise_outbox()
    (note,) = m.outbox
    assert note.kind == "escalation.summary" and note.audience == ["prefecture"]
    assert "2件" in note.subject and "連携一覧の作成" in note.text


# ---- what is derived: stage, progress, health and the forecast --------------------------


def test_progress_follows_mics_formula() -> None:
    p = progress_of([DONE, DONE, NOT_APPLICABLE, IN_PROGRESS, NOT_STARTED])
    assert (p.done, p.in_progress, p.not_started, p.not_applicable) == (2, 1, 1, 1)
    assert (p.completion_rate, p.in_progress_rate, p.not_started_rate) == (0.6, 0.2, 0.2)
    assert progress_of([]).completion_rate == 0.0


def test_the_stage_is_that_of_the_first_open_task() -> None:
    m = project()
    assert stage_of(m.s) == "current_state"
    complete_before(m, "rfi_preparation")
    assert stage_of(m.s) == "procurement"
    complete_before(m)
    assert stage_of(m.s) == "completed"


def test_health_moves_from_on_track_to_at_risk_to_overdue() -> None:
    m = project(deadline=date(2031, 3, 31))
    assert health_of(m.s, NOW) == "on_track"
    due = m.s.tasks["setup_governance"].due_date
    assert due is not None
    reminder = rung_instant(due, "reminder", m.s.ladder)
    assert health_of(m.s, reminder) == "at_risk"  # due soon and not started
    assert health_of(m.s, rung_instant(due, "overdue", m.s.ladder)) == "overdue"
    late = project(target=date(2030, 6, 3), deadline=date(2026, 3, 31))
    assert health_of(late.s, NOW) == "at_risk"  # planned past its deadline


def test_the_forecast_slips_by_as_much_as_the_late_work() -> None:
    m = project(deadline=date(2031, 3, 31))
    assert forecast_go_live(m.s, NOW) == FAR
    due = m.s.tasks["setup_governance"].due_date
    assert due is not None
    a_month_late = datetime.combine(due + timedelta(days=30), datetime.min.time(), JST)
    slipped = forecast_go_live(m.s, a_month_late)
    # A month late: the go-live moves about a month, back to a working day (here past the
    # year-end closure to 28 December).
    assert FAR + timedelta(days=20) <= slipped <= FAR + timedelta(days=30)
    assert is_working_day(slipped)


# ---- joint procurement (共同調達) ----------------------------------------------------------

JOINT = ["rfi_preparation", "rfi", "rfi_analysis", "rfp", "vendor_selection"]


def held_project() -> Migration:
    m = project(target=date(2027, 6, 1))  # the procurement steps are due soon
    complete_before(m, "rfi_preparation")
    m.hold(Holding("kyodo", "pm:lead", JOINT), NOW)
    return m


def test_a_member_hands_its_joint_steps_over_and_nobody_moves_them_here() -> None:
    m = held_project()
    assert set(m.s.held) == {k for k in JOINT if m.s.tasks[k].status != NOT_APPLICABLE}
    with refused("held", CONFLICT):
        m.change_task(pm("rfi_preparation", IN_PROGRESS), NOW)
    with refused("vendor_by_procurement", CONFLICT):
        m.assign_vendor(VendorAssignment("acme", "自前で", "pm:x"), NOW)
    with refused("in_procurement", CONFLICT):
        m.check_hold(Holding("another", "pm:x", JOINT))
    m.hold(Holding("kyodo", "pm:lead", JOINT), NOW)  # joining twice is one join
    assert kinds(m).count("procurement_joined") == 1


def test_a_member_s_ladder_does_not_chase_what_the_procurement_holds() -> None:
    m = held_project()
    late = NOW + timedelta(days=400)
    m.advance_ladder(late)
    chased = {e.task_key for e in m.s.escalations}
    assert chased and not chased & set(m.s.held)  # budget_request and later are chased
    m.release(Holding("kyodo", "pm:lead"), late)  # given back: chased from there on
    m.advance_ladder(late + timedelta(days=30))
    assert {e.task_key for e in m.s.escalations} & set(JOINT)


def test_leaving_gives_the_steps_back_with_a_fresh_ladder() -> None:
    m = held_project()
    m.release(Holding("kyodo", "pm:lead"), NOW)
    assert not m.s.held
    m.change_task(pm("rfi_preparation", IN_PROGRESS), NOW)
    assert kinds(m)[-2:] == ["procurement_left", "task_updated"]
    with refused("not_in_procurement", CONFLICT):
        m.check_release(Holding("kyodo", "pm:lead"))


def test_the_procurement_s_selection_completes_the_steps_and_assigns_its_vendor() -> None:
    m = held_project()
    m.complete_jointly(JointCompletion("kyodo", "beta", "approver:lead", "proc"), NOW)
    assert not m.s.held and m.s.vendor_id == "beta"
    for key in JOINT:
        assert m.s.tasks[key].status in (DONE, NOT_APPLICABLE)
    gate = m.s.tasks["vendor_selection"]
    assert gate.decision is not None and gate.decision.by == "approver:lead"
    assert m.s.tasks["budget_request"].status == NOT_STARTED  # each member's own
    assert "vendor_assigned" in kinds(m)
    with refused("vendor_selected", CONFLICT):
        m.check_hold(Holding("later", "pm:x", JOINT))


def test_the_procurement_runs_its_steps_in_order_and_the_approver_names_the_vendor() -> None:
    opening = ProcurementOpening(
        "kyodo",
        "共同",
        "131016",
        "千代田区",
        "13",
        "resident_registry",
        "住民基本台帳",
        "pm:x",
        {"rfi_preparation": date(2026, 12, 10)},
    )
    p = Procurement.start(opening, NOW)
    with pytest.raises(ProcurementRefusal):
        p.change_task(ProcurementTaskChange("rfi", DONE, "pm:x"), NOW)  # before its RFI
    p.join(Membership("migration-a", "pm:x"), NOW)
    for key in JOINT[:-1]:
        p.change_task(ProcurementTaskChange(key, DONE, "pm:x"), NOW)
    assert p.s.tasks["vendor_selection"].status == IN_PROGRESS
    with pytest.raises(ProcurementRefusal):
        p.check_decision(ProcurementDecision("approve", "approver:y"))  # which vendor?
    assert p.decide(ProcurementDecision("reject", "approver:y", "仕様不足"), NOW) is None
    assert p.s.tasks["rfp"].status == IN_PROGRESS
    p.change_task(ProcurementTaskChange("rfp", DONE, "pm:x"), NOW)
    told = p.decide(ProcurementDecision("approve", "approver:y", "決定", "acme"), NOW)
    assert told is not None and told.vendor_id == "acme" and p.s.status == "selected"
    with pytest.raises(ProcurementRefusal):
        p.check_leave(Membership("migration-a", "pm:x"))
    # Its lead heard that the RFI material ran late (before it was done).
    late = Procurement.start(opening, NOW)
    assert late.advance_ladder(datetime(2026, 12, 20, 9, 0, tzinfo=JST))
    assert [n.audience for n in late.outbox] == [["pm"]]


# ---- another version of the template -----------------------------------------------------


def test_a_newer_template_keeps_tasks_by_key_adds_new_ones_and_drops_unstarted_ones() -> None:
    m = project()
    finish(m, "setup_governance")
    m.upgrade_template(TemplateUpgrade(newer_template(), "改訂", "pm:x"), NOW)
    assert m.s.template.version == "1.1"
    assert list(m.s.tasks)[4] == "security_review" and "training" not in m.s.tasks
    assert m.s.tasks["setup_governance"].status == DONE
    assert m.s.tasks["security_review"].due_date is not None
    assert kinds(m)[-1] == "template_upgraded"
    with refused("depends_on", CONFLICT):
        m.change_task(pm("security_review"), NOW)


def test_a_template_that_drops_work_done_or_under_way_is_refused() -> None:
    m = project()
    finish(m, "setup_governance")
    with refused("template_drops", CONFLICT):
        m.check_upgrade(TemplateUpgrade(newer_template("setup_governance"), "改訂", "pm:x"))
    with refused("template_same", CONFLICT):
        m.check_upgrade(TemplateUpgrade(newer_template(version="1.0"), "改訂", "pm:x"))
    other = replace(newer_template(), name="other")
    with refused("template_other", INVALID):
        m.check_upgrade(TemplateUpgrade(other, "改訂", "pm:x"))


# ---- bounded over years ------------------------------------------------------------------


def test_a_new_run_carries_only_the_newest_of_what_the_read_model_holds() -> None:
    m = project()
    complete_before(m, "system_setup")
    for n in range(5):
        m.report_milestone(report(f"k{n}", "system_setup", IN_PROGRESS, 10 * n), NOW)
    m.s.projected_seq = m.s.seq - 2  # the last two events are not written yet
    first = m.s.milestones["k0"]
    m.let_go(journal_kept=3, answers_kept=2)
    assert [e.seq for e in m.s.journal] == list(range(m.s.seq - 4, m.s.seq + 1))
    assert list(m.s.milestones) == ["k3", "k4"]
    # An old key the read model still knows is a repeat, and changes nothing.
    seq = m.s.seq
    again = m.report_milestone(
        replace(report("k0", "system_setup", IN_PROGRESS, 0), recorded_id=first.milestone_id),
        NOW,
    )
    assert again.duplicate and again.milestone_id == first.milestone_id and m.s.seq == seq
    # A row newer than what was let go (written by a workflow task that never committed,
    # before a crash) is no repeat: the report is recorded.
    stale = replace(report("k9", "system_setup", IN_PROGRESS, 90), recorded_id=f"m{seq + 7}")
    assert not m.report_milestone(stale, NOW).duplicate and m.s.seq > seq


# ---- a vendor's bulk feed ----------------------------------------------------------------


def test_a_batch_applies_each_report_in_order_and_a_refused_one_alone() -> None:
    from workflows.core import MilestoneBatch

    m = project()
    complete_before(m, "system_setup")
    batch = MilestoneBatch(
        [
            report("a", "system_setup", IN_PROGRESS, 40),
            report("b", "training", DONE),  # the municipality's task: refused alone
            report("c", "system_setup", DONE),
            report("d", "data_migration", IN_PROGRESS, 10),  # reached now that setup is done
        ]
    )
    outcomes = m.report_milestones(batch, NOW)
    assert [o.code or "ok" for o in outcomes] == ["ok", "not_vendor_task", "ok", "ok"]
    assert outcomes[1].kind == FORBIDDEN and outcomes[1].japanese
    assert m.s.tasks["system_setup"].status == DONE
    assert m.s.tasks["data_migration"].percent == 10
    seq = m.s.seq
    again = m.report_milestones(batch, NOW)  # the same feed again: nothing changes
    assert m.s.seq == seq
    assert [o.result.milestone_id for o in again if o.result] == [
        o.result.milestone_id for o in outcomes if o.result
    ]
