"""The project timeline: a Gantt chart of the tasks by stage, drawn on the server as SVG
(the pages run no script). Planned windows come from the due dates (a task's window opens
when its last prerequisite is due); actual work from when it started and finished; lines
mark today, the go-live planned and forecast, and the legal or extended deadline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from api.schemas import ProjectPublic, TaskPublic
from workflows.calendar import JST
from workflows.vocabulary import Stage, TaskStatus

WIDTH = 960
LABEL = 230  # the column of task names
RIGHT = 20
ROW = 22
MARKS = 14  # one line of text per marked date, above the axis
LEAD = timedelta(days=30)  # the window of a task with no prerequisite, before its due date

_CLOSED = (TaskStatus.DONE, TaskStatus.NOT_APPLICABLE)


@dataclass(frozen=True)
class _Line:
    on: date
    label: str
    css: str


def _day(value: object) -> date | None:
    if value is None:
        return None
    if hasattr(value, "astimezone"):
        return value.astimezone(JST).date()  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]


def _windows(tasks: list[TaskPublic], start: date) -> dict[str, tuple[date, date]]:
    due = {x.key: x.due_date for x in tasks}
    windows: dict[str, tuple[date, date]] = {}
    for x in tasks:
        if x.due_date is None:
            continue
        before = [d for d in (due.get(k) for k in x.depends_on) if d is not None]
        opens = max(before) if before else min(start, x.due_date - LEAD)
        windows[x.key] = (min(opens, x.due_date), x.due_date)
    return windows


def _ticks(first: date, last: date) -> list[tuple[date, str, bool]]:
    """Month starts along the axis: every year labelled, and quarters when they fit."""
    months = (last.year - first.year) * 12 + last.month - first.month
    step = 3 if months <= 48 else 6 if months <= 96 else 12
    ticks = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        on = date(y, m, 1)
        if on >= first and (m - 1) % step == 0:
            ticks.append((on, f"{y}年" if m == 1 else f"{m}月", m == 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return ticks


def gantt(project: ProjectPublic, today: date) -> Markup:
    """The SVG of ``project``'s tasks against its dates, as of ``today`` (JST)."""
    created = _day(project.created_at) or today
    windows = _windows(project.tasks, created)
    lines = [_Line(today, "今日", "today")]
    deadline_label = "延長後の期限" if project.extended_track else "移行期限"
    lines.append(_Line(project.deadline, deadline_label, "deadline"))
    lines.append(_Line(project.target_go_live, "本番移行予定", "target"))
    if project.forecast_go_live and project.forecast_go_live != project.target_go_live:
        lines.append(_Line(project.forecast_go_live, "予測", "forecast"))
    actual = [d for x in project.tasks for d in (_day(x.started_at), _day(x.completed_at)) if d]
    dates = [d for w in windows.values() for d in w] + [ln.on for ln in lines] + actual
    first = min(dates) - timedelta(days=20)
    last = max(dates) + timedelta(days=40)
    span = max((last - first).days, 1)

    def x(on: date) -> float:
        return round(LABEL + (on - first).days * (WIDTH - LABEL - RIGHT) / span, 1)

    rows: list[tuple[str, TaskPublic | None]] = []
    for stage in Stage:
        in_stage = [t for t in project.tasks if t.stage == stage]
        if in_stage:
            rows.append((stage.label, None))
            rows.extend((t.name, t) for t in in_stage)
    axis = MARKS * len(lines) + 26  # marked dates' names, then the month labels
    height = axis + ROW * len(rows) + 8
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="tl-title tl-desc" '
        'font-size="12" font-family="sans-serif">',
        '<title id="tl-title">工程表</title>',
        f'<desc id="tl-desc">{escape(project.body_name)} {escape(project.business_name)}の'
        f"作業の予定（期限）と実績。移行期限 {project.deadline.isoformat()}、"
        f"本番移行予定 {project.target_go_live.isoformat()}。</desc>",
    ]
    for on, text, strong in _ticks(first, last):
        px = x(on)
        out.append(
            f'<line x1="{px}" y1="{axis - 6}" x2="{px}" y2="{height}" '
            f'stroke="{"#9aa5b1" if strong else "#e4e7eb"}" stroke-width="1"/>'
            f'<text x="{px + 2}" y="{axis - 10}" fill="#3e4c59">{text}</text>'
        )
    for i, (name, task) in enumerate(rows):
        top = axis + i * ROW
        if task is None:
            out.append(
                f'<rect x="0" y="{top}" width="{WIDTH}" height="{ROW}" fill="#eef2f7"/>'
                f'<text x="6" y="{top + 15}" font-weight="bold" fill="#1f2933">'
                f"{escape(name)}</text>"
            )
            continue
        late = task.status not in _CLOSED and task.due_date is not None and task.due_date < today
        status = "判断待ち" if task.gate and task.status == TaskStatus.IN_PROGRESS else None
        said = status or task.status.label
        due_text = f"期限 {task.due_date.isoformat()}" if task.due_date else "期限なし"
        out.append(
            f'<g class="task" data-key="{escape(task.key)}"><title>{escape(name)}：{said}、'
            f"{due_text}{'（期限超過）' if late else ''}</title>"
        )
        short = name if len(name) <= 16 else name[:15] + "…"
        out.append(
            f'<text x="14" y="{top + 15}" fill="{"#b3261e" if late else "#1f2933"}">'
            f"{escape(short)}</text>"
        )
        window = windows.get(task.key)
        if window:
            opens, due = window
            out.append(
                f'<rect x="{x(opens)}" y="{top + 5}" width="{max(x(due) - x(opens), 2)}" '
                f'height="{ROW - 10}" fill="#d9e2ec" '
                f'stroke="{"#b3261e" if late else "#9aa5b1"}" stroke-width="{2 if late else 1}"/>'
            )
        began, ended = _day(task.started_at), _day(task.completed_at)
        if task.status == TaskStatus.DONE or (task.status == TaskStatus.IN_PROGRESS and began):
            began = began or ended or today
            ended = ended if task.status == TaskStatus.DONE and ended else today
            colour = "#1f7a3f" if task.status == TaskStatus.DONE else "#8a5300"
            out.append(
                f'<rect x="{x(began)}" y="{top + 8}" width="{max(x(ended) - x(began), 3)}" '
                f'height="{ROW - 16}" fill="{colour}"/>'
            )
        if task.gate and task.due_date:
            cx, cy = x(task.due_date), top + ROW / 2
            out.append(
                f'<path d="M{cx} {cy - 6} L{cx + 6} {cy} L{cx} {cy + 6} L{cx - 6} {cy} Z" '
                f'fill="{"#1f7a3f" if task.status == TaskStatus.DONE else "#ffffff"}" '
                'stroke="#1f2933"/>'
            )
        out.append("</g>")
    colours = {
        "today": "#0b5cad",
        "deadline": "#b3261e",
        "target": "#1f2933",
        "forecast": "#8a5300",
    }
    for n, ln in enumerate(lines):
        px = x(ln.on)
        dash = ' stroke-dasharray="5 3"' if ln.css != "today" else ""
        out.append(
            f'<g class="mark {ln.css}">'
            f'<line x1="{px}" y1="{MARKS * n + 15}" x2="{px}" y2="{height}" '
            f'stroke="{colours[ln.css]}" stroke-width="2"{dash}/>'
            f'<text x="{px + (3 if px < WIDTH - 160 else -3)}" y="{12 + MARKS * n}" '
            f'text-anchor="{"start" if px < WIDTH - 160 else "end"}" fill="{colours[ln.css]}" '
            f'font-weight="bold">{ln.label} {ln.on.year}/{ln.on.month}/{ln.on.day}</text></g>'
        )
    out.append("</svg>")
    return Markup("".join(out))
