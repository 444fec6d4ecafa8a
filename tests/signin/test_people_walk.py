"""People as they arrive, end to end in Chromium: a prefecture's liaison invited by mail
signs in with the link and invites a body's pm on /people; the pm signs in through the
body's identity provider; a late project's notice reaches the pm's mailbox as Japanese
mail whose link opens the project; the pm is deactivated and the open browser is refused
on its next page. The real stack: Temporal dev server and worker, uvicorn, oidc-provider,
an SMTP server (aiosmtpd) and Debian's Chromium."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import httpx
from playwright.async_api import Browser, expect
from pydantic import SecretStr
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from readmodel import tables as t
from readmodel.registry import LocalBody, registry
from tests.api.conftest import fresh_body
from tests.pages.conftest import shoot
from tests.signin.conftest import LG_CODE, account, serve
from tests.signin.test_oidc import FONTS
from tests.smtp import body_of, link_in, smtp_server
from worker.runner import build_worker
from workflows.businesses import BY_SLUG
from workflows.calendar import add_months


def _tokyo_body() -> LocalBody:
    codes = sorted(
        b.lg_code
        for b in registry().bodies
        if b.prefecture_code == LG_CODE[:2] and not b.is_prefecture and b.lg_code != LG_CODE
    )
    found = registry().get(fresh_body(codes))
    assert found is not None
    return found


async def test_a_liaison_invites_a_pm_who_signs_in_hears_of_a_late_project_and_is_let_go(
    browser: Browser, dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    # The pm's body: one of the prefecture's that no other test on this Temporal server has
    # registered a project of (the fuzzer registers the demo body's at random): the pm's
    # notice must not join a digest of the body whose worker has gone with its test.
    body = _tokyo_body()
    liaison_email = f"renraku.{tag}@pref.tokyo.example.jp"
    pm_email = f"tanto.{tag}@city.chiyoda.example.jp"
    with smtp_server() as mailbox:
        async with serve(
            dev_env,
            sqlite_url,
            tmp_path,
            smtp_url=SecretStr(mailbox.url),
            notification_digest_seconds=0.5,
        ) as site:
            assert site.provider is not None
            site.provider.set_accounts({"tanto": account(pm_email, "Tanto Chiyoda")})
            with Session(site.engine) as session:
                session.add(t.Vendor(id="acme", name="アクメ情報システム"))
                session.commit()
                _, admin = create_token(session, role="admin", name="operator")
            api = httpx.AsyncClient(
                base_url=site.base, headers={"Authorization": f"Bearer {admin}"}, timeout=60
            )
            async with build_worker(dev_env.client, site.engine, site.settings) as worker, worker:
                # The operator invites the prefecture's liaison.
                made = await api.post(
                    "/api/v1/people",
                    json={
                        "name": "東京 連絡",
                        "email": liaison_email,
                        "role": "prefecture",
                        "prefecture": LG_CODE[:2],
                    },
                )
                assert made.status_code == 201, made.text
                (invitation,) = await mailbox.wait_for(liaison_email)
                liaison = await (await browser.new_context(locale="ja-JP")).new_page()
                await liaison.goto(site.base + link_in(invitation))
                await liaison.get_by_role("button", name="ログインする").click()
                await expect(liaison.locator("header .who")).to_contain_text("東京 連絡")

                # The liaison invites the body's pm on /people.
                await liaison.goto(f"{site.base}/people")
                form = liaison.locator("form[action='/people']")
                await form.locator("input[name=name]").fill("千代田 担当")
                await form.locator("input[name=email]").fill(pm_email)
                await form.locator("select[name=role]").select_option("pm")
                await form.locator("input[name=lg_code]").fill(body.lg_code)
                await form.get_by_role("button", name="招待メールを送る").click()
                await expect(liaison.get_by_role("status")).to_contain_text(
                    "招待メールを送りました"
                )
                await shoot(liaison, "people-invited")
                await mailbox.wait_for(pm_email)  # the pm's invitation

                # The pm signs in through the body's identity provider instead.
                pm_context = await browser.new_context(locale="ja-JP")
                await pm_context.route(FONTS, lambda route: route.abort())
                pm = await pm_context.new_page()
                await pm.goto(f"{site.base}/login")
                await pm.get_by_role("link", name="テスト市のアカウントでログイン").click()
                await pm.fill("input[name=login]", "tanto")
                await pm.fill("input[name=password]", "any")
                await pm.click("button[type=submit]")
                await pm.click("button:has-text('Continue')")
                await expect(pm.locator("header .who")).to_contain_text("千代田 担当")

                # A late project of the body: its PM hears of it by mail, in Japanese.
                target = add_months(date.today(), 8)
                business = "resident_registry"
                created = await api.post(
                    "/api/v1/projects",
                    json={
                        "lg_code": body.lg_code,
                        "business": business,
                        "target_go_live": target.isoformat(),
                        "vendor_id": "acme",
                    },
                )
                assert created.status_code == 201, created.text
                project_id = created.json()["id"]
                notices = await mailbox.wait_for(pm_email, count=2, within=60)
                notice = notices[-1]
                assert (
                    body.name in notice["Subject"] and BY_SLUG[business].name in notice["Subject"]
                )
                text = body_of(notice)
                assert body.name in text and f"{site.base}/" in text
                link = next(w for w in text.split() if w.startswith(site.base))
                await pm.goto(link)
                await expect(pm.locator("h1")).not_to_have_text("ログイン")
                assert project_id in pm.url or "/escalations" in pm.url

                # The liaison deactivates the pm: the pm's open browser is refused next.
                await liaison.goto(f"{site.base}/people?q={tag}")
                row = liaison.locator("tr", has_text=pm_email)
                await row.locator("summary", has_text="無効にする").click()
                await row.get_by_role("button", name="千代田 担当 さんを無効にする").click()
                await expect(liaison.get_by_role("status")).to_contain_text("無効にしました")
                await pm.goto(f"{site.base}/projects/{project_id}")
                await expect(pm.locator("h1")).to_have_text("ログイン")
                assert pm.url == f"{site.base}/login"
            await api.aclose()
