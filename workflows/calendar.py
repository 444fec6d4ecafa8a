"""Japanese working-day arithmetic, pure and deterministic so workflow code can use it.

A working day is a weekday that is not a public holiday (``jpholiday``) and not one of the
year-end/new-year closing days (12/29-1/3) that every local government observes.
"""

from __future__ import annotations

import calendar as _cal
import functools
from datetime import date, datetime, time, timedelta, timezone

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import jpholiday

JST = timezone(timedelta(hours=9), "JST")

# 行政機関の休日: 12月29日から翌年1月3日まで (the closing days of public offices).
_YEAR_END_CLOSURE = {(12, 29), (12, 30), (12, 31), (1, 1), (1, 2), (1, 3)}


# Pure functions of their arguments, asked the same questions by every project's ladder on
# every wake-up: cached for the process (the sandbox shares this module, see worker.runner).
@functools.lru_cache(maxsize=65536)
def is_working_day(d: date) -> bool:
    if d.weekday() >= 5:
        return False
    if (d.month, d.day) in _YEAR_END_CLOSURE:
        return False
    return not jpholiday.is_holiday(d)


def previous_working_day(d: date) -> date:
    """``d`` itself when it is a working day, else the working day before it."""
    while not is_working_day(d):
        d -= timedelta(days=1)
    return d


@functools.lru_cache(maxsize=65536)
def add_working_days(d: date, n: int) -> date:
    """Move ``n`` working days from ``d`` (negative goes back); ``d`` need not be a working day."""
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    while remaining:
        d += timedelta(days=step)
        if is_working_day(d):
            remaining -= 1
    return d


def working_days_between(start: date, end: date) -> int:
    """Working days in (start, end]; negative when end is before start."""
    if end < start:
        return -working_days_between(end, start)
    count = 0
    d = start
    while d < end:
        d += timedelta(days=1)
        if is_working_day(d):
            count += 1
    return count


def add_months(d: date, months: float) -> date:
    """Shift by whole calendar months (day clamped to month end), fractions as 30-day months."""
    whole = int(months)
    frac = months - whole
    month_index = d.year * 12 + (d.month - 1) + whole
    year, month = divmod(month_index, 12)
    month += 1
    day = min(d.day, _cal.monthrange(year, month)[1])
    shifted = date(year, month, day)
    return shifted + timedelta(days=round(frac * 30))


def due_date(target_go_live: date, offset_months: float) -> date:
    """A task's planned due date: the offset from go-live, moved back to a working day."""
    return previous_working_day(add_months(target_go_live, offset_months))


def jst_today(now: datetime) -> date:
    return now.astimezone(JST).date()


def jst_midnight(d: date) -> datetime:
    """The instant a JST calendar day begins, as an aware datetime."""
    return datetime.combine(d, time(0, 0), tzinfo=JST)
