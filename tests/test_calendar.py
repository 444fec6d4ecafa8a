"""Working-day arithmetic against dates checked by hand on the Japanese calendar."""

from __future__ import annotations

from datetime import date

from workflows.calendar import add_months, add_working_days, due_date, is_working_day
from workflows.ladder import EscalationLadder, rung_day


def test_golden_week_and_new_year_are_not_working_days() -> None:
    for d in (
        date(2027, 4, 29),
        date(2027, 5, 3),
        date(2027, 5, 4),
        date(2027, 5, 5),
        date(2026, 12, 29),
        date(2026, 12, 31),
        date(2027, 1, 1),
        date(2027, 1, 4 - 1),
        date(2027, 1, 11),
    ):  # 成人の日
        assert not is_working_day(d), d
    assert is_working_day(date(2027, 4, 30))
    assert is_working_day(date(2027, 1, 4))


def test_due_date_on_a_holiday_moves_to_the_previous_working_day() -> None:
    # Go-live 2027-05-05 (こどもの日); an offset of 0 lands on it and moves back over GW.
    assert due_date(date(2027, 5, 5), 0) == date(2027, 4, 30)
    # 2027-01-03 is in the new-year closure: back to 2026-12-28.
    assert due_date(date(2027, 3, 3), -2) == date(2026, 12, 28)


def test_month_offsets_clamp_and_take_fractions() -> None:
    assert add_months(date(2027, 3, 31), -1) == date(2027, 2, 28)
    assert add_months(date(2027, 4, 1), -0.5) == date(2027, 3, 17)
    assert add_months(date(2027, 4, 1), 3) == date(2027, 7, 1)


def test_working_days_skip_holidays_both_ways() -> None:
    assert add_working_days(date(2027, 4, 28), 1) == date(2027, 4, 30)  # skips 昭和の日
    assert add_working_days(date(2027, 4, 30), 1) == date(2027, 5, 6)  # skips GW and weekend
    assert add_working_days(date(2027, 1, 4), -1) == date(2026, 12, 28)


def test_ladder_days() -> None:
    ladder = EscalationLadder()
    due = date(2027, 5, 6)
    assert rung_day(due, "reminder", ladder) == date(2027, 4, 23)  # over GW and 昭和の日
    assert rung_day(due, "overdue", ladder) == date(2027, 5, 7)
    assert rung_day(due, "approver", ladder) == date(2027, 5, 13)
    assert rung_day(due, "prefecture", ladder) == date(2027, 5, 20)
