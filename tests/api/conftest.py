"""The API in-process against the real Temporal dev server, a real worker and a real database."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from api.main import create_app
from readmodel import tables as t
from readmodel.db import make_engine
from readmodel.registry import registry
from runtime.settings import Settings
from tests.smtp import Mailbox, smtp_server
from worker.runner import build_worker
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.calendar import add_months

TARGET = add_months(date.today(), 36)
RECEIVER_HOST = "127.0.0.2"


@dataclass
class Api:
    http: httpx.AsyncClient
    engine: Engine
    env: WorkflowEnvironment
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def token(self, who: str, role: str, **scope: str) -> str:
        with Session(self.engine) as session:
            _, secret = create_token(session, role=role, name=who, **scope)
        self.tokens[who] = secret
        return secret

    async def create(self, lg_code: str, business: str, **extra: object) -> httpx.Response:
        body = {
            "lg_code": lg_code,
            "business": business,
            "target_go_live": TARGET.isoformat(),
            "vendor_id": "acme",
            **extra,
        }
        return await self.http.post("/api/v1/projects", json=body, headers=self.auth("admin"))


# The schema fuzzer's own project (tests/api/test_fuzz.py) on the shared Temporal server: a
# random pick of the same pair would leave it a workflow whose worker has gone.
_USED: set[tuple[str, str]] = {("131016", "resident_registry")}
# Bodies a test has taken whole: a body's notices meet in digests named by the body (and
# audience and hour), so a test that waits for such a notice needs a body no other test on
# this Temporal server has written to, or its notice may join a digest whose worker has gone.
_WHOLE: set[str] = set()


def fresh_body(codes: list[str]) -> str:
    """One of ``codes`` that no other test has registered a project of, taken whole."""
    used = {code for code, _ in _USED} | _WHOLE
    free = [c for c in codes if c not in used]
    assert free, "every body of this choice has been used by another test"
    code = random.choice(free)
    _WHOLE.add(code)
    return code


def fresh_project(prefecture_owned: bool = False) -> tuple[str, str]:
    """A (local body, business) pair no other test on this Temporal server has used."""
    codes = [c for c in registry()._by_code if (c[2:5] == "000") == prefecture_owned]
    slugs = (
        sorted(PREFECTURE_BUSINESSES)
        if prefecture_owned
        else [b.slug for b in BUSINESSES if b.slug not in PREFECTURE_BUSINESSES]
    )
    while True:
        pair = (random.choice(codes), random.choice(slugs))
        if pair not in _USED and pair[0] not in _WHOLE:
            _USED.add(pair)
            return pair


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    """The suite's SMTP server: invitations, sign-in links and notices arrive here."""
    with smtp_server() as box:
        yield box


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, database_url: str, mailbox: Mailbox, tmp_path: Path
) -> AsyncIterator[Api]:
    queue = f"api-{uuid.uuid4().hex}"
    # Delivery tests' receivers listen on 127.0.0.2, the one private address allowed here;
    # the rest of loopback stays refused, as the channel tests expect.
    # A wave's notices gather for half a second here, not a minute: tests wait for them.
    settings = Settings(
        task_queue=queue,
        database_url=database_url,
        smtp_url=SecretStr(mailbox.url),
        mail_dir=tmp_path / "mail",
        outbound_allow=RECEIVER_HOST + "/32",
        notification_digest_seconds=0.5,
        # A test sends the first requests of a dozen new tokens, and refused ones, within a
        # second from one address, as no client does: the limits have tests of their own
        # (test_ratelimit.py).
        rate_limit_per_address="1000/second",
    )
    engine = make_engine(database_url)
    with Session(engine) as session:
        session.add(t.Vendor(id="acme", name="アクメ情報システム"))
        session.add(t.Vendor(id="other", name="他社"))
        session.commit()
    app = create_app(settings, client=dev_env.client, engine=engine)
    async with build_worker(dev_env.client, engine, settings) as worker, worker:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                a = Api(http, engine, dev_env, settings)
                a.token("admin", "admin")
                a.token("observer", "observer")
                a.token("vendor", "vendor", vendor_id="acme")
                a.token("other_vendor", "vendor", vendor_id="other")
                yield a
    engine.dispose()


@dataclass
class ProjectCtx:
    id: str
    lg_code: str
    business: str


@pytest.fixture
async def project(api: Api) -> ProjectCtx:
    lg_code, business = fresh_project()
    resp = await api.create(lg_code, business)
    assert resp.status_code == 201, resp.text
    api.token("pm", "pm", lg_code=lg_code)
    api.token("approver", "approver", lg_code=lg_code)
    api.token("prefecture", "prefecture", prefecture=lg_code[:2])
    other = "011002" if lg_code != "011002" else "012025"
    api.token("pm_elsewhere", "pm", lg_code=other)
    return ProjectCtx(resp.json()["id"], lg_code, business)
