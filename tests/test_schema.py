"""The migrations build exactly the schema the tables declare, on SQLite and PostgreSQL:
a column or an index added to readmodel/tables.py without its migration (or the reverse)
would leave a deployed database without what the code reads."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import Session, SQLModel, select

from readmodel import tables as t  # the tables, declared on SQLModel.metadata
from readmodel.db import alembic_config, make_engine, upgrade_schema
from readmodel.golive import month_of
from tests.conftest import (
    POSTGRES_URL,
    _drop_postgres_schema,
    _fresh_postgres_schema,
    database_backends,
)


def test_the_migrations_build_the_declared_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_an_existing_read_model_gets_its_go_live_months(tmp_path: Path) -> None:
    """Upgrading a read model written before the go-live months were kept: a live project
    counts in the JST month its cutover was done, one slipping day by day keeps its terms,
    and every task carries its project's vendor."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_engine(url).dispose()
    command.upgrade(alembic_config(url), "0014")
    engine = make_engine(url)
    row = (
        "INSERT INTO project (id, workflow_id, lg_code, body_name, prefecture, business, "
        "business_name, vendor_id, switching_vendor, template, kind, target_go_live, deadline, "
        "forecast_go_live, forecast_slip_days, forecast_slips_from, stage, health, done, "
        "in_progress, not_started, not_applicable, completion_rate, in_progress_rate, "
        "not_started_rate, seq) VALUES (:id, :id, '131016', '千代田区', '13', :b, '-', 'acme', "
        "0, 'mic-handbook@1.0', 'migration', :target, '2026-03-31', :target, :slip, :since, "
        "'migration', 'on_track', 0, 0, 0, 0, 0, 0, 0, 1)"
    )
    task = (
        "INSERT INTO task (project_id, key, position, name, stage, owner, gate, status, "
        "due_date, completed_at) VALUES (:p, 'cutover', 0, '本番移行', 'cutover', 'vendor', 0, "
        ":status, '2027-04-30', :at)"
    )
    with engine.begin() as conn:
        conn.execute(
            text(row),
            {"id": "131016-live", "b": "live", "target": "2027-04-30", "slip": 0, "since": None},
        )
        conn.execute(
            text(row),
            {
                "id": "131016-slip",
                "b": "slip",
                "target": "2027-04-30",
                "slip": 3,
                "since": "2026-11-01",
            },
        )
        # Done at 00:30 JST on 1 May: 30 April in UTC.
        conn.execute(
            text(task), {"p": "131016-live", "status": "done", "at": "2027-04-30 15:30:00.000000"}
        )
        conn.execute(text(task), {"p": "131016-slip", "status": "not_started", "at": None})
    engine.dispose()
    upgrade_schema(url)
    engine = make_engine(url)
    with Session(engine) as session:
        live = session.get(t.Project, "131016-live")
        slipping = session.get(t.Project, "131016-slip")
        assert live is not None and slipping is not None
        assert live.live_month == month_of(date(2027, 5, 1))
        assert slipping.live_month is None
        assert slipping.forecast_moves_from == date(2026, 11, 5)
        assert slipping.forecast_offset == (date(2027, 4, 30) - date(2026, 11, 1)).days
        assert {r.vendor_id for r in session.exec(select(t.Task))} == {"acme"}
    engine.dispose()


@pytest.mark.parametrize("backend", database_backends())
def test_an_existing_read_model_gets_its_vendor_task_days(backend: str, tmp_path: Path) -> None:
    """Upgrading a read model written before vendors' tasks were counted by day: the counts
    start from the tasks already there, and the triggers keep them from then on."""
    if backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'old.db'}", None
        make_engine(url).dispose()
    else:
        assert POSTGRES_URL
        url, schema = _fresh_postgres_schema(POSTGRES_URL)
    try:
        command.upgrade(alembic_config(url), "0015")
        engine = make_engine(url)
        task = (
            "INSERT INTO task (project_id, key, position, name, stage, owner, gate, status, "
            "due_date, vendor_id) VALUES (:p, :k, 0, :k, 'migration', :owner, false, :status, "
            ":due, :vendor)"
        )
        rows = [
            ("131016-a", "system_setup", "vendor", "done", "2027-04-30", "acme"),
            ("131016-b", "system_setup", "vendor", "in_progress", "2027-04-30", "acme"),
            ("131016-c", "system_setup", "vendor", "not_applicable", "2027-04-30", "acme"),
            ("131016-a", "training", "municipality", "not_started", "2027-04-30", "acme"),
            ("131016-d", "system_setup", "vendor", "not_started", "2027-04-30", None),
            ("131016-a", "cutover", "vendor", "not_started", "2027-05-31", "acme"),
        ]
        with engine.begin() as conn:
            for p, k, owner, status, due, vendor in rows:
                conn.execute(
                    text(task),
                    {
                        "p": p,
                        "k": k,
                        "owner": owner,
                        "status": status,
                        "due": date.fromisoformat(due),
                        "vendor": vendor,
                    },
                )
        engine.dispose()
        upgrade_schema(url)
        engine = make_engine(url)
        days = (
            "SELECT CAST(due_date AS VARCHAR), vendor_id, tasks, done FROM vendor_task_day "
            "ORDER BY due_date"
        )
        with engine.begin() as conn:
            assert [tuple(r) for r in conn.execute(text(days))] == [
                ("2027-04-30", "acme", 2, 1),
                ("2027-05-31", "acme", 1, 0),
            ]
            conn.execute(text("UPDATE task SET status = 'done' WHERE key = 'cutover'"))
            conn.execute(text("UPDATE task SET vendor_id = 'acme' WHERE project_id = '131016-d'"))
            assert [tuple(r) for r in conn.execute(text(days))] == [
                ("2027-04-30", "acme", 3, 1),
                ("2027-05-31", "acme", 1, 1),
            ]
        engine.dispose()
    finally:
        if schema is not None:
            assert POSTGRES_URL
            _drop_postgres_schema(POSTGRES_URL, schema)
