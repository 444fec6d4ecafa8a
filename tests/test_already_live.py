"""Systems already live register as they stand: a creation whose progress gives the cutover as
done goes in with the day it went live as its target go-live, in the past; without a done
cutover a past target is refused as before. The core alone, in milliseconds."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from tests.workflows.helpers import judged_by, new_input
from workflows import search_attributes as sa
from workflows.calendar import JST, due_date
from workflows.core import (
    DEADLINE_NOTICE,
    GO_LIVE_TASK,
    INVALID,
    PATCH_LIVE_NOT_TOLD_LATE,
    Migration,
    Refusal,
    ReplanInput,
    TaskChange,
    TaskProgress,
)
from workflows.migration import MigrationInput, start_attributes
from workflows.model import (
    DEFAULT_DEADLINE,
    DONE,
    IN_PROGRESS,
    NOT_APPLICABLE,
    NOT_STARTED,
    all_complete,
    health_of,
    next_rung,
    stage_of,
)
from workflows.procedure import DEFAULT_TEMPLATE

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=JST)
TODAY = date(2026, 12, 1)
LIVE_ON = date(2025, 10, 1)  # before the legal deadline
LATE_LIVE_ON = date(2026, 6, 1)  # after the legal deadline (2026-03-31)
AFTER_GO_LIVE = ("post_go_live_review", "decommission")


def went_live(on: date, cutover: TaskProgress | None = None) -> dict[str, TaskProgress]:
    """Progress of a system live since ``on``: every step before the cutover done a month
    earlier (the RFP does not apply: the body stays with its vendor), the cutover on ``on``."""
    before = on - timedelta(days=30)
    progress = {k: TaskProgress(DONE, before) for k in judged_by(GO_LIVE_TASK) if k != "rfp"}
    progress[GO_LIVE_TASK] = cutover or TaskProgress(DONE, on)
    return progress


def opening(target: date, progress: dict[str, TaskProgress]) -> MigrationInput:
    return replace(new_input(target), progress=progress)


def register(target: date, progress: dict[str, TaskProgress]) -> Migration:
    """As the API registers a project: the progress dated, the target checked, the start."""
    o = opening(target, progress)
    o.progress = Migration.live_progress(o, NOW)
    Migration.check_opening(o, NOW)
    m = Migration.start(o, NOW)
    m.record_creation(NOW, o.progress)
    return m


def refusal(target: date, progress: dict[str, TaskProgress]) -> Refusal:
    with pytest.raises(Refusal) as caught:
        register(target, progress)
    return caught.value


def test_a_system_already_live_registers_with_its_real_go_live_date_in_the_past() -> None:
    m = register(LIVE_ON, went_live(LIVE_ON))
    s = m.s
    assert s.target_go_live == LIVE_ON
    cutover = s.tasks[GO_LIVE_TASK]
    assert cutover.status == DONE
    assert cutover.completed_at == datetime(2025, 10, 1, tzinfo=JST)
    assert s.tasks["go_no_go"].decision is not None  # approved "on import"
    assert s.tasks["rfp"].status == NOT_APPLICABLE
    # Its open work is what follows the go-live: the stage is that of the first open task.
    assert [k for k, t in s.tasks.items() if t.status == NOT_STARTED] == list(AFTER_GO_LIVE)
    assert stage_of(s) == "cutover"
    assert s.journal[-1].kind == "project_created"
    assert s.journal[-1].data["progress"][GO_LIVE_TASK] == {"status": DONE, "on": "2025-10-01"}


def test_the_tasks_after_go_live_keep_their_offsets_from_the_real_go_live() -> None:
    m = register(LIVE_ON, went_live(LIVE_ON))
    for key in AFTER_GO_LIVE:
        spec = DEFAULT_TEMPLATE.task(key)
        assert m.s.tasks[key].due_date == due_date(LIVE_ON, spec.due_offset_months)
    review, decommission = (m.s.tasks[k].due_date for k in AFTER_GO_LIVE)
    assert review is not None and decommission is not None
    assert review < decommission < TODAY  # both due long ago


def test_late_work_after_go_live_is_treated_as_late_work_at_any_registration() -> None:
    m = register(LIVE_ON, went_live(LIVE_ON))
    assert health_of(m.s, NOW) == "overdue"
    m.advance_ladder(NOW)
    # The review can be worked on: it escalates once, at the rung it has reached; the
    # decommissioning waits behind it and escalates when the review is done.
    assert [(e.task_key, e.level) for e in m.s.escalations] == [
        ("post_go_live_review", "prefecture")
    ]
    assert "decommission" in m.s.waiting
    wake = next_rung(m.s)
    assert wake is None or wake > NOW
    m.change_task(TaskChange("post_go_live_review", DONE, "pm:suzuki", "pm"), NOW)
    later = NOW + timedelta(hours=1)
    m.advance_ladder(later)
    open_ = {e.task_key for e in m.s.escalations if e.status == "open"}
    assert open_ == {"decommission"}


def test_a_system_live_with_everything_done_is_completed_at_once() -> None:
    progress = went_live(LIVE_ON)
    progress["post_go_live_review"] = TaskProgress(DONE, date(2025, 11, 1))
    progress["decommission"] = TaskProgress(DONE, date(2026, 1, 10))
    m = register(LIVE_ON, progress)
    assert all_complete(m.s)
    assert stage_of(m.s) == "completed" and health_of(m.s, NOW) == "completed"
    assert not m.check_deadline(NOW)
    assert not m.advance_ladder(NOW) and not m.s.escalations
    assert next_rung(m.s) is None


def test_a_cutover_given_done_without_a_date_went_live_on_the_target() -> None:
    m = register(LIVE_ON, went_live(LIVE_ON, TaskProgress(DONE)))
    assert m.s.tasks[GO_LIVE_TASK].completed_at == datetime(2025, 10, 1, tzinfo=JST)
    assert m.s.journal[-1].data["progress"][GO_LIVE_TASK]["on"] == "2025-10-01"


def test_the_target_may_be_today_for_a_system_that_went_live_today() -> None:
    m = register(TODAY, went_live(TODAY))
    assert m.s.target_go_live == TODAY


@pytest.mark.parametrize(
    ("progress", "code"),
    [
        ({}, "not_future_unless_live"),
        (went_live(LIVE_ON, TaskProgress(IN_PROGRESS)), "not_future_unless_live"),
        (
            {k: v for k, v in went_live(LIVE_ON).items() if k != GO_LIVE_TASK},
            "not_future_unless_live",
        ),
        (went_live(LIVE_ON, TaskProgress(DONE, date(2025, 10, 3))), "live_on_cutover"),
    ],
    ids=["nothing", "cutover-under-way", "no-cutover", "another-date"],
)
def test_a_past_target_without_a_cutover_done_on_that_date_is_refused(
    progress: dict[str, TaskProgress], code: str
) -> None:
    r = refusal(LIVE_ON, progress)
    assert (r.code, r.kind) == (code, INVALID)
    assert r.message.startswith("target_go_live:")  # the API names the field from it
    assert "稼働" in r.japanese


def test_a_live_system_s_cutover_follows_its_prerequisites_and_is_not_in_the_future() -> None:
    # go/no-go decided after the day it went live
    progress = went_live(LIVE_ON)
    progress["go_no_go"] = TaskProgress(DONE, LIVE_ON + timedelta(days=1))
    assert refusal(LIVE_ON, progress).code == "progress_order"
    # a cutover with nothing before it
    assert refusal(LIVE_ON, {GO_LIVE_TASK: TaskProgress(DONE, LIVE_ON)}).code == "progress_order"
    # a go-live tomorrow is a plan, not a system already live: the cutover cannot be done
    tomorrow = TODAY + timedelta(days=1)
    assert refusal(tomorrow, went_live(tomorrow)).code == "progress_future"


def test_a_plan_still_goes_live_in_the_future_and_by_the_limit() -> None:
    Migration.check_opening(opening(date(2028, 4, 1), {}), NOW)
    with pytest.raises(Refusal) as caught:
        Migration.check_opening(opening(date(2031, 4, 1), {}), NOW)
    assert caught.value.code == "past_limit"


def test_a_system_live_after_the_legal_deadline_is_not_told_it_is_late() -> None:
    m = register(LATE_LIVE_ON, went_live(LATE_LIVE_ON))
    assert m.s.target_go_live > m.s.deadline == DEFAULT_DEADLINE
    assert not m.check_deadline(NOW)
    assert m.s.deadline_notice_for is None
    assert not [n for n in m.outbox if n.kind == DEADLINE_NOTICE]
    assert not [e for e in m.s.journal if e.kind == "deadline_exceeded"]
    # A plan past the deadline, not yet live, is still told.
    plan = Migration.start(new_input(date(2027, 6, 1)), NOW)
    assert plan.check_deadline(NOW)
    assert [n.kind for n in plan.outbox] == [DEADLINE_NOTICE]


def test_a_system_gone_live_and_replanned_past_the_deadline_is_not_told_either() -> None:
    m = register(LIVE_ON, went_live(LIVE_ON))
    m.replan(ReplanInput(date(2027, 6, 1), "旧システム停止の延期", "pm:suzuki"), NOW)
    assert not m.check_deadline(NOW)


def test_histories_recorded_before_the_rule_keep_the_notice() -> None:
    m = register(LATE_LIVE_ON, went_live(LATE_LIVE_ON))
    m.patched = lambda name: name != PATCH_LIVE_NOT_TOLD_LATE
    assert m.check_deadline(NOW)
    assert [n.kind for n in m.outbox] == [DEADLINE_NOTICE]


@pytest.mark.parametrize("on", [LIVE_ON, LATE_LIVE_ON], ids=["in-time", "after-deadline"])
def test_the_start_attributes_are_those_of_the_first_turn(on: date) -> None:
    o = opening(on, went_live(on))
    o.progress = Migration.live_progress(o, NOW)
    attrs = start_attributes(o, NOW)
    m = Migration.start(o, NOW)
    m.record_creation(NOW, o.progress)
    m.check_deadline(NOW)
    m.advance_ladder(NOW)
    assert attrs.get(sa.STAGE) == stage_of(m.s) == "cutover"
    assert attrs.get(sa.HEALTH) == health_of(m.s, NOW)
    target = attrs.get(sa.TARGET_GO_LIVE)
    assert target is not None and target.date() == on
