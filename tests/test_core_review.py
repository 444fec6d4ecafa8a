"""Rules a review of the core found wrong, each pinned down as its users would notice it.

Plain Python like tests/test_core.py: health and forecast that go stale between wake-ups,
escalations whose audience cannot acknowledge them (or whose subject can silence them),
imported progress that breaks the task rules, joint procurement's late joiners and held
gates, a replaced vendor's late writes, a failed cutover's gate, template downgrades.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta

import pytest

from tests.test_core import (
    JOINT,
    NOW,
    approve,
    complete_before,
    finish,
    held_project,
    kinds,
    pm,
    project,
    refused,
    report,
)
from tests.workflows.helpers import new_input, newer_template
from workflows.calendar import JST
from workflows.core import (
    CONFLICT,
    FAILED,
    INVALID,
    NOT_FOUND,
    PATCH_GATE_OVERDUE_TO_PM,
    AcknowledgeInput,
    ExtendedTrackInput,
    GateDecisionInput,
    Holding,
    JointCompletion,
    Migration,
    TaskChange,
    TaskProgress,
    TemplateUpgrade,
    VendorAssignment,
    version_key,
)
from workflows.ladder import rung_instant
from workflows.model import (
    DONE,
    IN_PROGRESS,
    NOT_APPLICABLE,
    NOT_STARTED,
    awaiting_decision,
    forecast_go_live,
    forecast_on,
    forecast_terms,
    health_of,
    next_revaluation,
    next_rung,
)
from workflows.procedure import DEFAULT_TEMPLATE, ProcedureTemplate
from workflows.procurement import Membership, Procurement, ProcurementOpening, ProcurementTaskChange
from workflows.roles import Action, acknowledges, may


def at(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=JST)


def walk_wakes(m: Migration, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Run the project's clock as the workflow does (sleep to the next wake, climb the ladder,
    write what it holds) and read it every morning and evening in between as the lists do:
    the health written at the last wake, and the forecast worked out from the terms written
    then, must be what the project is on that day. Returns each wake and its health."""
    now, seen = start, []
    m.advance_ladder(now)
    while now < end:
        wakes = [w for w in (next_rung(m.s), next_revaluation(m.s, now)) if w is not None]
        wake = min(wakes, default=end)
        assert wake > now
        written_health, terms = health_of(m.s, now), forecast_terms(m.s)
        day = now.astimezone(JST).date()
        while True:
            day += timedelta(days=1)
            for probe in (at(day, 0, 0), at(day, 9, 30), at(day, 23, 59)):
                if probe >= min(wake, end):
                    break
                assert health_of(m.s, probe) == written_health, f"stale on {probe} ({wake})"
                read = forecast_on(m.s.target_go_live, terms, probe.date())
                assert read == forecast_go_live(m.s, probe), probe
            if at(day) >= min(wake, end):
                break
        now = wake
        m.advance_ladder(now)
        seen.append((now, health_of(m.s, now)))
    return seen


# ---- 1. health and forecast follow the clock ----------------------------------------------


def test_an_extended_track_project_is_at_risk_the_day_its_forecast_passes_the_deadline() -> None:
    """Target 2028-03-31 on the extended track, governance done early: the survey's planned
    start passes at the end of March, the forecast slips, and the project is at risk in
    April, weeks before its next rung (the survey's reminder in June)."""
    created = at(date(2026, 2, 2), 10)
    opening = replace(
        new_input(date(2028, 3, 31)),
        progress={"setup_governance": TaskProgress(DONE, date(2026, 2, 1))},
    )
    m = Migration.start(opening, created)
    m.declare_extended_track(
        ExtendedTrackInput("vendor_shortage", date(2028, 3, 31), "ベンダ不足", "pm:x"), created
    )
    assert health_of(m.s, created) == "on_track"
    assert next_rung(m.s) == rung_instant(
        m.s.tasks["current_system_survey"].due_date, "reminder", m.s.ladder
    )
    assert health_of(m.s, at(date(2026, 4, 15), 12)) == "at_risk"
    wakes = walk_wakes(m, created, at(date(2026, 7, 31)))
    first_risk = next(w for w, h in wakes if h == "at_risk")
    assert first_risk < at(date(2026, 4, 16))
    assert first_risk < next_rung(m.s) or first_risk.month < 6


def test_a_held_step_running_late_makes_its_member_overdue_on_time() -> None:
    """The procurement holds rfi_preparation (the member's ladder does not chase it): still
    the member reads overdue from the morning after its due date, not at its next rung."""
    m = held_project()
    due = m.s.tasks["rfi_preparation"].due_date
    assert due is not None
    walk_wakes(m, NOW, rung_instant(due, "overdue", m.s.ladder) + timedelta(days=40))
    assert health_of(m.s, rung_instant(due, "overdue", m.s.ladder)) == "overdue"


def test_an_untouched_project_is_never_stale_over_its_whole_life() -> None:
    m = project(target=date(2028, 9, 1), deadline=date(2028, 12, 28))
    walk_wakes(m, NOW, at(date(2029, 3, 1)))


def test_a_finished_project_needs_no_wake() -> None:
    m = project()
    complete_before(m)
    assert next_revaluation(m.s, NOW) is None


# ---- 2 and 3. who hears of a rung, and who may acknowledge it -----------------------------


def late_gate(m: Migration) -> str:
    complete_before(m, "gate_migration_plan")
    due = m.s.tasks["gate_migration_plan"].due_date
    assert due is not None
    m.advance_ladder(rung_instant(due, "overdue", m.s.ladder))
    return next(
        e.id
        for e in m.s.escalations
        if e.task_key == "gate_migration_plan" and e.level == "overdue"
    )


def test_a_vendor_acknowledges_the_escalations_addressed_to_it() -> None:
    assert may("vendor", Action.ACK)
    m = project(target=date(2027, 9, 1))
    complete_before(m, "system_setup")
    due = m.s.tasks["system_setup"].due_date
    assert due is not None
    m.advance_ladder(rung_instant(due, "approver", m.s.ladder))
    by_level = {e.level: e for e in m.s.escalations if e.task_key == "system_setup"}
    assert acknowledges("vendor", by_level["reminder"].audience, "reminder")
    assert acknowledges("vendor", by_level["overdue"].audience, "overdue")
    # ... but not the rung above it, which is about the vendor.
    assert not acknowledges("vendor", by_level["approver"].audience, "approver")


def test_a_late_gate_s_overdue_rung_goes_to_the_pm_and_its_approver_cannot_silence_it() -> None:
    m = project(target=date(2027, 9, 1))
    esc_id = late_gate(m)
    esc = next(e for e in m.s.escalations if e.id == esc_id)
    assert esc.audience == ["pm"]
    assert not acknowledges("approver", esc.audience, "overdue")
    assert acknowledges("pm", esc.audience, "overdue")
    m.acknowledge(AcknowledgeInput(esc_id, "pm:suzuki"), NOW)
    # An escalation raised under the former rule still names the approver: it may not
    # acknowledge it either.
    assert not acknowledges("approver", ["approver", "pm"], "overdue")
    assert acknowledges("approver", ["approver"], "approver")


def test_projects_started_under_the_former_rule_keep_its_audience_in_their_history() -> None:
    old = project(target=date(2027, 9, 1))
    old.patched = lambda name: name != PATCH_GATE_OVERDUE_TO_PM
    esc_id = late_gate(old)
    assert next(e for e in old.s.escalations if e.id == esc_id).audience == ["approver", "pm"]


# ---- 4 and 5. imported progress keeps the task rules --------------------------------------


def under_way(progress: dict[str, TaskProgress], switching: bool = False) -> Migration:
    opening = replace(new_input(date(2029, 12, 3), switching_vendor=switching), progress=progress)
    return Migration.start(opening, NOW)


def test_an_undated_done_has_no_date_and_does_not_come_after_its_dated_dependents() -> None:
    m = under_way(
        {
            "setup_governance": TaskProgress(DONE),
            "current_system_survey": TaskProgress(DONE, date(2024, 5, 1)),
        }
    )
    governance = m.s.tasks["setup_governance"]
    assert governance.status == DONE and governance.completed_at is None
    assert m.s.tasks["current_system_survey"].completed_at == at(date(2024, 5, 1))


def test_an_imported_not_applicable_waits_for_its_prerequisites_like_a_task_change() -> None:
    with refused("progress_not_reached", INVALID):
        under_way({"cutover": TaskProgress(NOT_APPLICABLE)})
    # Given with its prerequisites, it stands.
    progress = {
        spec.key: TaskProgress(DONE, date(2026, 6, 1))
        for spec in DEFAULT_TEMPLATE.tasks
        if spec.key not in ("rfp", "cutover", "post_go_live_review", "decommission")
    }
    m = under_way({**progress, "cutover": TaskProgress(NOT_APPLICABLE)})
    assert m.s.tasks["cutover"].status == NOT_APPLICABLE


def test_an_rfp_that_does_not_apply_cannot_be_imported_as_under_way() -> None:
    with refused("progress_not_applicable", INVALID):
        under_way({"rfp": TaskProgress(IN_PROGRESS)})
    m = under_way({"rfp": TaskProgress(IN_PROGRESS)}, switching=True)
    assert m.s.tasks["rfp"].status == IN_PROGRESS and m.s.tasks["rfp"].due_date is not None
    assert under_way({"rfp": TaskProgress(NOT_APPLICABLE)}).s.tasks["rfp"].due_date is None


# ---- 6 and 7. joint procurement: late joiners, held gates ---------------------------------


def opening() -> ProcurementOpening:
    return ProcurementOpening(
        "kyodo", "共同", "131016", "千代田区", "13", "resident_registry", "住民基本台帳", "pm:x"
    )


def test_a_member_that_joins_late_has_the_joint_steps_done_and_nothing_left_open() -> None:
    p = Procurement.start(opening(), NOW)
    p.join(Membership("migration-early", "pm:x"), NOW)
    for key in ("rfi_preparation", "rfi"):
        p.change_task(ProcurementTaskChange(key, DONE, "pm:x"), NOW)
    late = project(target=date(2027, 6, 1), switching=True)
    complete_before(late, "rfi_preparation")
    late.hold(p.holding(Membership("migration-late", "pm:y")), NOW)
    assert late.s.tasks["rfi_preparation"].status == DONE
    assert late.s.tasks["rfi"].status == DONE
    assert set(late.s.held) == {"rfi_analysis", "rfp", "vendor_selection"}
    late.complete_jointly(JointCompletion("kyodo", "beta", "approver:lead", "proc"), NOW)
    for key in JOINT:
        assert late.s.tasks[key].status == DONE, key
    # Nothing of the procurement's is chased after selection.
    late.advance_ladder(NOW + timedelta(days=400))
    assert not {e.task_key for e in late.s.escalations} & set(JOINT)


def test_a_gate_a_procurement_holds_does_not_await_the_member_s_approver() -> None:
    # A member that did its own RFI and budget request before joining: its vendor selection
    # was awaiting its approver, and is the procurement's to decide from the join on.
    m = project(target=date(2027, 6, 1))
    complete_before(m, "vendor_selection")
    assert m.s.tasks["vendor_selection"].status == IN_PROGRESS
    m.hold(Holding("kyodo", "pm:lead", JOINT), NOW)
    assert set(m.s.held) == {"vendor_selection"}
    gate = m.s.tasks["vendor_selection"]
    assert gate.status == NOT_STARTED
    assert not awaiting_decision(m.s, DEFAULT_TEMPLATE.task("vendor_selection"))
    with refused("held", CONFLICT):
        m.check_decision(GateDecisionInput("vendor_selection", "approve", "approver:x"))


def test_a_procedure_without_vendor_selection_cannot_join_and_says_why() -> None:
    template = ProcedureTemplate(
        "short",
        "1.0",
        [s for s in DEFAULT_TEMPLATE.tasks if s.stage in ("current_state",)],
    )
    m = Migration.start(replace(new_input(), template=template), NOW)
    with refused("no_joint_steps", CONFLICT):
        m.check_hold(Holding("kyodo", "pm:x", JOINT))


# ---- 8. a replaced vendor ------------------------------------------------------------------


def test_a_replaced_vendor_s_writes_are_refused_by_the_project_itself() -> None:
    m = project(target=date(2027, 9, 1))
    complete_before(m, "system_setup")
    queued = replace(report("k1", "system_setup", IN_PROGRESS, 10), vendor_id="acme")
    m.check_milestone(queued)  # acme is the vendor: fine
    m.assign_vendor(VendorAssignment("beta", "契約変更", "pm:x"), NOW)
    seq = m.s.seq
    with refused("not_your_project", NOT_FOUND):
        m.report_milestone(queued, NOW)
    with refused("not_your_project", NOT_FOUND):
        m.change_task(
            TaskChange("system_setup", IN_PROGRESS, "vendor:a", "vendor", None, "", "acme"), NOW
        )
    assert m.s.seq == seq
    m.report_milestone(replace(queued, idempotency_key="k2", vendor_id="beta"), NOW)
    assert m.s.tasks["system_setup"].status == IN_PROGRESS


# ---- 9. a failed cutover ------------------------------------------------------------------


def test_a_failed_cutover_reopens_go_no_go_with_no_percent() -> None:
    m = project()
    complete_before(m, "cutover")
    m.report_milestone(report("c1", "cutover", IN_PROGRESS, 50), NOW)
    m.report_milestone(report("c2", "cutover", FAILED), NOW)
    gate = m.s.tasks["go_no_go"]
    assert gate.status == IN_PROGRESS and gate.percent is None and gate.decision is None
    approve(m, "go_no_go")
    assert m.s.tasks["go_no_go"].percent == 100


# ---- 10. templates move forward only -------------------------------------------------------


def test_a_project_moves_only_to_a_newer_version_of_its_template() -> None:
    m = project()
    m.upgrade_template(TemplateUpgrade(newer_template(version="2.0"), "改訂", "pm:x"), NOW)
    with refused("template_older", CONFLICT):
        m.check_upgrade(TemplateUpgrade(newer_template(version="1.1"), "戻す", "pm:x"))
    with refused("template_older", CONFLICT):
        m.upgrade_template(TemplateUpgrade(newer_template(version="1.9"), "戻す", "pm:x"), NOW)
    assert m.s.template.version == "2.0" and kinds(m).count("template_upgraded") == 1
    m.upgrade_template(TemplateUpgrade(newer_template(version="2.0.1"), "修正", "pm:x"), NOW)
    assert m.s.template.version == "2.0.1"


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.0", "1.1"), ("1.9", "1.10"), ("1.10", "2.0"), ("2.0", "2.0.1"), ("2024", "2025.1")],
)
def test_versions_compare_part_by_part_as_numbers(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)


def test_pm_changes_still_work_after_the_vendor_check() -> None:
    m = project()
    m.change_task(pm("setup_governance", IN_PROGRESS), NOW)
    assert m.s.tasks["setup_governance"].status == IN_PROGRESS


# ---- bounded state: resolved escalations ride along no longer -----------------------------


def test_a_new_run_carries_open_escalations_and_only_the_newest_resolved_ones() -> None:
    m = project()
    for key in ("setup_governance", "current_system_survey", "interface_inventory"):
        due = m.s.tasks[key].due_date
        assert due is not None
        m.advance_ladder(rung_instant(due, "prefecture", m.s.ladder))  # every rung raised
        finish(m, key)  # ... and resolved
    late = m.s.tasks["fit_gap_analysis"].due_date
    assert late is not None
    m.advance_ladder(rung_instant(late, "overdue", m.s.ladder))  # open ones
    resolved = [e.id for e in m.s.escalations if e.status == "resolved"]
    still_open = [e.id for e in m.s.escalations if e.status == "open"]
    assert len(resolved) > 3 and still_open
    acked = still_open[0]
    m.acknowledge(AcknowledgeInput(acked, "pm:x"), NOW)
    m.s.projected_seq = m.s.seq  # all of it in the read model
    m.let_go(journal_kept=200, answers_kept=1000, escalations_kept=3)
    kept = [e.id for e in m.s.escalations]
    assert kept == resolved[-3:] + still_open
    assert next(e for e in m.s.escalations if e.id == acked).status == "acknowledged"
