"""Bulk import (POST /api/v1/imports, ``hyojunka import``): one CSV row per project, in the
spirit of MIC's progress survey, each row becoming the creation POST /api/v1/projects makes.

The file is read and checked as a whole first (not UTF-8 or not CSV: 422, nothing changes);
then each row is checked by the creation's own rules (``commands.creation_input``) in short
read-model sessions, a chunk at a time, and the good rows are started with a bounded number
of creations in flight. No session is open while Temporal works. A row whose project is
already in the read model is counted as existing and left alone, so rerunning a file changes
nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import ValidationError
from sqlmodel import Session, col, select
from temporalio.common import TypedSearchAttributes

from api import commands
from api.auth import Caller
from api.commands import Context
from api.errors import HTTPProblem
from api.schemas import ImportRefusal, ImportResult, ProjectCreate
from readmodel import tables as t
from runtime.settings import Settings
from workflows.migration import MigrationInput
from workflows.roles import Action
from workflows.vocabulary import Role, TaskStatus

# The columns of a project; every other column is a task key holding its state.
PROJECT_COLUMNS = ("lg_code", "business", "target_go_live", "vendor_id", "switching_vendor")
REQUIRED_COLUMNS = ("lg_code", "business", "target_go_live")
OPTIONAL_COLUMNS = ("template",)
CELL_FORMS = "done, done:YYYY-MM-DD, in_progress, not_applicable or empty"
# Rows checked in one read-model session; the next chunk is checked while this one starts.
CHUNK = 200
# A creation Temporal could not take in time is tried again this many times (the same
# creation key: a retry is the same creation, never a second project).
ATTEMPTS = 3
# The project columns and one per task key, for the largest template a store accepts
# (api.schemas.TemplateIn: 200 tasks): a wider header is refused before it is looked at.
MAX_TASK_COLUMNS = 200
MAX_COLUMNS = len(PROJECT_COLUMNS) + len(OPTIONAL_COLUMNS) + MAX_TASK_COLUMNS


def may_import(caller: Caller) -> bool:
    """API.md: admin, pm (own body), prefecture (own bodies): those who create projects, and
    a prefecture for the bodies it sees. Each row is then checked against the caller's scope."""
    return caller.may(Action.CREATE_PROJECT) or caller.role == Role.PREFECTURE


@dataclass
class ImportRow:
    """One data row of the file: the creation it asks for, or why it cannot be one."""

    line: int
    body: ProjectCreate | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def project_id(self) -> str:
        assert self.body is not None
        return f"{self.body.lg_code}-{self.body.business}"


def _not_csv(detail: str) -> HTTPProblem:
    return HTTPProblem(422, f"the file is not an import CSV: {detail}")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is fine
    except UnicodeDecodeError as exc:
        raise HTTPProblem(
            422, f"the file is not UTF-8 (byte {exc.start} cannot be read); save it as UTF-8"
        ) from exc


def _cell_progress(value: str) -> dict[str, Any] | None:
    """A task cell as ProjectCreate's ``progress`` entry; None when empty. ValueError when it
    is none of the forms a cell may take."""
    if not value:
        return None
    status, sep, on = value.partition(":")
    if status == TaskStatus.DONE and sep:
        return {"status": status, "on": on.strip()}
    if not sep and status in (TaskStatus.DONE, TaskStatus.IN_PROGRESS, TaskStatus.NOT_APPLICABLE):
        return {"status": status}
    raise ValueError(f"{value!r} is not one of {CELL_FORMS}")


def _validation_errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()]


def _row(line: int, header: list[str], cells: list[str]) -> ImportRow:
    row = ImportRow(line)
    if len(cells) != len(header):
        row.errors.append(f"the row has {len(cells)} fields, the header has {len(header)}")
        return row
    values: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    for name, raw in zip(header, cells, strict=True):
        value = raw.strip()
        if name in PROJECT_COLUMNS or name in OPTIONAL_COLUMNS:
            if value:  # empty: the field's default (no vendor, not switching, ...)
                values[name] = value
            continue
        try:
            cell = _cell_progress(value)
        except ValueError as exc:
            row.errors.append(f"{name}: {exc}")
            continue
        if cell is not None:
            progress[name] = cell
    if row.errors:
        return row
    try:
        row.body = ProjectCreate.model_validate({**values, "progress": progress})
    except ValidationError as exc:
        row.errors.extend(_validation_errors(exc))
    return row


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """The file's records with the line each starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    try:
        for record in reader:
            yield line, record
            line = reader.line_num + 1
    except csv.Error as exc:
        raise _not_csv(f"line {reader.line_num}: {exc}") from exc


def parse_import(data: bytes) -> list[ImportRow]:
    """Every data row of an import file, each a creation or its reasons to be refused.

    Raises 422 for a file that is not UTF-8 or not an import CSV (no header naming the
    project columns), before any row is looked at."""
    text = _decode(data)
    if "\x00" in text:
        raise _not_csv("it holds NUL characters (a binary file?)")
    records = (r for r in _records(text) if any(c.strip() for c in r[1]))
    first = next(records, None)
    if first is None:
        raise _not_csv("it is empty; the first line must name the columns")
    if len(first[1]) > MAX_COLUMNS:
        raise _not_csv(
            f"the first line names {len(first[1])} columns; an import has at most "
            f"{MAX_COLUMNS} columns (the project columns and one per task key)"
        )
    header = [c.strip() for c in first[1]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise _not_csv(
            f"the first line must name the columns {', '.join(PROJECT_COLUMNS)} and one per "
            f"task key (missing: {', '.join(missing)})"
        )
    repeated = sorted(c for c, n in Counter(header).items() if n > 1)
    if repeated or "" in header:
        raise _not_csv(f"column names must be given once each ({', '.join(repeated) or 'empty'})")
    rows: list[ImportRow] = []
    seen: dict[tuple[str, str | None], int] = {}
    for line, cells in records:
        row = _row(line, header, cells)
        if row.body is not None:
            key = (row.body.lg_code, row.body.business)
            if key in seen:
                row.errors.append(f"duplicate of line {seen[key]} ({key[0]} {key[1]})")
                row.body = None
            else:
                seen[key] = line
        rows.append(row)
    return rows


# ---- checking and starting -------------------------------------------------------------


@dataclass
class Checked:
    """A row after the creation's rules: existing, refused, or a creation to start."""

    row: ImportRow
    creation: MigrationInput | None = None
    existing: bool = False
    attributes: TypedSearchAttributes | None = None  # those the creation starts with


def _problem_errors(p: HTTPProblem) -> list[str]:
    return [str(e["msg"]) for e in p.errors] if p.errors else [p.detail]


def check_rows(
    session: Session, caller: Caller, rows: list[ImportRow], settings: Settings
) -> list[Checked]:
    """Each row by the rules of POST /api/v1/projects, in one read-model session."""
    ids = [r.project_id for r in rows if r.body is not None]
    known = {
        p.id: p
        for p in session.exec(select(t.Project).where(col(t.Project.id).in_(ids)))
        if caller.sees(p)
    }
    out: list[Checked] = []
    for row in rows:
        if row.body is None:
            out.append(Checked(row))
            continue
        if row.project_id in known:
            out.append(Checked(row, existing=True))
            continue
        try:
            creation, attributes = commands.creation_input(session, caller, row.body, settings)
        except HTTPProblem as p:
            row.errors.extend(_problem_errors(p))
            out.append(Checked(row))
            continue
        # The row's own content is the creation's key: the same row again, or a retry of
        # it, is the same creation and not a conflict.
        creation.creation_key = commands._fingerprint(["import", row.body.model_dump(mode="json")])
        out.append(Checked(row, creation, attributes=attributes))
    return out


@dataclass
class ImportTally:
    """Counts so far, for a progress bar: ``done`` of ``total`` rows have an outcome."""

    total: int
    created: int = 0
    existing: int = 0
    refused: int = 0

    @property
    def done(self) -> int:
        return self.created + self.existing + self.refused


Progress = Callable[[ImportTally], None]


async def import_projects(
    ctx: Context, caller: Caller, data: bytes, on_progress: Progress | None = None
) -> ImportResult:
    """Import a file: every good row created (or found existing), every bad one refused with
    its line and reasons. Creations start ``settings.import_concurrency`` at a time."""
    if not may_import(caller):
        raise HTTPProblem(403, f"a {caller.role} token may not import projects")
    rows = await anyio.to_thread.run_sync(parse_import, data)
    tally = ImportTally(len(rows))
    refused: list[ImportRefusal] = []
    slots = asyncio.Semaphore(max(1, ctx.settings.import_concurrency))

    def outcome(row: ImportRow, kind: str, errors: list[str] | None = None) -> None:
        if kind == "created":
            tally.created += 1
        elif kind == "existing":
            tally.existing += 1
        else:
            tally.refused += 1
            refused.append(ImportRefusal(line=row.line, errors=errors or row.errors))
        if on_progress is not None:
            on_progress(tally)

    async def start(item: Checked) -> None:
        assert item.creation is not None and item.attributes is not None
        try:
            for attempt in range(ATTEMPTS):
                try:
                    await commands.open_project(ctx, item.creation, item.attributes)
                except HTTPProblem as p:
                    if p.status == 409:  # created meanwhile, or ran and closed
                        outcome(item.row, "existing")
                    elif p.status == 503 and attempt + 1 < ATTEMPTS:
                        await asyncio.sleep(ctx.settings.retry_after_seconds * (attempt + 1))
                        continue
                    else:
                        outcome(item.row, "refused", _problem_errors(p))
                else:
                    outcome(item.row, "created")
                return
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        for i in range(0, len(rows), CHUNK):
            checked = await ctx.db.run(check_rows, caller, rows[i : i + CHUNK], ctx.settings)
            for item in checked:
                if item.existing:
                    outcome(item.row, "existing")
                elif item.creation is None:
                    outcome(item.row, "refused")
                else:
                    await slots.acquire()
                    group.create_task(start(item))
    refused.sort(key=lambda r: r.line)
    return ImportResult(created=tally.created, existing=tally.existing, refused=refused)
