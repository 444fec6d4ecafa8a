"""A project's go-live month as the read model stores it, so that a vendor's load by month is
an indexed count instead of a date computation over every project of the country.

A month is ``year * 12 + month - 1``. A project went live in ``live_month`` (the JST month its
cutover was done, or, without a cutover, the month it completed). Until then it goes live in
the month of its forecast (``workflows.model.forecast_on``), which the read model keeps as
three terms written with the project:

- ``forecast_month``: the forecast's month as long as time alone does not move it;
- ``forecast_moves_from``: the first day on which each passing day moves the forecast by a
  day (None: never), from then on the forecast is the working day on or before ``today +
  forecast_offset`` (``forecast_offset`` = target less the day the slip started from).

Before ``forecast_moves_from`` the month is ``forecast_month``; from it on it is the month of
the working day on or before ``today + forecast_offset``, which a reader works out for the
months it asks about (``moving_month_bounds``). Both are exact on any day, with no job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from workflows.calendar import JST, previous_working_day


def month_of(d: date) -> int:
    return d.year * 12 + d.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def jst_month(at: datetime) -> int:
    return month_of(at.astimezone(JST).date())


@dataclass(frozen=True)
class ForecastMonth:
    month: int
    moves_from: date | None = None
    offset: int | None = None


def forecast_month(
    target: date,
    forecast_go_live: date | None,
    slip_days: int | None,
    slips_from: date | None,
) -> ForecastMonth:
    """The stored terms of a project's forecast month (see the module's docstring); rows
    written before the forecast had terms read ``forecast_go_live`` as it is."""
    if slip_days is None or forecast_go_live is None:
        return ForecastMonth(month_of(forecast_go_live or target))
    still = month_of(
        target if slip_days <= 0 else previous_working_day(target + timedelta(slip_days))
    )
    if slips_from is None:
        return ForecastMonth(still)
    # From this day the days since slips_from exceed the fixed slip (and are at least one).
    moves_from = slips_from + timedelta(days=max(slip_days, 0) + 1)
    return ForecastMonth(still, moves_from, (target - slips_from).days)


@functools.cache
def first_working_day(month: int) -> date:
    """The first day of ``month`` that is its own previous working day: the days from it to
    the next month's first working day are read as this month."""
    d = month_start(month)
    while previous_working_day(d) != d:
        d += timedelta(days=1)
    return d


def moving_month_bounds(today: date, first: int, last: int) -> list[int]:
    """For a project whose forecast moves with the clock, the offsets at which its month
    turns: read on ``today`` it goes live in month ``first + i`` when ``bounds[i] <= offset <
    bounds[i + 1]`` (months ``first`` to ``last`` inclusive; ``len == last - first + 2``)."""
    return [(first_working_day(m) - today).days for m in range(first, last + 2)]


def moving_month(today: date, offset: int) -> int:
    """The month a moving forecast falls in, read on ``today`` (for checks and Python)."""
    return month_of(previous_working_day(today + timedelta(days=offset)))
