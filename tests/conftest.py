"""Real servers for the suite, one of each per session: the Temporal time-skipping server,
the Temporal dev server (both from their PyPI packages), SQLite files and, when
HYOJUNKA_TEST_POSTGRES_URL is set, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from readmodel.db import make_engine, upgrade_schema
from runtime.binaries import temporal_cli, temporal_test_server
from runtime.temporal import register_search_attributes
from tests.workflows.helpers import own_time_skipping_server
from workflows import search_attributes as sa
from workflows.payloads import DATA_CONVERTER

POSTGRES_URL = os.environ.get("HYOJUNKA_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(),
        data_converter=DATA_CONVERTER,
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
async def clock_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own, for scenarios that move the clock.

    The server has one clock for all workflows. Moving it on the shared server wakes the
    timers of every earlier test's workflows, whose workers are gone, and the server then
    waits for work nobody will do; and years skipped by one scenario would push the next
    past the 2031 limit.
    """
    env = await own_time_skipping_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=DATA_CONVERTER,
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


def _sqlite_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'readmodel.db'}"


def _fresh_postgres_schema(base_url: str) -> tuple[str, str]:
    """A new PostgreSQL schema per test module so runs never see each other's rows."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = make_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}", schema


def _drop_postgres_schema(base_url: str, schema: str) -> None:
    engine = make_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = _sqlite_url(tmp_path)
    upgrade_schema(url)
    return url


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


def database_backends() -> list[str]:
    return ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


@pytest.fixture(params=database_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The read model on each backend the run has: SQLite always, PostgreSQL when given."""
    if request.param == "sqlite":
        url = _sqlite_url(tmp_path)
        upgrade_schema(url)
        yield url
        return
    assert POSTGRES_URL
    url, schema = _fresh_postgres_schema(POSTGRES_URL)
    upgrade_schema(url)
    try:
        yield url
    finally:
        _drop_postgres_schema(POSTGRES_URL, schema)
