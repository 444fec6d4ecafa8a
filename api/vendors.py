"""Vendors' load by month against the capacity they state: a read-model question, counted in
the database over projects and tasks (DESIGN.md), for the REST routes and the pages.

A project's go-live month is the month it went live, when its cutover is done (a vendor
counts the go-lives it carried out in the month it did them), else the month of today's
forecast (``forecast_today``): the target, or the working day on or before the target moved by
the slip its workflow's terms give for today. The SQL works that out exactly: the slip and the
moved day in SQL, and the step back to a working day as the few days whose previous working
day lies in the month before (the first days of a month that are not working days).

A month is over capacity when the vendor's whole load (all its projects, whoever asks) is over
what it stated; the counts shown are those of the projects the caller may see. A project
carries ``vendor_over_capacity`` when it is still to go live in a month over its vendor's
stated go-lives.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, Integer, and_, case, false, func, literal, select, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, col

from api.auth import Caller
from api.errors import HTTPProblem
from api.schemas import (
    CapacityStated,
    GoLivePublic,
    VendorCapacityIn,
    VendorCapacityPublic,
    VendorCapacityStated,
    VendorMonth,
    VendorMonthRow,
)
from readmodel import tables as t
from workflows.calendar import jst_today, previous_working_day
from workflows.model import ForecastTerms, forecast_on
from workflows.roles import Action, Scope, scope_of
from workflows.vocabulary import Owner, Stage, TaskStatus

MAX_MONTHS = 36
# The task whose completion is the go-live (the template's cutover).
GO_LIVE_TASK = "cutover"

# ---- date arithmetic in SQL, on SQLite (dates as ISO text) and PostgreSQL -----------------


class month_index(FunctionElement[int]):
    """year * 12 + month - 1 of a date."""

    type = Integer()
    inherit_cache = True


class days_between(FunctionElement[int]):
    """Days from the first date to the second."""

    type = Integer()
    inherit_cache = True


class add_days(FunctionElement[date]):
    """A date moved by a number of days."""

    type = Date()
    inherit_cache = True


class jst_date(FunctionElement[date]):
    """The JST calendar day of a UTC timestamp."""

    type = Date()
    inherit_cache = True


def _args(element: Any, compiler: Any, **kw: Any) -> list[str]:
    return [compiler.process(c, **kw) for c in element.clauses]


@compiles(month_index)
def _month_index(element: Any, compiler: Any, **kw: Any) -> str:
    (d,) = _args(element, compiler, **kw)
    return f"CAST(EXTRACT(YEAR FROM {d}) * 12 + EXTRACT(MONTH FROM {d}) - 1 AS INTEGER)"


@compiles(month_index, "sqlite")
def _month_index_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    (d,) = _args(element, compiler, **kw)
    return f"(CAST(substr({d}, 1, 4) AS INTEGER) * 12 + CAST(substr({d}, 6, 2) AS INTEGER) - 1)"


@compiles(days_between)
def _days_between(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"({b} - {a})"


@compiles(days_between, "sqlite")
def _days_between_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"CAST(julianday({b}) - julianday({a}) AS INTEGER)"


@compiles(add_days)
def _add_days(element: Any, compiler: Any, **kw: Any) -> str:
    d, n = _args(element, compiler, **kw)
    return f"({d} + {n})"


@compiles(add_days, "sqlite")
def _add_days_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    d, n = _args(element, compiler, **kw)
    return f"date(julianday({d}) + {n})"


@compiles(jst_date)
def _jst_date(element: Any, compiler: Any, **kw: Any) -> str:
    (ts,) = _args(element, compiler, **kw)
    return f"CAST(({ts} AT TIME ZONE 'Asia/Tokyo') AS DATE)"


@compiles(jst_date, "sqlite")
def _jst_date_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    (ts,) = _args(element, compiler, **kw)
    return f"date({ts}, '+9 hours')"


@functools.cache
def _month_crossings(first_year: int, last_year: int) -> tuple[date, ...]:
    """The days whose previous working day falls in the month before: the first days of a
    month up to its first working day (a weekend, New Year's closing days, Golden Week)."""
    days = []
    for year in range(first_year, last_year + 1):
        for month in range(1, 13):
            d = date(year, month, 1)
            while previous_working_day(d).month != d.month:
                days.append(d)
                d += timedelta(days=1)
    return tuple(days)


def month_of(d: date) -> int:
    return d.year * 12 + d.month - 1


def month_text(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True)
class GoLive:
    """A project's go-live month in SQL: ``month`` (year * 12 + month - 1) and ``live`` (its
    cutover's completion, null while it is still to go live), over ``project`` outer-joined to
    its done cutover ``cutover`` (``join`` adds it to a select)."""

    project: Any
    cutover: Any
    month: Any
    live: Any

    def join(self, query: Any) -> Any:
        p, c = self.project, self.cutover
        return query.outerjoin(
            c,
            and_(c.project_id == p.id, c.key == GO_LIVE_TASK, c.status == TaskStatus.DONE),
        )


def go_live(today: date, project: Any = t.Project) -> GoLive:
    """The go-live month of ``project`` as read on ``today`` (see the module's docstring)."""
    p = project
    c = aliased(t.Task)
    today_ = literal(today, Date())
    slip = case(
        (p.forecast_slips_from.is_(None), p.forecast_slip_days),
        (
            days_between(p.forecast_slips_from, today_) > p.forecast_slip_days,
            days_between(p.forecast_slips_from, today_),
        ),
        else_=p.forecast_slip_days,
    )
    moved = add_days(p.target_go_live, slip)
    crossings = _month_crossings(2000, today.year + 40)
    done_on = func.coalesce(
        jst_date(c.completed_at),
        case((p.stage == Stage.COMPLETED, jst_date(p.completed_at))),
    )
    month = case(
        (done_on.is_not(None), month_index(done_on)),
        (
            p.forecast_slip_days.is_(None) | p.forecast_go_live.is_(None),
            month_index(func.coalesce(p.forecast_go_live, p.target_go_live)),
        ),
        (slip <= 0, month_index(p.target_go_live)),
        else_=month_index(moved) - case((moved.in_(crossings), 1), else_=0),
    )
    return GoLive(p, c, month, done_on)


def over_capacity_ids(today: date) -> Any:
    """The ids of the projects still to go live in a month with more of their vendor's
    go-lives (all of its projects) than it states it can carry."""
    cap = t.VendorCapacity
    stating = select(col(cap.vendor_id)).where(col(cap.go_lives_per_month).is_not(None))
    load_of = go_live(today, aliased(t.Project))
    q = load_of.project
    crowded: Any = load_of.join(
        select(q.vendor_id, load_of.month)
        .select_from(q)
        .join(cap, cap.vendor_id == q.vendor_id)  # type: ignore[arg-type]
        .where(col(cap.go_lives_per_month).is_not(None))
    )
    crowded = crowded.group_by(q.vendor_id, load_of.month, cap.go_lives_per_month).having(
        func.count() > cap.go_lives_per_month
    )
    one = go_live(today, aliased(t.Project))
    p = one.project
    return one.join(select(p.id).select_from(p)).where(
        col(p.vendor_id).in_(stating),
        one.live.is_(None),
        tuple_(p.vendor_id, one.month).in_(crowded),
    )


def vendor_over_capacity(today: date | None = None) -> Any:
    """``vendor_over_capacity`` of ``t.Project`` rows, as a column of a select."""
    today = today or jst_today(datetime.now(UTC))
    return col(t.Project.id).in_(over_capacity_ids(today))


class _OverCapacity:
    """The projects over their vendor's capacity, worked out once for every list and report
    of a short while instead of in each query: at national scale the computation reads
    every project (about 0.4 s on SQLite), a list shows fifty. Kept per database for
    ``ttl`` seconds and forgotten when a capacity is stated, so a flag lags a project's own
    change by at most that long."""

    ttl = 30.0
    # Past this many, a filter is left to the database (a parameter list that long is not).
    most_listed = 20_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, date, frozenset[str]]] = {}

    def ids(self, session: Session, today: date | None = None) -> frozenset[str]:
        today = today or jst_today(datetime.now(UTC))
        key = str(session.get_bind().engine.url)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[1] == today and now - kept[0] < self.ttl:
            return kept[2]
        ids = frozenset(str(r[0]) for r in session.execute(over_capacity_ids(today)))
        with self._lock:
            self._kept[key] = (now, today, ids)
        return ids

    def condition(self, session: Session) -> Any:
        """``vendor_over_capacity`` as a condition on ``t.Project`` rows."""
        ids = self.ids(session)
        if len(ids) > self.most_listed:
            return vendor_over_capacity()
        return col(t.Project.id).in_(sorted(ids)) if ids else false()

    def forget(self) -> None:
        with self._lock:
            self._kept.clear()


OVER_CAPACITY = _OverCapacity()


def is_over_capacity(session: Session, project_id: str, today: date | None = None) -> bool:
    return project_id in OVER_CAPACITY.ids(session, today)


# ---- who may read and state a vendor's capacity --------------------------------------------


def _vendor(session: Session, vendor_id: str) -> t.Vendor:
    row = session.get(t.Vendor, vendor_id)
    if row is None:
        raise HTTPProblem(404, f"no vendor {vendor_id!r}")
    return row


def _readable(session: Session, caller: Caller, vendor_id: str) -> t.Vendor:
    """Admin, observer and prefecture read any vendor's load (a prefecture over its bodies'
    projects); a vendor its own (any other: 404, as if it did not exist); others 403."""
    scope = scope_of(caller.role)
    if scope is Scope.VENDOR:
        if caller.vendor_id != vendor_id:
            raise HTTPProblem(404, f"no vendor {vendor_id!r}")
    elif scope not in (Scope.ALL, Scope.PREFECTURE):
        raise HTTPProblem(403, f"a {caller.role} token may not read vendors' load")
    return _vendor(session, vendor_id)


def _stating(session: Session, caller: Caller, vendor_id: str) -> t.Vendor:
    """The vendor itself and whoever manages vendors (admin) state its capacity."""
    if scope_of(caller.role) is Scope.VENDOR and caller.vendor_id != vendor_id:
        raise HTTPProblem(404, f"no vendor {vendor_id!r}")
    own = scope_of(caller.role) is Scope.VENDOR and caller.vendor_id == vendor_id
    if not own and not caller.may(Action.VENDORS):
        raise HTTPProblem(403, f"a {caller.role} token may not state a vendor's capacity")
    return _vendor(session, vendor_id)


def stated(session: Session, vendor_id: str) -> CapacityStated:
    row = session.get(t.VendorCapacity, vendor_id)
    if row is None:
        return CapacityStated()
    return CapacityStated(
        go_lives_per_month=row.go_lives_per_month, tasks_per_month=row.tasks_per_month
    )


def set_capacity(
    session: Session, caller: Caller, vendor_id: str, body: VendorCapacityIn
) -> VendorCapacityStated:
    """State what the vendor can carry a month: the fields given (null: not stated)."""
    _stating(session, caller, vendor_id)
    row = session.get(t.VendorCapacity, vendor_id) or t.VendorCapacity(vendor_id=vendor_id)
    for name in body.model_fields_set:
        setattr(row, name, getattr(body, name))
    row.updated_at = datetime.now(UTC)
    row.updated_by = caller.actor
    session.add(row)
    session.commit()
    session.refresh(row)
    OVER_CAPACITY.forget()
    return VendorCapacityStated(
        vendor_id=vendor_id,
        capacity=CapacityStated(
            go_lives_per_month=row.go_lives_per_month, tasks_per_month=row.tasks_per_month
        ),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


# ---- the load: counted in the database -----------------------------------------------------


@dataclass
class Load:
    """One vendor's figures in one month."""

    go_lives: int = 0
    live: int = 0
    tasks_due: int = 0
    tasks_done: int = 0
    tasks_overdue: int = 0


@dataclass
class Window:
    start: int  # month index of the first month
    months: int
    today: date
    loads: dict[tuple[str, int], Load] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.months

    def of(self, vendor_id: str, month: int) -> Load:
        return self.loads.setdefault((vendor_id, month), Load())


def _window(start: date, months: int, today: date | None) -> Window:
    if not 1 <= months <= MAX_MONTHS:
        raise HTTPProblem(422, f"months must be 1 to {MAX_MONTHS}")
    return Window(month_of(start), months, today or jst_today(datetime.now(UTC)))


def _month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _count(
    session: Session, window: Window, caller: Caller | None, vendor_id: str | None
) -> Window:
    """The go-lives and the tasks of every vendor (or of ``vendor_id``) by month in the
    window, over the projects ``caller`` sees (None: all of them): two grouped queries."""
    g = go_live(window.today)
    p = g.project
    query: Any = g.join(
        select(
            p.vendor_id,
            g.month,
            func.count(),
            func.count(g.live),
        ).select_from(p)
    )
    query = query.where(col(p.vendor_id).is_not(None))
    if vendor_id is not None:
        query = query.where(p.vendor_id == vendor_id)
    if caller is not None:
        query = caller.scope(query)
    query = query.where(g.month >= window.start, g.month < window.end)
    for vendor, month, n, live in session.execute(query.group_by(p.vendor_id, g.month)):
        load = window.of(vendor, month)
        load.go_lives, load.live = n, live

    task: Any = t.Task
    due = col(task.due_date)
    month = month_index(due)
    done = case((task.status == TaskStatus.DONE, 1), else_=0)
    overdue = case((and_(task.status != TaskStatus.DONE, due < window.today), 1), else_=0)
    tasks: Any = (
        select(p.vendor_id, month, func.count(), func.sum(done), func.sum(overdue))
        .select_from(task)
        .join(p, p.id == task.project_id)
        .where(
            task.owner == Owner.VENDOR,
            due >= _month_start(window.start),
            due < _month_start(window.end),
            task.status != TaskStatus.NOT_APPLICABLE,
            col(p.vendor_id).is_not(None),
        )
    )
    if vendor_id is not None:
        tasks = tasks.where(p.vendor_id == vendor_id)
    if caller is not None:
        tasks = caller.scope(tasks)
    for vendor, m, n, n_done, n_overdue in session.execute(tasks.group_by(p.vendor_id, month)):
        load = window.of(vendor, m)
        load.tasks_due, load.tasks_done, load.tasks_overdue = n, n_done or 0, n_overdue or 0
    return window


def _over(load: Load, capacity: CapacityStated) -> bool:
    go, tasks = capacity.go_lives_per_month, capacity.tasks_per_month
    return (go is not None and load.go_lives > go) or (tasks is not None and load.tasks_due > tasks)


def _whole(
    session: Session, caller: Caller, window: Window, vendor_id: str | None
) -> tuple[Window, Window]:
    """The figures the caller sees, and the vendors' whole load (the same when it sees all
    of a vendor's projects)."""
    seen = _count(session, window, caller, vendor_id)
    if scope_of(caller.role) is Scope.PREFECTURE:
        return seen, _count(
            session, Window(window.start, window.months, window.today), None, vendor_id
        )
    return seen, seen


def _going_live(
    session: Session, caller: Caller, vendor_id: str, window: Window
) -> dict[int, list[GoLivePublic]]:
    """The projects the caller sees going live in each month of the window."""
    g = go_live(window.today)
    p = g.project
    query: Any = g.join(
        select(
            p.id,
            p.lg_code,
            p.body_name,
            p.prefecture,
            p.business,
            p.business_name,
            p.target_go_live,
            p.forecast_go_live,
            p.forecast_slip_days,
            p.forecast_slips_from,
            g.live.label("live"),
            g.month.label("month"),
        ).select_from(p)
    )
    query = caller.scope(query.where(p.vendor_id == vendor_id))
    query = query.where(g.month >= window.start, g.month < window.end)
    out: dict[int, list[GoLivePublic]] = defaultdict(list)
    for r in session.execute(query.order_by(g.month, p.id)):
        if r.live is not None:
            day = r.live if isinstance(r.live, date) else date.fromisoformat(r.live)
        elif r.forecast_slip_days is None or r.forecast_go_live is None:
            day = r.forecast_go_live or r.target_go_live
        else:
            terms = ForecastTerms(r.forecast_slip_days, r.forecast_slips_from)
            day = forecast_on(r.target_go_live, terms, window.today)
        out[r.month].append(
            GoLivePublic(
                id=r.id,
                lg_code=r.lg_code,
                body_name=r.body_name,
                prefecture=r.prefecture,
                business=r.business,
                business_name=r.business_name,
                go_live=day,
                target_go_live=r.target_go_live,
                live=r.live is not None,
            )
        )
    return out


def capacity(
    session: Session,
    caller: Caller,
    vendor_id: str,
    start: date,
    months: int,
    today: date | None = None,
) -> VendorCapacityPublic:
    """One vendor's load in each of ``months`` months from ``start``'s, over the projects the
    caller may see, against the capacity it states."""
    _readable(session, caller, vendor_id)
    window = _window(start, months, today)
    seen, whole = _whole(session, caller, window, vendor_id)
    stated_ = stated(session, vendor_id)
    listed = _going_live(session, caller, vendor_id, window)
    out = []
    for m in range(window.start, window.end):
        load = seen.loads.get((vendor_id, m), Load())
        out.append(
            VendorMonth(
                month=month_text(m),
                go_lives=load.go_lives,
                tasks_due=load.tasks_due,
                tasks_done=load.tasks_done,
                tasks_open=load.tasks_due - load.tasks_done,
                tasks_overdue=load.tasks_overdue,
                over_capacity=_over(whole.loads.get((vendor_id, m), Load()), stated_),
                projects=listed.get(m, []),
            )
        )
    return VendorCapacityPublic(vendor_id=vendor_id, capacity=stated_, months=out)


def vendor_report(
    session: Session,
    caller: Caller,
    start: date,
    months: int,
    today: date | None = None,
) -> list[VendorMonthRow]:
    """Every vendor (a prefecture: those with projects in its bodies) in each month, with
    the figures of ``capacity`` and how many of its projects go live over capacity."""
    scope = scope_of(caller.role)
    if scope not in (Scope.ALL, Scope.PREFECTURE):
        raise HTTPProblem(403, f"a {caller.role} token may not read the vendors' report")
    window = _window(start, months, today)
    seen, whole = _whole(session, caller, window, None)
    vendors: Any = select(col(t.Vendor.id), col(t.Vendor.name))
    if scope is Scope.PREFECTURE:
        serving = caller.scope(select(col(t.Project.vendor_id))).where(  # type: ignore[arg-type]
            col(t.Project.vendor_id).is_not(None)
        )
        vendors = vendors.where(col(t.Vendor.id).in_(serving.distinct()))
    capacities = {
        r.vendor_id: CapacityStated(
            go_lives_per_month=r.go_lives_per_month, tasks_per_month=r.tasks_per_month
        )
        for r in session.execute(select(t.VendorCapacity)).scalars()
    }
    rows = []
    for vendor, name in session.execute(vendors.order_by(t.Vendor.id)):
        stated_ = capacities.get(vendor, CapacityStated())
        for m in range(window.start, window.end):
            load = seen.loads.get((vendor, m), Load())
            national = whole.loads.get((vendor, m), Load())
            cap = stated_.go_lives_per_month
            crowded = cap is not None and national.go_lives > cap
            rows.append(
                VendorMonthRow(
                    vendor_id=vendor,
                    vendor_name=name,
                    month=month_text(m),
                    go_lives=load.go_lives,
                    tasks_due=load.tasks_due,
                    tasks_done=load.tasks_done,
                    tasks_open=load.tasks_due - load.tasks_done,
                    tasks_overdue=load.tasks_overdue,
                    go_lives_per_month=stated_.go_lives_per_month,
                    tasks_per_month=stated_.tasks_per_month,
                    over_capacity=_over(national, stated_),
                    projects_over_capacity=load.go_lives - load.live if crowded else 0,
                )
            )
    return rows


def parse_month(value: str | None, today: date | None = None) -> date:
    """``YYYY-MM`` as its first day; none: this month in JST."""
    if value is None:
        d = today or jst_today(datetime.now(UTC))
        return d.replace(day=1)
    try:
        year, month = value.split("-")
        if len(year) != 4 or len(month) != 2 or not (year + month).isascii():
            raise ValueError(value)
        # Months counted from it must stay within the calendar (year 9999 and before).
        if not 2000 <= int(year) <= 2200:
            raise ValueError(value)
        return date(int(year), int(month), 1)
    except ValueError:
        raise HTTPProblem(
            422,
            "from must be a month YYYY-MM between 2000 and 2200",
            errors=[{"loc": ["query", "from"], "msg": "must be a month YYYY-MM, 2000 to 2200"}],
        ) from None
