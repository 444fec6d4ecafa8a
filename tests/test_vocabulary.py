"""The vocabularies and the role table, without a server: every code has its Japanese label,
the codes are the ones the workflow uses, and the role table says what API.md says."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from enum import StrEnum
from pathlib import Path
from typing import get_args

import pytest

from api import auth
from api.schemas import MilestoneIn, TaskChangeIn
from workflows import ladder, model, procedure, roles
from workflows.roles import Action, Scope
from workflows.vocabulary import (
    VOCABULARIES,
    EscalationLevel,
    EscalationStatus,
    EventKind,
    Ground,
    Health,
    Owner,
    Role,
    Stage,
    TaskStatus,
    Vocabulary,
)

WORKFLOWS = Path(procedure.__file__).parent


def _codes(vocabulary: type[StrEnum]) -> list[str]:
    return [m.value for m in vocabulary]


# ---- labels --------------------------------------------------------------------------


@pytest.mark.parametrize("vocabulary", VOCABULARIES, ids=lambda v: v.__name__)
def test_every_code_has_a_label_of_its_own(vocabulary: type[Vocabulary]) -> None:
    for member in vocabulary:
        assert member.label.strip(), member
        assert member.label != member.value, member


def test_every_rung_has_a_notice() -> None:
    assert all(level.notice.strip() for level in EscalationLevel)


def test_labels_are_the_ones_users_already_read() -> None:
    assert TaskStatus.DONE.label == "完了済み"  # MIC's own word (DOMAIN.md)
    assert Stage.PROCUREMENT.label == "ベンダ調達"
    assert Health.AT_RISK.label == "要注意"
    assert EscalationLevel.PREFECTURE.label == "都道府県へ"
    assert EventKind.TASK_UPDATED.label == "タスク更新"


# ---- the codes are the workflow's ------------------------------------------------------


def test_statuses_are_the_models() -> None:
    assert _codes(TaskStatus) == list(model.STATUSES)
    assert {model.NOT_STARTED, model.IN_PROGRESS, model.DONE, model.NOT_APPLICABLE} == set(
        TaskStatus
    )
    assert model.COMPLETE == {TaskStatus.DONE, TaskStatus.NOT_APPLICABLE}


def test_grounds_owners_stages_and_levels_are_the_workflows() -> None:
    assert _codes(Ground) == list(model.EXTENDED_GROUNDS)
    assert _codes(Owner) == list(procedure.OWNERS)
    assert _codes(Stage) == [*procedure.STAGES, "completed"]
    assert {s.value: s.label for s in Stage} == procedure.STAGE_NAMES_JA
    assert _codes(EscalationLevel) == list(ladder.LEVELS)


_BY_NAME = {v.__name__: v for v in VOCABULARIES}


def _code(node: ast.AST) -> str | None:
    """The code a node spells, as a string ("done") or as a member (TaskStatus.DONE)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in _BY_NAME
    ):
        return str(_BY_NAME[node.value.id][node.attr].value)
    return None


def _returned_strings(module: object, function: str) -> set[str]:
    tree = ast.parse(inspect.getsource(getattr(module, function)))
    return {
        code
        for ret in ast.walk(tree)
        if isinstance(ret, ast.Return)
        for node in ast.walk(ret)
        if (code := _code(node)) is not None
    }


def test_health_is_what_the_model_computes() -> None:
    assert _returned_strings(model, "health_of") == set(_codes(Health))


def test_stage_completed_is_what_the_model_computes() -> None:
    assert _returned_strings(model, "stage_of") == {Stage.COMPLETED.value}


def test_event_kinds_are_those_the_workflow_records() -> None:
    recorded = set()
    for path in WORKFLOWS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("_record", "record")
                and node.args
            ):
                code = _code(node.args[0])
                assert code is not None, f"{path.name}:{node.lineno}: a kind not spelled out"
                recorded.add(code)
    assert recorded == set(_codes(EventKind))


def test_a_new_escalation_is_open() -> None:
    default = {f.name: f.default for f in dataclasses.fields(model.Escalation)}["status"]
    assert default == EscalationStatus.OPEN


def test_the_apis_status_subsets_come_from_the_vocabulary() -> None:
    assert set(get_args(TaskChangeIn.model_fields["status"].annotation)) < set(TaskStatus)
    milestone = set(get_args(MilestoneIn.model_fields["status"].annotation))
    assert milestone - {"failed"} < set(TaskStatus)


def test_the_ladder_addresses_only_known_roles() -> None:
    for level in EscalationLevel:
        for owner in Owner:
            assert set(roles.audience(level, owner)) <= set(Role)


# ---- the role table is API.md's --------------------------------------------------------

A = Action
# API.md "Roles and what they may do", with the endpoint table and its additions:
# admin: everything except deciding gates (four eyes); observer: read; prefecture:
# acknowledge escalations; pm: create projects, change municipality tasks, replan,
# declare the extended track, acknowledge the escalations addressed to it, manage its
# body's notification channels; approver: decide gates and acknowledge, nothing else;
# vendor: post milestones and change vendor tasks.
MAY: dict[str, set[Action]] = {
    "admin": {
        A.CREATE_PROJECT,
        A.CHANGE_TASK,
        A.MILESTONE,
        A.REPLAN,
        A.EXTENDED_TRACK,
        A.ACK,
        A.VENDORS,
        A.TOKENS,
        A.CHANNELS,
        A.ASSIGN_VENDOR,
        A.PROCURE,
        A.TEMPLATES,
        A.UPGRADE_TEMPLATE,
    },
    "observer": set(),
    # Additions: POST /procurements (prefecture, admin, pm of the lead body)
    "prefecture": {A.ACK, A.PROCURE},
    "pm": {
        A.CREATE_PROJECT,
        A.CHANGE_TASK,
        A.REPLAN,
        A.EXTENDED_TRACK,
        A.ACK,
        A.CHANNELS,
        A.ASSIGN_VENDOR,  # Additions: POST /projects/{id}/vendor (pm, admin)
        A.PROCURE,
        A.UPGRADE_TEMPLATE,  # Additions: POST /projects/{id}/template (pm, admin)
    },
    "approver": {A.DECIDE_GATE, A.ACK},
    "vendor": {A.CHANGE_TASK, A.MILESTONE, A.ACK},  # its own reminders and overdue notices
}
SCOPE = {
    "admin": Scope.ALL,
    "observer": Scope.ALL,
    "prefecture": Scope.PREFECTURE,
    "pm": Scope.LG_CODE,
    "approver": Scope.LG_CODE,
    "vendor": Scope.VENDOR,
}
# "pm (municipality tasks), vendor (vendor tasks)"; gates are the approver's to decide.
ACTS_FOR = {
    "admin": {"municipality", "vendor"},
    "observer": set(),
    "prefecture": set(),
    "pm": {"municipality"},
    "approver": {"approver"},
    "vendor": {"vendor"},
}
# API.md "Escalation audience", by the owner of the late task: an overdue gate is the pm's
# (the approver it is about heard the reminder and hears the next rung).
AUDIENCE = {
    ("reminder", "municipality"): ["pm"],
    ("reminder", "vendor"): ["vendor"],
    ("reminder", "approver"): ["approver"],
    ("overdue", "municipality"): ["pm"],
    ("overdue", "vendor"): ["pm", "vendor"],
    ("overdue", "approver"): ["pm"],
    **{("approver", owner): ["approver"] for owner in ("municipality", "vendor", "approver")},
    **{("prefecture", owner): ["prefecture"] for owner in ("municipality", "vendor", "approver")},
}


def test_the_roles_are_api_mds() -> None:
    assert _codes(Role) == list(MAY) == list(roles.ROLES)
    assert auth.ROLES == roles.ROLES


@pytest.mark.parametrize("role", list(MAY))
@pytest.mark.parametrize("action", list(Action))
def test_each_role_may_what_api_md_says(role: str, action: Action) -> None:
    expected = action in MAY[role]
    assert roles.may(role, action) is expected
    assert roles.may(role, action.value) is expected
    caller = auth.Caller(1, "x", role, lg_code="131016", prefecture="13", vendor_id="acme")
    assert caller.may(action) is expected


def test_four_eyes() -> None:
    doers = [r for r in roles.ROLES if roles.may(r, A.CHANGE_TASK) or roles.may(r, A.MILESTONE)]
    assert doers and not any(roles.may(r, A.DECIDE_GATE) for r in doers)
    assert [r for r in roles.ROLES if roles.may(r, A.DECIDE_GATE)] == ["approver"]


def test_an_unknown_role_may_nothing() -> None:
    assert not any(roles.may("root", a) for a in Action)
    assert roles.acts_for("root") == frozenset()


@pytest.mark.parametrize("role", list(MAY))
def test_each_role_sees_its_scope_and_acts_for_its_owners(role: str) -> None:
    assert roles.scope_of(role) is SCOPE[role]
    assert roles.acts_for(role) == ACTS_FOR[role]


def test_callers_see_only_their_scope() -> None:
    @dataclasses.dataclass
    class Row:
        lg_code: str = "131016"
        prefecture: str = "13"
        vendor_id: str | None = "acme"

    here, elsewhere = Row(), Row("011002", "01", "other")
    for role, scope in SCOPE.items():
        caller = auth.Caller(1, "x", role, lg_code="131016", prefecture="13", vendor_id="acme")
        assert caller.sees(here)
        assert caller.sees(elsewhere) is (scope is Scope.ALL)
        blind = auth.Caller(1, "x", role)  # a scoped token without its scope sees nothing
        assert blind.sees(here) is (scope is Scope.ALL)


def test_each_rung_addresses_whom_api_md_says() -> None:
    for (level, owner), expected in AUDIENCE.items():
        assert roles.audience(level, owner) == expected, (level, owner)
    assert len(AUDIENCE) == len(EscalationLevel) * len(Owner)
    assert roles.ADDRESSEES == {"pm", "vendor", "approver", "prefecture"}
