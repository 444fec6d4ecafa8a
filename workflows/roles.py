"""The role table of API.md, in one place: what each role sees, writes and acts for, and
whom each rung of the escalation ladder addresses.

The API asks it before calling a workflow and the workflow asks it again, so both enforce
the same rule. Pure: workflow code may import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from workflows.vocabulary import EscalationLevel, Owner, Role


class Action(enum.StrEnum):
    """A write a role may be allowed; reading is bounded by the role's scope instead."""

    CREATE_PROJECT = "create_project"
    CHANGE_TASK = "change_task"
    MILESTONE = "milestone"
    REPLAN = "replan"
    EXTENDED_TRACK = "extended_track"
    DECIDE_GATE = "decide_gate"
    ACK = "ack"
    ASSIGN_VENDOR = "assign_vendor"
    VENDORS = "vendors"
    TOKENS = "tokens"
    CHANNELS = "channels"
    PROCURE = "procure"  # set up a joint procurement, or manage its members
    TEMPLATES = "templates"  # store procedure templates
    UPGRADE_TEMPLATE = "upgrade_template"  # move a project to a newer version of its template


class Scope(enum.StrEnum):
    """Which projects a role sees: all, or those of the one prefecture, local body (lg_code)
    or vendor its token names."""

    ALL = "all"
    PREFECTURE = "prefecture"
    LG_CODE = "lg_code"
    VENDOR = "vendor"


@dataclass(frozen=True)
class RoleRule:
    scope: Scope
    # What the role may write, besides reading what its scope shows.
    writes: frozenset[Action]
    # Whose tasks it works on: changes them, or decides them when they are gates.
    acts_for: frozenset[Owner]


_A = Action
_NONE: frozenset[Action] = frozenset()

# Four eyes: those who do the work never sign it off, so no role that changes tasks
# decides gates, and the approver changes nothing else.
ROLE_TABLE: dict[str, RoleRule] = {
    Role.ADMIN: RoleRule(
        Scope.ALL,
        frozenset(Action) - {_A.DECIDE_GATE},
        frozenset({Owner.MUNICIPALITY, Owner.VENDOR}),
    ),
    Role.OBSERVER: RoleRule(Scope.ALL, _NONE, frozenset()),
    Role.PREFECTURE: RoleRule(Scope.PREFECTURE, frozenset({_A.ACK, _A.PROCURE}), frozenset()),
    Role.PM: RoleRule(
        Scope.LG_CODE,
        frozenset(
            {
                _A.CREATE_PROJECT,
                _A.CHANGE_TASK,
                _A.REPLAN,
                _A.EXTENDED_TRACK,
                _A.ACK,
                _A.CHANNELS,
                _A.ASSIGN_VENDOR,
                _A.PROCURE,
                _A.UPGRADE_TEMPLATE,
            }
        ),
        frozenset({Owner.MUNICIPALITY}),
    ),
    Role.APPROVER: RoleRule(
        Scope.LG_CODE, frozenset({_A.DECIDE_GATE, _A.ACK}), frozenset({Owner.APPROVER})
    ),
    # The vendor hears of its own late tasks, and says it has (acknowledges).
    Role.VENDOR: RoleRule(
        Scope.VENDOR, frozenset({_A.CHANGE_TASK, _A.MILESTONE, _A.ACK}), frozenset({Owner.VENDOR})
    ),
}
ROLES: tuple[Role, ...] = tuple(Role)

_L = EscalationLevel
# Whom each rung addresses, by the owner of the late task: the owner first, then up to the
# prefecture. The order is kept in each escalation's stored audience.
LADDER_AUDIENCE: dict[str, dict[str, tuple[Role, ...]]] = {
    _L.REMINDER: {
        Owner.MUNICIPALITY: (Role.PM,),
        Owner.VENDOR: (Role.VENDOR,),
        Owner.APPROVER: (Role.APPROVER,),
    },
    # A late gate is the PM's to chase: the approver it is about heard the reminder and
    # hears the next rung, and cannot silence this one.
    _L.OVERDUE: {
        Owner.MUNICIPALITY: (Role.PM,),
        Owner.VENDOR: (Role.PM, Role.VENDOR),
        Owner.APPROVER: (Role.PM,),
    },
    _L.APPROVER: {owner: (Role.APPROVER,) for owner in Owner},
    _L.PREFECTURE: {owner: (Role.PREFECTURE,) for owner in Owner},
}
# Whom a late gate's overdue rung addressed before it went to the PM alone: escalations
# raised then keep it, and projects started then raise it until their history moves on.
LEGACY_GATE_OVERDUE: tuple[Role, ...] = (Role.APPROVER, Role.PM)
# The roles each rung may address, whoever owns the task.
ADDRESSED_AT: dict[str, frozenset[Role]] = {
    level: frozenset(role for roles in by_owner.values() for role in roles)
    for level, by_owner in LADDER_AUDIENCE.items()
}
# The roles some rung addresses (admin and observer are never told).
ADDRESSEES: frozenset[Role] = frozenset(
    role for by_owner in LADDER_AUDIENCE.values() for roles in by_owner.values() for role in roles
)


def may(role: str, action: str) -> bool:
    """Whether ``role`` may perform the write ``action``; an unknown role may do nothing."""
    rule = ROLE_TABLE.get(role)
    return rule is not None and action in rule.writes


def acts_for(role: str) -> frozenset[Owner]:
    """The task owners whose tasks ``role`` works on (none for an unknown role)."""
    rule = ROLE_TABLE.get(role)
    return rule.acts_for if rule is not None else frozenset()


def scope_of(role: str) -> Scope:
    """Which projects ``role`` sees; KeyError for an unknown role."""
    return ROLE_TABLE[role].scope


def oversees(role: str) -> bool:
    """Whether ``role`` reads across many bodies without working on their projects (MIC's
    observers, a prefecture): it starts from the roll-up, not from a list of projects."""
    rule = ROLE_TABLE[role]
    return rule.scope in (Scope.ALL, Scope.PREFECTURE) and Action.CREATE_PROJECT not in rule.writes


def acknowledges(role: str, audience: list[str], level: str) -> bool:
    """Whether ``role`` may acknowledge an escalation of rung ``level`` told to ``audience``:
    its audience, and admin; whoever it is about cannot silence the rung above them (an
    approver told of its own late gate by an older rule does not acknowledge it either)."""
    if role == Role.ADMIN:
        return True
    return role in audience and role in ADDRESSED_AT.get(level, frozenset())


def audience(level: str, owner: str, legacy_gate_overdue: bool = False) -> list[str]:
    """Who hears of rung ``level`` of a task owned by ``owner``, as plain codes."""
    if legacy_gate_overdue and level == _L.OVERDUE and owner == Owner.APPROVER:
        return [role.value for role in LEGACY_GATE_OVERDUE]
    return [role.value for role in LADDER_AUDIENCE[level][owner]]
