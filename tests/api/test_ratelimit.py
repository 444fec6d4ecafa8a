"""One noisy integration is held back with 429 and Retry-After; everyone else is still served."""

from __future__ import annotations

import asyncio
import html
import re
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
        rate_limit_sign_in_per_address=f"{PER_ADDRESS}/minute",
        rate_limit_page_forms_per_address=f"{PER_ADDRESS}/minute",
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
    noisy, quiet = _bearer(tokens["noisy"]), _bearer(tokens["quiet"])
    # Each integration's first answer accepts its token; until then it counts against its
    # address like any token not yet seen, so a made-up one gets no budget of its own.
    for headers in (noisy, quiet):
        assert (await http.get("/api/v1/projects", headers=headers)).status_code == 200
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
    # Made-up tokens from one address: each a 401 until the address has spent its budget
    # for tokens not yet accepted (the first request of the quiet one took one), then 429
    # before the token is even looked up.
    statuses = Counter()
    for n in range(3 * PER_ADDRESS):
        made_up = _bearer(f"hyj_made-up-{n}")
        statuses[(await http.get("/api/v1/projects", headers=made_up)).status_code] += 1
    assert statuses == {401: PER_ADDRESS - 1, 429: 2 * PER_ADDRESS + 1}, statuses
    refused = await http.get("/api/v1/projects", headers=_bearer("hyj_one-more"))
    assert "refused tokens from this address" in refused.json()["detail"]
    # A token already accepted from the same address is still served.
    assert (await http.get("/api/v1/projects", headers=quiet)).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/api/v1/calendar/cal_made-up-feed-address.ics", "/api/v1/no-such-route"],
)
async def test_rate_limit_made_up_tokens_get_no_budget_of_their_own(
    limited: tuple[httpx.AsyncClient, dict[str, str]], path: str
) -> None:
    """Routes that answer without looking at the token (the calendar feed, an unknown
    address) are no way around the limit: a token not yet accepted counts against its
    address, whatever it is."""
    http, tokens = limited
    statuses: Counter[int] = Counter()
    for n in range(3 * PER_ADDRESS):
        statuses[(await http.get(path, headers=_bearer(f"hyj_random-{n}"))).status_code] += 1
    assert statuses == {404: PER_ADDRESS, 429: 2 * PER_ADDRESS}, statuses
    # None of them was taken for an accepted token: sent anywhere else, it is refused too.
    assert (await http.get("/api/v1/projects", headers=_bearer("hyj_random-0"))).status_code == 429
    tokenless = await http.get(path)
    assert tokenless.status_code == 404  # requests without a token have a budget of their own


async def test_rate_limit_page_sign_in_and_forms_count_per_address(
    limited: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = limited
    form = await http.get("/login")
    token = html.unescape(re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1))
    statuses: Counter[int] = Counter()
    for n in range(2 * PER_ADDRESS):
        answer = await http.post("/login", data={"csrftoken": token, "token": f"hyj_guess-{n}"})
        statuses[answer.status_code] += 1
    assert statuses == {303: PER_ADDRESS, 429: PER_ADDRESS}, statuses
    assert "操作が集中しています" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    # Other forms of the pages too (here signing out, which needs no session).
    statuses.clear()
    for _ in range(2 * PER_ADDRESS):
        statuses[(await http.post("/logout", data={"csrftoken": token})).status_code] += 1
    assert statuses == {303: PER_ADDRESS, 429: PER_ADDRESS}, statuses
    assert (await http.get("/login")).status_code == 200  # reading a page is not limited


async def test_rate_limit_tells_clients_apart_behind_a_trusted_proxy(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    """Behind the ingress every request comes from its address: the client it names in
    X-Forwarded-For is counted instead, when that proxy is one the settings trust, and only
    then (a client cannot name itself someone else)."""
    limits = {"rate_limit_per_address": f"{PER_ADDRESS}/minute"}
    for trusted, apart in (("127.0.0.1/32", True), ("", False)):
        settings = Settings(database_url=database_url, forwarded_allow_ips=trusted, **limits)
        app = create_app(settings, client=dev_env.client, engine=make_engine(database_url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                first = {"X-Forwarded-For": "203.0.113.7"}
                for _ in range(PER_ADDRESS):
                    assert (await http.get("/api/v1/projects", headers=first)).status_code == 401
                assert (await http.get("/api/v1/projects", headers=first)).status_code == 429
                second = {"X-Forwarded-For": "198.51.100.9"}
                answer = await http.get("/api/v1/projects", headers=second)
                assert answer.status_code == (401 if apart else 429), trusted
