"""The go-live month the read model stores (readmodel.golive) and the SQL that reads it
(api.vendors.go_live) agree with the forecast the workflows compute (workflows.model
.forecast_on) on every day: the month a vendor's go-live is counted in never drifts from the
forecast a project's page shows, whether the forecast stands still, slips a day a day, or
lands on a weekend, New Year's closing days or Golden Week."""

from __future__ import annotations

import random
from datetime import date, timedelta

from sqlalchemy import select
from sqlmodel import Session

from api.vendors import go_live
from readmodel import tables as t
from readmodel.db import make_engine
from readmodel.golive import forecast_month, month_of, moving_month
from workflows.model import ForecastTerms, forecast_on

START = date(2026, 4, 1)


def _terms(rng: random.Random) -> tuple[date, ForecastTerms]:
    target = START + timedelta(days=rng.randrange(0, 900))
    slip = rng.choice([0, 0, rng.randrange(-20, 0), rng.randrange(1, 300)])
    slips_from = rng.choice([None, target - timedelta(days=rng.randrange(-60, 500))])
    return target, ForecastTerms(slip, slips_from)


def _read(target: date, terms: ForecastTerms, today: date) -> int:
    """The month as a reader of the stored terms works it out."""
    f = forecast_month(target, target, terms.slip_days, terms.slips_from)
    if f.moves_from is not None and today >= f.moves_from:
        assert f.offset is not None
        return moving_month(today, f.offset)
    return f.month


def test_the_stored_terms_give_the_forecast_s_month_on_every_day() -> None:
    rng = random.Random(7)
    for _ in range(300):
        target, terms = _terms(rng)
        for n in range(0, 800, 3):
            today = START + timedelta(days=n)
            expected = month_of(forecast_on(target, terms, today))
            assert _read(target, terms, today) == expected, (target, terms, today)


def test_the_sql_counts_each_project_in_its_forecast_s_month(sqlite_url: str) -> None:
    """Over a few hundred projects and days through a year-end and Golden Week, the month the
    SQL reads for each project is the one its forecast falls in (outside the months asked
    about: none of them)."""
    rng = random.Random(11)
    engine = make_engine(sqlite_url)
    projects = {}
    with Session(engine) as session:
        for i in range(400):
            target, terms = _terms(rng)
            f = forecast_month(target, target, terms.slip_days, terms.slips_from)
            pid = f"131016-p{i}"
            projects[pid] = (target, terms)
            session.add(
                t.Project(
                    id=pid,
                    workflow_id=pid,
                    lg_code="131016",
                    body_name="千代田区",
                    prefecture="13",
                    business=f"p{i}",
                    business_name="-",
                    vendor_id="acme",
                    template="mic-handbook@1.0",
                    target_go_live=target,
                    deadline=date(2026, 3, 31),
                    forecast_go_live=target,
                    forecast_slip_days=terms.slip_days,
                    forecast_slips_from=terms.slips_from,
                    forecast_month=f.month,
                    forecast_moves_from=f.moves_from,
                    forecast_offset=f.offset,
                    stage="migration",
                    health="on_track",
                )
            )
        session.commit()
        days = [date(2026, 12, 28), date(2027, 1, 4), date(2027, 5, 1), date(2027, 5, 7)]
        days += [START + timedelta(days=rng.randrange(0, 700)) for _ in range(4)]
        for today in days:
            first, last = month_of(today) - 3, month_of(today) + 30
            g = go_live(today, first, last)
            read = dict(session.execute(select(t.Project.id, g.month)).all())  # type: ignore[call-overload]
            for pid, (target, terms) in projects.items():
                month = month_of(forecast_on(target, terms, today))
                got = read[pid]
                if first <= month <= last:
                    assert got == month, (pid, target, terms, today)
                else:  # counted in no month asked about
                    assert got is None or not first <= got <= last, (pid, target, terms, today)
