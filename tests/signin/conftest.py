"""Signing in through a real identity provider (oidc-provider under Node, tests/identity.py):
the app served by uvicorn on a real port, on the Temporal dev server and a SQLite read
model, and Debian's Chromium (the page tests' browser fixture)."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from readmodel import tables as t
from readmodel.db import make_engine
from runtime.settings import Settings
from tests.identity import IdentityProvider, free_port, identity_provider
from tests.pages.conftest import browser

__all__ = ["browser"]  # the page tests' Chromium, as a fixture here too

# The app on another site than the provider's (127.0.0.1): the browser then treats the
# provider's redirect back as the cross-site navigation it is in service.
APP_HOST = "127.0.0.2"
CLIENT_ID = "hyojunka"
LG_CODE = "131016"


@dataclass
class SignInSite:
    base: str
    engine: Engine
    settings: Settings
    provider: IdentityProvider | None

    def person(self, name: str, email: str, *, active: bool = True) -> int:
        """A body's pm, as an invitation makes them."""
        with Session(self.engine) as session:
            person = t.Person(
                name=name,
                email=email,
                email_key=email.lower(),
                role="pm",
                lg_code=LG_CODE,
                active=active,
                notify="each",
            )
            session.add(person)
            session.commit()
            assert person.id is not None
            return person.id

    def sessions(self) -> list[t.PageSession]:
        with Session(self.engine) as session:
            return list(session.exec(select(t.PageSession)).all())

    def people(self) -> list[t.Person]:
        with Session(self.engine) as session:
            return list(session.exec(select(t.Person).order_by(col(t.Person.id))).all())


@asynccontextmanager
async def serve(
    dev_env: WorkflowEnvironment,
    database_url: str,
    folder: Path,
    *,
    with_provider: bool = True,
    expected_client_id: str = CLIENT_ID,
    id_token_claims: bool = True,
    issuer: str | None = None,
    **more: Any,
) -> AsyncIterator[SignInSite]:
    """The provider (unless ``with_provider`` is false) and the app configured for it.
    ``expected_client_id``: the client id the app is configured with, which the provider
    knows only when it is ``CLIENT_ID``; ``issuer``: the app's issuer instead of the
    provider's; ``more``: other settings."""
    port = free_port(APP_HOST)
    base = f"http://{APP_HOST}:{port}"
    secret = uuid.uuid4().hex
    async with _provider(folder, base, secret, with_provider, id_token_claims) as provider:
        settings = Settings(
            task_queue=f"signin-{uuid.uuid4().hex}",
            database_url=database_url,
            api_port=port,
            public_url=base,
            oidc_issuer=issuer if issuer is not None else provider.issuer if provider else "",
            oidc_client_id=expected_client_id,
            oidc_client_secret=secret,  # type: ignore[arg-type]
            oidc_label="テスト市のアカウントでログイン",
            **more,
        )
        engine = make_engine(database_url)
        app = create_app(settings, client=dev_env.client, engine=engine)
        server = uvicorn.Server(uvicorn.Config(app, host=APP_HOST, port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110
            if serving.done():
                serving.result()
            await asyncio.sleep(0.05)
        try:
            yield SignInSite(base, engine, settings, provider)
        finally:
            server.should_exit = True
            await serving
            engine.dispose()


@asynccontextmanager
async def _provider(
    folder: Path, base: str, secret: str, wanted: bool, id_token_claims: bool
) -> AsyncIterator[IdentityProvider | None]:
    if not wanted:
        yield None
        return
    async with identity_provider(
        folder / "provider",
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uris=[f"{base}/login/oidc/callback"],
        id_token_claims=id_token_claims,
    ) as provider:
        yield provider


@pytest.fixture
async def signin_site(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[SignInSite]:
    async with serve(dev_env, sqlite_url, tmp_path) as site:
        yield site


def account(email: str, name: str, *, verified: bool = True) -> dict[str, Any]:
    """An account at the provider (its login name is its subject)."""
    return {
        "email": email,
        "email_verified": verified,
        "name": name,
    }


def _form_action(page: httpx.Response) -> str:
    found = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert found, page.text[:500]
    return urljoin(str(page.url), html.unescape(found.group(1)))


async def through_provider(http: httpx.AsyncClient, site: SignInSite, login: str) -> httpx.Response:
    """What a browser without script does: the provider's button, its login form (any
    password), its consent form, and the app's answer to the provider's redirect back."""
    answer = await http.get(f"{site.base}/login/oidc", follow_redirects=True)
    fields = {"prompt": "login", "login": login, "password": "any"}
    answer = await http.post(_form_action(answer), data=fields, follow_redirects=True)
    if answer.url.path.startswith("/interaction/"):  # consent, the first time
        answer = await http.post(
            _form_action(answer), data={"prompt": "consent"}, follow_redirects=True
        )
    return answer
