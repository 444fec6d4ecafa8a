"""The billable-action counter of benchmarks/billing.py against recorded histories: each kind
of action equals a count of the JSON's own events, done here independently."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from benchmarks import billing
from benchmarks.billing import (
    ACTIVITY,
    CHILD,
    MARKERS,
    SIGNAL,
    STARTED,
    TIMER,
    UPDATE,
    UPSERT,
    count_actions,
    schedule_runs_per_year,
    steps,
)

HISTORIES = Path(__file__).resolve().parent / "histories"


def load(name: str) -> tuple[dict[str, Any], WorkflowHistory]:
    text = (HISTORIES / name).read_text()
    return json.loads(text), WorkflowHistory.from_json(name, text)


def by_type(raw: dict[str, Any]) -> Counter[str]:
    return Counter(e["eventType"].removeprefix("EVENT_TYPE_") for e in raw["events"])


def test_digest_history_counts_as_its_events_say() -> None:
    # Two reminders of one project reach its body's digest in one wave (scenario_digest):
    # the second finds the digest started and signals it. The scenario queried the workflow
    # (describe) while it ran; a query leaves no event, and the count has nothing for it.
    raw, history = load("v10-digest.json")
    types = by_type(raw)
    markers = {
        e["markerRecordedEventAttributes"]["workflowTaskCompletedEventId"]
        for e in raw["events"]
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
    }
    assert not any("QUERY" in t for t in types)
    expected = {
        STARTED: types["WORKFLOW_EXECUTION_STARTED"],  # 1
        UPDATE: types["WORKFLOW_EXECUTION_UPDATE_ACCEPTED"],  # 2
        TIMER: types["TIMER_STARTED"],  # 3
        CHILD: 2 * types["START_CHILD_WORKFLOW_EXECUTION_INITIATED"],  # 2 x 3, one failed
        SIGNAL: types["SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED"],  # 1
        UPSERT: types["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"],  # 1
        MARKERS: len(markers),  # 3 workflow tasks with markers
    }
    counted = count_actions(history)
    assert {k: counted[k] for k in expected} == expected
    assert sum(counted.values()) == sum(expected.values()) == 17
    # Events that are free: workflow tasks, timers fired or cancelled, update completions,
    # children started/completed, the signal's confirmation.
    assert len(raw["events"]) == 57


def test_full_history_markers_are_one_action_per_workflow_task() -> None:
    raw, history = load("v10-full.json")
    types = by_type(raw)
    counted = count_actions(history)
    # 29 markers, each from a workflow task of its own: 29 actions. 29 updates, 25 timers,
    # 6 upserts, 1 digest started, the start: 92 of its 242 events.
    assert counted[MARKERS] == types["MARKER_RECORDED"] == 29
    assert counted[UPDATE] == types["WORKFLOW_EXECUTION_UPDATE_ACCEPTED"] == 29
    assert counted[TIMER] == types["TIMER_STARTED"] == 25
    assert sum(counted.values()) == 1 + 29 + 25 + 29 + 6 + 2 == 92
    # Completing the workflow is free.
    assert types["WORKFLOW_EXECUTION_COMPLETED"] == 1


def test_activities_count_every_attempt() -> None:
    raw, history = load("v10-joint.json")
    assert count_actions(history)[ACTIVITY] == by_type(raw)["ACTIVITY_TASK_STARTED"] == 4
    # History keeps only the last attempt's start: the third attempt means three actions.
    retried = HistoryEvent(event_id=9, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    retried.activity_task_started_event_attributes.attempt = 3
    assert count_actions([retried])[ACTIVITY] == 3


def test_starts_billed_once() -> None:
    # A child's own start is billed to its parent; a schedule's or a client's is not a child.
    child = HistoryEvent(event_id=1, event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    child.workflow_execution_started_event_attributes.parent_workflow_execution.workflow_id = "p"
    assert count_actions([child])[STARTED] == 0
    _, programme = load("v10-programme.json")
    assert count_actions(programme) == Counter({STARTED: 1, ACTIVITY: 1})
    # Continue-as-new is the next run's start.
    raw, long = load("v10-long.json")
    assert by_type(raw)["WORKFLOW_EXECUTION_CONTINUED_AS_NEW"] == 1
    assert count_actions(long)[STARTED] == 2


def test_steps_partition_the_history() -> None:
    _, history = load("v10-full.json")
    cut = steps(history)
    assert cut[0].kind == "creation"
    # The creation keeps its update (the API's Update-with-Start) and its deadline notice.
    assert cut[0].actions[UPDATE] == 1 and cut[0].actions[CHILD] == 2
    assert sum(len(s.events) for s in cut) == len(history.events)
    total: Counter[str] = Counter()
    for s in cut:
        total.update(s.actions)
    assert total == count_actions(history)
    kinds = Counter(s.kind for s in cut)
    assert kinds["gate decision"] >= 1 and kinds["milestone"] >= 1
    _, ladder = load("v10-ladder.json")
    assert any(s.kind == "rung" for s in steps(ladder))


def test_schedules_in_a_year() -> None:
    runs = schedule_runs_per_year(2026)
    assert runs["read-model reconciliation"] == 365
    assert runs["daily mail"] == 261
    assert runs["programme follower"] == 52_560


def test_report_prints_a_total() -> None:
    text = billing.report({})
    assert "total" in text and "national (34,600 projects)" in text
    assert "query (nightly reconciliation)" in text


def test_a_prefecture_s_gathering_counts_its_message_s_own_workflow() -> None:
    """The v12 gathering took two bodies' notices and handed their messages over in one
    local activity: counted as one message (the dearest case), with that message's own
    workflow start and channel lookup, and without the notices' signals."""
    raw, history = load("v12-gathering.json")
    events = by_type(raw)
    assert events["WORKFLOW_EXECUTION_SIGNALED"] == 2
    assert events["MARKER_RECORDED"] == 1 and events["ACTIVITY_TASK_SCHEDULED"] == 0
    cost = billing.digest_cost([history], "v12-gathering")
    assert cost.n == 1
    mean = cost.mean()
    assert mean[STARTED] == 2  # the gathering's and its message's
    assert mean[ACTIVITY] == 1 and mean[TIMER] == 1
    assert SIGNAL not in mean


def test_a_gathering_of_the_first_rules_counts_its_hand_over_activity_and_settling_timer() -> None:
    """The v13 gathering hands its messages on by an activity and stays a while after (a
    notice handed over again meanwhile is dropped): its window and settling timers, the
    hand-over activity and its message's own workflow with its channel lookup."""
    raw, history = load("v13-gathering.json")
    events = by_type(raw)
    assert events["WORKFLOW_EXECUTION_SIGNALED"] == 3  # two bodies, and one again
    assert events["MARKER_RECORDED"] == 0 and events["ACTIVITY_TASK_SCHEDULED"] == 1
    mean = billing.digest_cost([history], "v13-gathering").mean()
    assert mean[STARTED] == 2 and mean[ACTIVITY] == 2 and mean[TIMER] == 2
    assert MARKERS not in mean and SIGNAL not in mean


def test_a_rung_of_the_sixth_rules_is_told_by_its_projection_s_marker() -> None:
    """A v14 project hands a rung's notices over in the projection's own local activity:
    one marker a turn, and still told from a wake by what that marker recorded."""
    raw, history = load("v14-ladder.json")
    markers = [
        e["markerRecordedEventAttributes"]
        for e in raw["events"]
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
    ]
    types = {json.loads(_decoded(m["details"]["data"]))["activity_type"] for m in markers}
    assert types == {"project_migration"}  # no hand_over_notices of its own
    results = [json.loads(_decoded(m["details"]["result"])) for m in markers]
    assert "applied-and-handed-over" in results and "applied" in results
    cut = steps(history)
    rungs = [s for s in cut if s.kind == "rung"]
    assert rungs and all(s.actions[MARKERS] == 1 for s in rungs)
    _, v12 = load("v12-ladder.json")
    assert len(rungs) == sum(s.kind == "rung" for s in steps(v12))


def _decoded(payloads: dict[str, Any]) -> bytes:
    return base64.b64decode(payloads["payloads"][0]["data"])
