"""Vendors' load by month against the capacity they state: a read-model question, counted in
the database over projects and tasks (DESIGN.md), for the REST routes and the pages.

A project's go-live month is the month it went live, when its cutover is done (a vendor
counts the go-lives it carried out in the month it did them), else the month of today's
forecast (``forecast_on``): the target, or the working day on or before the target moved by
the slip its workflow's terms give for today. The projection keeps both as columns of the
project (readmodel.golive): the month it went live, and the forecast's month with, for a
forecast that moves with the clock, the offset that gives today's; so the go-lives are a
grouped read of the project table, with no date computed per row, exact on any day. The
tasks are summed over each vendor's tasks due on each day (``vendor_task_day``, kept by
triggers as tasks are written) for a caller who sees all of a vendor's tasks (the programme,
the vendor itself), and counted from an index of the tasks (each carries its project's
vendor) for one who sees some of them: a prefecture, a body.

A month is over capacity when the vendor's whole load (all its projects, whoever asks) is over
what it stated; the counts shown are those of the projects the caller may see. A project
carries ``vendor_over_capacity`` when it is still to go live in a month over its vendor's
stated go-lives.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    ARRAY,
    Date,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    false,
    func,
    literal,
    null,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, col

from api.auth import Caller
from api.errors import HTTPProblem
from api.schemas import (
    CapacityStated,
    VendorCapacityIn,
    VendorCapacityPublic,
    VendorCapacityStated,
    VendorMonthRow,
)
from readmodel import tables as t
from readmodel.golive import month_of, month_start, moving_month_bounds
from workflows.calendar import JST, jst_today
from workflows.core import GO_LIVE_TASK
from workflows.model import ForecastTerms, forecast_on
from workflows.roles import Action, Scope, scope_of
from workflows.vocabulary import Owner, TaskStatus

MAX_MONTHS = 36
_ROWS: TypeAdapter[list[VendorMonthRow]] = TypeAdapter(list[VendorMonthRow])


class month_index(FunctionElement[int]):
    """year * 12 + month - 1 of a date, on SQLite (dates as ISO text) and PostgreSQL."""

    type = Integer()
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


def month_text(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _moving_month(offset: Any, today: date, first: int, last: int) -> Any:
    """The month of a forecast that moves with the clock (readmodel.golive), read on
    ``today``, for months ``first`` to ``last``: a balanced CASE over the offsets at which the
    month turns (a few integer comparisons a row); null outside those months."""
    bounds = moving_month_bounds(today, first, last)

    def within(i: int, j: int) -> Any:  # bounds[i] <= offset < bounds[j]
        if j - i == 1:
            return literal(first + i)
        mid = (i + j) // 2
        return case((offset < bounds[mid], within(i, mid)), else_=within(mid, j))

    return case(
        (offset < bounds[0], null()),
        (offset >= bounds[-1], null()),
        else_=within(0, len(bounds) - 1),
    )


@dataclass(frozen=True)
class GoLive:
    """A project's go-live month in SQL, from the columns the projection keeps
    (readmodel.golive): ``month`` (year * 12 + month - 1; null outside the months asked
    about) and ``live`` (the month it went live, null while it is still to go live)."""

    project: Any
    month: Any
    live: Any


def go_live(today: date, first: int, last: int, project: Any = t.Project) -> GoLive:
    """The go-live month of ``project`` as read on ``today``, for months ``first`` to
    ``last`` (see the module's docstring)."""
    p = project
    forecast = case(
        (
            p.forecast_moves_from <= literal(today, Date()),
            _moving_month(p.forecast_offset, today, first, last),
        ),
        else_=p.forecast_month,
    )
    return GoLive(p, func.coalesce(p.live_month, forecast), p.live_month)


def over_capacity_ids(today: date) -> Any:
    """The ids of the projects still to go live in a month with more of their vendor's
    go-lives (all of its projects) than it states it can carry."""
    cap = t.VendorCapacity
    # Months from two years back to ten years ahead: a forecast further out crowds nothing.
    first, last = month_of(today) - 24, month_of(today) + 120
    stating = select(col(cap.vendor_id)).where(col(cap.go_lives_per_month).is_not(None))
    load_of = go_live(today, first, last, aliased(t.Project))
    q = load_of.project
    crowded: Any = (
        select(q.vendor_id, load_of.month)
        .select_from(q)
        .join(cap, cap.vendor_id == q.vendor_id)  # type: ignore[arg-type]
        .where(col(cap.go_lives_per_month).is_not(None), load_of.month.is_not(None))
        .group_by(q.vendor_id, load_of.month, col(cap.go_lives_per_month))
        .having(func.count() > cap.go_lives_per_month)
    )
    one = go_live(today, first, last, aliased(t.Project))
    p = one.project
    return select(p.id).where(
        col(p.vendor_id).in_(stating),
        one.live.is_(None),
        tuple_(p.vendor_id, one.month).in_(crowded),
    )


def vendor_over_capacity(today: date | None = None) -> Any:
    """``vendor_over_capacity`` of ``t.Project`` rows, as a column of a select."""
    today = today or jst_today(datetime.now(UTC))
    return col(t.Project.id).in_(over_capacity_ids(today))


@dataclass(frozen=True)
class _Kept:
    at: float
    today: date
    ids: frozenset[str]
    # The ids as one parameter of a query: a list of one parameter an id took SQLAlchemy and
    # the driver longer to render and bind than the query took to run (twice a list, its
    # count and its page, and once in each report), at national scale thousands of them.
    # Built once when the ids are worked out: a JSON array for SQLite's json_each, a list
    # for PostgreSQL's = ANY.
    param: Any


class _OverCapacity:
    """The projects over their vendor's capacity, worked out once for every list and report
    of a short while instead of in each query: at national scale the computation reads
    every project (about 0.4 s on SQLite), a list shows fifty. Kept per database for
    ``ttl`` seconds and forgotten when a capacity is stated, so a flag lags a project's own
    change by at most that long."""

    ttl = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, _Kept] = {}

    def _of(self, session: Session, today: date | None) -> _Kept:
        today = today or jst_today(datetime.now(UTC))
        bind = session.get_bind()
        key = str(bind.engine.url)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept.today == today and now - kept.at < self.ttl:
            return kept
        ids = frozenset(str(r[0]) for r in session.connection().execute(over_capacity_ids(today)))
        listed = list(ids)
        param = listed if bind.dialect.name == "postgresql" else json.dumps(listed)
        kept = _Kept(now, today, ids, param)
        with self._lock:
            self._kept[key] = kept
        return kept

    def ids(self, session: Session, today: date | None = None) -> frozenset[str]:
        return self._of(session, today).ids

    def condition(self, session: Session, today: date | None = None) -> Any:
        """``vendor_over_capacity`` as a condition on ``t.Project`` rows, the ids sent as
        one parameter however many they are."""
        kept = self._of(session, today)
        if not kept.ids:
            return false()
        if isinstance(kept.param, list):  # PostgreSQL
            param = bindparam("over_capacity", kept.param, type_=ARRAY(String), unique=True)
            return col(t.Project.id) == any_(param)
        values = func.json_each(bindparam("over_capacity", kept.param, unique=True))
        return col(t.Project.id).in_(select(values.table_valued("value").c.value))

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

    def figures(self, month: int) -> dict[str, Any]:
        """The month's figures as the capacity and the vendors' report give them."""
        return {
            "month": month_text(month),
            "go_lives": self.go_lives,
            "tasks_due": self.tasks_due,
            "tasks_done": self.tasks_done,
            "tasks_open": self.tasks_due - self.tasks_done,
            "tasks_overdue": self.tasks_overdue,
        }


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


def _count(
    session: Session, window: Window, caller: Caller | None, vendor_id: str | None
) -> Window:
    """The go-lives and the tasks of every vendor (or of ``vendor_id``) by month in the
    window, over the projects ``caller`` sees (None: all of them): two grouped queries."""
    g = go_live(window.today, window.start, window.end - 1)
    p = g.project
    query: Any = select(p.vendor_id, g.month, func.count(), func.count(g.live)).select_from(p)
    query = query.where(col(p.vendor_id).is_not(None))
    if vendor_id is not None:
        query = query.where(p.vendor_id == vendor_id)
    if caller is not None:
        query = caller.scope(query)
    query = query.where(g.month >= window.start, g.month < window.end)
    for vendor, month, n, live in session.connection().execute(
        query.group_by(p.vendor_id, g.month)
    ):
        load = window.of(vendor, month)
        load.go_lives, load.live = n, live

    # All of a vendor's tasks: the programme's, or a vendor's own (each task carries its
    # project's vendor, so its projects' tasks are exactly those carrying its id).
    if (
        caller is None
        or scope_of(caller.role) is Scope.ALL
        or (scope_of(caller.role) is Scope.VENDOR and vendor_id == caller.vendor_id)
    ):
        _count_task_days(session, window, vendor_id)
        return window
    task: Any = t.Task
    due = col(task.due_date)
    month = month_index(due)
    done = case((task.status == TaskStatus.DONE, 1), else_=0)
    overdue = case((and_(task.status != TaskStatus.DONE, due < window.today), 1), else_=0)
    tasks: Any = (
        select(task.vendor_id, month, func.count(), func.sum(done), func.sum(overdue))
        .select_from(task)
        .where(
            task.owner == Owner.VENDOR,
            due >= month_start(window.start),
            due < month_start(window.end),
            col(task.vendor_id).is_not(None),
            task.status != TaskStatus.NOT_APPLICABLE,
            # The projects the caller sees, as a set the index scan checks each task against.
            col(task.project_id).in_(caller.scope(select(p.id))),  # type: ignore[arg-type]
        )
    )
    if vendor_id is not None:
        tasks = tasks.where(task.vendor_id == vendor_id)
    tasks = tasks.group_by(task.vendor_id, month)
    for vendor, m, n, n_done, n_overdue in session.connection().execute(tasks):
        load = window.of(vendor, m)
        load.tasks_due, load.tasks_done, load.tasks_overdue = n, n_done or 0, n_overdue or 0
    return window


def _count_task_days(session: Session, window: Window, vendor_id: str | None) -> None:
    """Every vendor's tasks (or ``vendor_id``'s) by month in the window, summed over the
    days the triggers keep (``t.VendorTaskDay``): at most vendors × days rows, however many
    tasks the country has. A day before today counts its open tasks as overdue."""
    d: Any = t.VendorTaskDay
    day = col(d.due_date)
    month = month_index(day)
    overdue = case((day < window.today, d.tasks - d.done), else_=0)
    query: Any = (
        select(d.vendor_id, month, func.sum(d.tasks), func.sum(d.done), func.sum(overdue))
        .where(day >= month_start(window.start), day < month_start(window.end))
        .group_by(d.vendor_id, month)
        .having(func.sum(d.tasks) > 0)
    )
    if vendor_id is not None:
        query = query.where(d.vendor_id == vendor_id)
    for vendor, m, n, n_done, n_overdue in session.connection().execute(query):
        load = window.of(vendor, m)
        load.tasks_due, load.tasks_done, load.tasks_overdue = n, n_done, n_overdue


def raw(expr: Any, name: str) -> Any:
    """A column as the driver returns it, past its type's result processing."""
    return type_coerce(expr, String()).label(name)


def _day(value: date | str | None) -> Any:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])


def _jst_day(at: datetime | str) -> date:
    if isinstance(at, str):  # SQLite hands back a label's timestamp as text, in UTC
        at = datetime.fromisoformat(at).replace(tzinfo=UTC)
    return at.astimezone(JST).date()


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
) -> dict[int, list[dict[str, Any]]]:
    """The projects the caller sees going live in each month of the window."""
    g = go_live(window.today, window.start, window.end - 1)
    p = g.project
    c: Any = aliased(t.Task)
    cutover_done = and_(c.project_id == p.id, c.key == GO_LIVE_TASK, c.status == TaskStatus.DONE)
    query: Any = (
        select(
            p.id,
            p.lg_code,
            p.body_name,
            p.prefecture,
            p.business,
            p.business_name,
            # As the driver gives them (ISO text on SQLite): the type's own parsing of
            # thousands of rows was most of a large vendor's answer.
            raw(p.target_go_live, "target_go_live"),
            raw(p.forecast_go_live, "forecast_go_live"),
            p.forecast_slip_days,
            raw(p.forecast_slips_from, "forecast_slips_from"),
            raw(
                case((p.live_month.is_not(None), func.coalesce(c.completed_at, p.completed_at))),
                "went_live",
            ),
            g.live.label("live"),
            g.month.label("month"),
        )
        .select_from(p)
        .outerjoin(c, cutover_done)
    )
    query = caller.scope(query.where(p.vendor_id == vendor_id))
    query = query.where(g.month >= window.start, g.month < window.end)
    # Plain rows, validated once with the whole answer (capacity): thousands for a large
    # vendor, and one model each was most of the answer's time.
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in session.connection().execute(query.order_by(g.month, p.id)):
        if r.live is not None and r.went_live is not None:
            day: date | str = _jst_day(r.went_live)
        elif r.forecast_slip_days is None or r.forecast_go_live is None:
            day = r.forecast_go_live or r.target_go_live
        else:
            terms = ForecastTerms(r.forecast_slip_days, _day(r.forecast_slips_from))
            day = forecast_on(_day(r.target_go_live), terms, window.today)
        out[r.month].append(
            {
                "id": r.id,
                "lg_code": r.lg_code,
                "body_name": r.body_name,
                "prefecture": r.prefecture,
                "business": r.business,
                "business_name": r.business_name,
                "go_live": day,
                "target_go_live": r.target_go_live,
                "live": r.live is not None,
            }
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
            {
                **load.figures(m),
                "over_capacity": _over(whole.loads.get((vendor_id, m), Load()), stated_),
                "projects": listed.get(m, []),
            }
        )
    return VendorCapacityPublic.model_validate(
        {"vendor_id": vendor_id, "capacity": stated_, "months": out}
    )


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
                {
                    "vendor_id": vendor,
                    "vendor_name": name,
                    **load.figures(m),
                    "go_lives_per_month": stated_.go_lives_per_month,
                    "tasks_per_month": stated_.tasks_per_month,
                    "over_capacity": _over(national, stated_),
                    "projects_over_capacity": load.go_lives - load.live if crowded else 0,
                }
            )
    return _ROWS.validate_python(rows)


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
