"""One noisy integration is held back with 429 and Retry-After; everyone else is still served."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from api.main import create_app
from readmodel import tables as t
from readmodel.db import make_engine
from runtime.settings import Settings

PER_TOKEN = 10
PER_ADDRESS = 5


@pytest.fixture
async def limited(
    dev_env: WorkflowEnvironment, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    # Per minute, so no window passes while the test runs.
    settings = Settings(
        database_url=database_url,
        rate_limit_per_token=f"{PER_TOKEN}/minute",
        rate_limit_per_address=f"{PER_ADDRESS}/minute",
    )
    engine = make_engine(database_url)
    tokens = {}
    with Session(engine) as session:
        for vendor in ("noisy", "quiet"):
            session.add(t.Vendor(id=vendor, name=vendor))
            session.commit()
            tokens[vendor] = create_token(session, role="vendor", name=vendor, vendor_id=vendor)[1]
    app = create_app(settings, client=dev_env.client, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, tokens
    engine.dispose()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_rate_limit_noisy_token_gets_429_while_another_is_served(
    limited: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = limited
    noisy = _bearer(tokens["noisy"])
    answers = await asyncio.gather(
        *(http.get("/api/v1/projects", headers=noisy) for _ in range(40))
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: PER_TOKEN, 429: 40 - PER_TOKEN}, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429 and refused.json()["title"] == "Too Many Requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-Request-ID"]  # logged and counted like any answer

    # The other vendor's integration is not starved, during the flood and after it.
    quiet = _bearer(tokens["quiet"])
    during = await asyncio.gather(
        *(http.get("/api/v1/projects", headers=noisy) for _ in range(20)),
        *(http.get("/api/v1/projects", headers=quiet) for _ in range(PER_TOKEN)),
    )
    assert all(a.status_code == 429 for a in during[:20])
    assert all(a.status_code == 200 for a in during[20:])

    # Health, readiness and metrics are never limited.
    for path in ("/healthz", "/metrics"):
        assert (await http.get(path)).status_code == 200


async def test_rate_limit_requests_without_a_token_count_per_address(
    limited: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = limited
    answers = await asyncio.gather(*(http.get("/api/v1/projects") for _ in range(3 * PER_ADDRESS)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: PER_ADDRESS, 429: 2 * PER_ADDRESS}, statuses
    # A token of its own is counted apart from the address it comes from.
    answer = await http.get("/api/v1/projects", headers=_bearer(tokens["quiet"]))
    assert answer.status_code == 200


async def test_rate_limit_refused_tokens_spend_their_address_budget(
    limited: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = limited
    quiet = _bearer(tokens["quiet"])
    assert (await http.get("/api/v1/projects", headers=quiet)).status_code == 200
    # Made-up tokens from one address: each a 401 until the address has spent its budget,
    # then 429 before the token is even looked up.
    statuses = Counter()
    for n in range(3 * PER_ADDRESS):
        made_up = _bearer(f"hyj_made-up-{n}")
        statuses[(await http.get("/api/v1/projects", headers=made_up)).status_code] += 1
    assert statuses == {401: PER_ADDRESS, 429: 2 * PER_ADDRESS}, statuses
    refused = await http.get("/api/v1/projects", headers=_bearer("hyj_one-more"))
    assert "refused tokens from this address" in refused.json()["detail"]
    # A token already accepted from the same address is still served.
    assert (await http.get("/api/v1/projects", headers=quiet)).status_code == 200
