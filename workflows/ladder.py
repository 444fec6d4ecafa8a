"""The escalation ladder: when each rung of a task's deadline fires, and to whom.

Rungs fire at 09:00 JST on working days. ``reminder`` fires N working days before the due
date; ``overdue`` on the first working morning after the due date (the task is late from
then on); ``approver`` and ``prefecture`` N working days after the due date.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time

from workflows.calendar import JST, add_working_days

LEVELS: tuple[str, ...] = ("reminder", "overdue", "approver", "prefecture")
FIRE_AT = time(9, 0)


@dataclass
class EscalationLadder:
    """Offsets in working days; one configuration per deployment, pinned per project."""

    reminder_days_before: int = 5
    approver_days_after: int = 5
    prefecture_days_after: int = 10


def rung_day(due: date, level: str, ladder: EscalationLadder) -> date:
    if level == "reminder":
        return add_working_days(due, -ladder.reminder_days_before)
    if level == "overdue":
        return add_working_days(due, 1)
    if level == "approver":
        return add_working_days(due, ladder.approver_days_after)
    if level == "prefecture":
        return add_working_days(due, ladder.prefecture_days_after)
    raise ValueError(level)


def rung_instant(due: date, level: str, ladder: EscalationLadder) -> datetime:
    return _rung_instant(
        due,
        level,
        ladder.reminder_days_before,
        ladder.approver_days_after,
        ladder.prefecture_days_after,
    )


# Asked for every rung of every open task on each of a project's turns, and the same few
# thousand questions by every project: a pure function of its arguments, cached for the
# process (a ladder is mutable, so its offsets make the key).
@functools.lru_cache(maxsize=65536)
def _rung_instant(due: date, level: str, before: int, approver: int, prefecture: int) -> datetime:
    ladder = EscalationLadder(before, approver, prefecture)
    return datetime.combine(rung_day(due, level, ladder), FIRE_AT, tzinfo=JST)


def earliest_rung(due: date, ladder: EscalationLadder) -> datetime:
    """The first instant any rung of a task due on ``due`` fires."""
    return _earliest_rung(
        due, ladder.reminder_days_before, ladder.approver_days_after, ladder.prefecture_days_after
    )


@functools.lru_cache(maxsize=65536)
def _earliest_rung(due: date, before: int, approver: int, prefecture: int) -> datetime:
    return min(_rung_instant(due, level, before, approver, prefecture) for level in LEVELS)
