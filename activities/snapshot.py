"""The monthly snapshot: every project's counts copied, in one statement, as of a month."""

from __future__ import annotations

import asyncio
from datetime import date

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.engine import Engine
from temporalio import activity

from readmodel import tables as t
from workflows.snapshot import SNAPSHOT_ACTIVITY

_PROJECTS = t.Project.__table__  # type: ignore[attr-defined]
_SNAPSHOTS = t.ProgressSnapshot.__table__  # type: ignore[attr-defined]
_COPIED = ("lg_code", "prefecture", "business", "vendor_id")
_COUNTS = ("done", "in_progress", "not_started", "not_applicable")


def store_snapshot(engine: Engine, month: date) -> int:
    """Replace ``month``'s snapshot with the projects as they stand (idempotent)."""
    columns = ["month", "project_id", *_COPIED, *_COUNTS]
    source = select(
        literal(month, _SNAPSHOTS.c.month.type).label("month"),
        _PROJECTS.c.id.label("project_id"),
        *(_PROJECTS.c[c] for c in (*_COPIED, *_COUNTS)),
    )
    with engine.begin() as conn:
        conn.execute(delete(_SNAPSHOTS).where(_SNAPSHOTS.c.month == month))
        conn.execute(insert(_SNAPSHOTS).from_select(columns, source))
        # Counted, not taken from rowcount: not every driver reports it for INSERT ... SELECT.
        count = select(func.count()).select_from(_SNAPSHOTS).where(_SNAPSHOTS.c.month == month)
        return int(conn.execute(count).scalar_one())


class SnapshotActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=SNAPSHOT_ACTIVITY)
    async def snapshot_progress(self, month: date) -> int:
        return await asyncio.to_thread(store_snapshot, self._engine, month)
