"""Each vendor's tasks due on each day (``vendor_task_day``), kept by triggers on the task
table, stay equal to a count of the tasks themselves through every kind of write the read
model takes: projects written whole and in part, tasks done and reopened, replanned, made
not applicable, a vendor replaced, rows deleted; and with two writers (two worker
processes) writing at once. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from activities.projection import ProjectionWriter, write_projection
from readmodel.db import make_engine
from tests import day_counts
from tests.workflows.helpers import new_input
from workflows.core import Migration
from workflows.model import (
    APPLIED,
    Event,
    MigrationState,
    ProjectionInput,
    ProjectSnapshot,
    escalation_rows,
    progress_of,
    projection,
    task_rows,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


class Project:
    """A project's state, written to the read model as its workflow writes it: whole first,
    then the rows that changed since the last write."""

    def __init__(self, lg_code: str, target: date, vendor: str) -> None:
        inp = new_input(target, lg_code=lg_code)
        inp.vendor_id = vendor
        self.s: MigrationState = Migration.start(inp, NOW).s
        self.sent: dict[str, Any] | None = None
        self.base = 0
        self.vendor_tasks = [k.key for k in self.s.template.tasks if k.owner == "vendor"]

    def write(self, *, whole: bool = False) -> ProjectionInput:
        s = self.s
        s.seq += 1
        s.journal.append(Event(s.seq, NOW, "vendor:x", "task_updated", {}))
        snap = ProjectSnapshot(
            state=s,
            stage="migration",
            health="on_track",
            progress=progress_of([x.status for x in s.tasks.values()]),
            events=[e for e in s.journal if e.seq > self.base],
        )
        tasks = task_rows(s)
        sent = None if whole else self.sent
        w = projection(snap, self.base, tasks, escalation_rows(s), sent, None if whole else {})
        self.sent, self.base = tasks, s.seq
        return w

    def set(self, key: str, status: str) -> None:
        self.s.tasks[key].status = status


def _apply(engine: Engine, w: ProjectionInput) -> None:
    with Session(engine) as session:
        assert write_projection(session, w) == APPLIED
        session.commit()


def test_the_counts_follow_every_write_of_a_task(database_url: str) -> None:
    engine = make_engine(database_url)
    projects = [
        Project(f"13{i:04d}", date(2029, 4, 1) + timedelta(days=7 * (i % 3)), vendor)
        for i, vendor in enumerate(["acme", "acme", "beta", "acme", "beta", "gamma"])
    ]
    for p in projects:
        _apply(engine, p.write(whole=True))
    kept = day_counts.kept(engine)
    assert kept == day_counts.definition(engine)
    # Five vendor tasks a project, none done: acme's three projects share their days in part.
    assert sum(n for (_, v), (n, _) in kept.items() if v == "acme") == 15

    a, b, c, d, e, f = projects
    a.set("system_setup", "done")
    a.set("data_migration", "in_progress")
    b.set("system_setup", "done")
    c.set("decommission", "not_applicable")
    d.s.tasks["testing"].due_date = date(2029, 1, 15)  # replanned
    for p in (a, b, c, d):
        _apply(engine, p.write())
    assert day_counts.kept(engine) == day_counts.definition(engine)

    b.set("system_setup", "in_progress")  # reopened
    c.set("decommission", "not_started")  # applies again
    e.s.vendor_id = "acme"  # its vendor replaced: every task follows
    for p in (b, c, e):
        _apply(engine, p.write())
    assert day_counts.kept(engine) == day_counts.definition(engine)
    by_vendor = {v: 0 for v in ("acme", "beta", "gamma")}
    for (_, v), (n, _) in day_counts.kept(engine).items():
        by_vendor[v] += n
    assert by_vendor == {"acme": 20, "beta": 5, "gamma": 5}

    # A whole write over rows already there (an upsert of every task).
    f.set("cutover", "done")
    f.s.tasks["cutover"].due_date = date(2029, 3, 31)
    _apply(engine, f.write(whole=True))
    assert day_counts.kept(engine) == day_counts.definition(engine)

    # Rows written by hand: an owner changed, a project's tasks deleted.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE task SET owner = 'municipality' WHERE project_id = :p AND key = :k"),
            {"p": d.s.project_id, "k": "testing"},
        )
        conn.execute(text("DELETE FROM task WHERE project_id = :p"), {"p": a.s.project_id})
    assert day_counts.kept(engine) == day_counts.definition(engine)
    engine.dispose()


def test_two_writers_at_once_keep_every_count_and_fail_no_write(database_url: str) -> None:
    """Two writers, as two worker processes have, each with its own engine and thread,
    taking 240 writes from twenty threads at once: projects of one vendor going live on the
    same day, so each batch moves counts the other's batches move too, in varied orders."""
    engines = [make_engine(database_url) for _ in range(2)]
    writers = [ProjectionWriter(engine) for engine in engines]
    projects = [Project(f"27{i:04d}", date(2029, 4, 1), "acme") for i in range(40)]
    for p in projects:
        _apply(engines[0], p.write(whole=True))
    failures: list[BaseException] = []
    statuses = ["not_started", "in_progress", "done"]

    def client(n: int) -> None:
        rng = random.Random(n)
        mine = projects[n::20]
        for round_ in range(12):
            p = mine[round_ % len(mine)]
            for key in rng.sample(p.vendor_tasks, 3):
                p.set(key, rng.choice(statuses))
            try:
                outcome = writers[rng.randrange(2)].submit(p.write()).result(timeout=60)
                assert outcome == APPLIED
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    assert failures == []
    assert day_counts.kept(engines[0]) == day_counts.definition(engines[0])
    for engine in engines:
        engine.dispose()
