"""The pages' server and browser: the real stack (Temporal dev server, worker, uvicorn,
SQLite) and Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from api.main import create_app
from readmodel import tables as t
from readmodel.db import make_engine
from runtime.settings import Settings
from tests.api.conftest import fresh_project
from worker.runner import build_worker

# Screenshots a person can look at after a run (CI keeps the folder as an artefact).
ARTIFACTS = Path(os.environ.get("HYOJUNKA_TEST_ARTIFACTS", "build/screenshots"))


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    base: str
    tokens: dict[str, str]
    lg_code: str
    business: str


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def site(dev_env: WorkflowEnvironment, sqlite_url: str) -> AsyncIterator[Site]:
    port = _port()
    settings = Settings(
        task_queue=f"pages-{uuid.uuid4().hex}",
        database_url=sqlite_url,
        api_port=port,
        public_url=f"http://127.0.0.1:{port}",
    )
    engine = make_engine(sqlite_url)
    lg_code, business = fresh_project()
    tokens = {}
    with Session(engine) as session:
        session.add(t.Vendor(id="acme", name="アクメ情報システム"))
        session.commit()
        for role, scope in (
            ("pm", {"lg_code": lg_code}),
            ("approver", {"lg_code": lg_code}),
            ("observer", {}),
            ("prefecture", {"prefecture": lg_code[:2]}),
            ("admin", {}),
            ("vendor", {"vendor_id": "acme"}),
        ):
            _, tokens[role] = create_token(session, role=role, name=f"{role}-1", **scope)
    app = create_app(settings, client=dev_env.client, engine=engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning")
    )
    async with build_worker(dev_env.client, engine, settings) as worker, worker:
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        yield Site(f"http://127.0.0.1:{settings.api_port}", tokens, lg_code, business)
        server.should_exit = True
        await serving
    engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        await b.close()


async def login(browser: Browser, site: Site, role: str, **options: object) -> Page:
    """A browser signed in as ``role``; it lands where that role starts its day."""
    page = await browser.new_page(locale="ja-JP", **options)  # type: ignore[arg-type]
    await page.goto(f"{site.base}/login")
    await page.fill("#token", site.tokens[role])
    await page.click("#token-form button[type=submit]")
    landing = "進捗集計" if role in ("observer", "prefecture") else "プロジェクト一覧"
    await expect(page.locator("h1")).to_contain_text(landing)
    return page


async def csrf_token(page: Page) -> str:
    """The CSRF token the page's own forms carry, for a form a test sends by hand."""
    value = await page.locator("input[name=csrftoken]").first.get_attribute("value")
    assert value
    return value


async def shoot(page: Page, name: str) -> Path:
    """A full-page screenshot kept in ARTIFACTS (Playwright makes the folder)."""
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
