"""Signing in through the body's own OpenID Connect provider: a real provider
(oidc-provider), the app served on a real port, Chromium for the whole walk, httpx for the
refusals."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import Browser, expect
from structlog.testing import capture_logs
from temporalio.testing import WorkflowEnvironment

from tests.identity import free_port
from tests.pages.conftest import shoot
from tests.signin.conftest import SignInSite, account, serve, through_provider

FONTS = "https://fonts.googleapis.com/**"  # the provider's dev pages ask for a web font


async def test_sign_in_through_the_provider_as_the_person_of_that_address(
    browser: Browser, signin_site: SignInSite
) -> None:
    site = signin_site
    assert site.provider is not None
    person_id = site.person("山田 花子", "Hanako.Yamada@city.example.lg.jp")
    site.provider.set_accounts(
        {"hanako": account("hanako.yamada@city.example.lg.jp", "Yamada Hanako")}
    )
    context = await browser.new_context(locale="ja-JP")
    await context.route(FONTS, lambda route: route.abort())
    page = await context.new_page()
    await page.goto(f"{site.base}/login")
    button = page.get_by_role("link", name="テスト市のアカウントでログイン")
    await button.click()
    # The provider's own pages: any login name, any password, then its consent.
    await page.fill("input[name=login]", "hanako")
    await page.fill("input[name=password]", "whatever")
    await page.click("button[type=submit]")
    await page.click("button:has-text('Continue')")
    await expect(page.locator("h1")).to_contain_text("プロジェクト一覧")
    assert page.url == f"{site.base}/projects"
    await expect(page.locator("header .who")).to_contain_text("山田 花子")
    await shoot(page, "signin-oidc-signed-in")

    (row,) = site.sessions()
    assert row.person_id == person_id and row.token_id is None and row.ended_at is None
    (person,) = site.people()
    assert person.last_sign_in is not None
    # The flow's own cookie is spent; the page session's is the token sign-in's.
    cookies = {c["name"]: c for c in await context.cookies(site.base)}
    assert "hyojunka_oidc" not in cookies
    assert cookies["hyojunka_session"]["httpOnly"]
    assert cookies["hyojunka_session"]["sameSite"] == "Strict"

    # Signing out ends the session on the server.
    await page.click("text=ログアウト")
    await expect(page.locator("h1")).to_have_text("ログイン")
    (row,) = site.sessions()
    assert row.ended_at is not None
    await context.close()


async def test_sign_in_refuses_an_address_nobody_was_invited_with(
    browser: Browser, signin_site: SignInSite
) -> None:
    site = signin_site
    site.person("山田 花子", "hanako.yamada@city.example.lg.jp")
    context = await browser.new_context(locale="ja-JP")
    await context.route(FONTS, lambda route: route.abort())
    page = await context.new_page()
    await page.goto(f"{site.base}/login")
    await page.click("#oidc")
    await page.fill("input[name=login]", "stranger")  # signs in stranger@unknown.example
    await page.fill("input[name=password]", "whatever")
    with capture_logs() as logs:
        await page.click("button[type=submit]")
        await page.click("button:has-text('Continue')")
        await expect(page.locator("h1")).to_have_text("ログインできませんでした")
    await expect(page.locator("main")).to_contain_text(
        "このメールアドレスのアカウントはありません。管理者に招待を依頼してください。"
    )
    await shoot(page, "signin-oidc-unknown-address")
    assert site.sessions() == []
    assert [p.email for p in site.people()] == ["hanako.yamada@city.example.lg.jp"]
    refused = [e for e in logs if e["event"] == "oidc sign-in refused"]
    assert refused and refused[0]["reason"] == "no active person"
    assert "stranger@" not in repr(logs)  # the domain is logged, never the address
    await context.close()


async def test_sign_in_refuses_an_unverified_address(signin_site: SignInSite) -> None:
    site = signin_site
    assert site.provider is not None
    site.person("山田 花子", "hanako.yamada@city.example.lg.jp")
    site.provider.set_accounts(
        {"hanako": account("hanako.yamada@city.example.lg.jp", "Hanako", verified=False)}
    )
    async with httpx.AsyncClient() as http:
        answer = await through_provider(http, site, "hanako")
    assert answer.status_code == 403
    assert answer.url.path == "/login/oidc/callback"
    assert "メールアドレスが確認されていません" in answer.text
    assert "hyojunka_session" not in answer.cookies
    assert site.sessions() == []


async def test_sign_in_refuses_a_deactivated_person(signin_site: SignInSite) -> None:
    site = signin_site
    assert site.provider is not None
    site.person("退職 太郎", "taro@city.example.lg.jp", active=False)
    site.provider.set_accounts({"taro": account("taro@city.example.lg.jp", "Taro")})
    async with httpx.AsyncClient() as http:
        answer = await through_provider(http, site, "taro")
    assert answer.status_code == 403
    assert "このメールアドレスのアカウントはありません" in answer.text
    assert site.sessions() == []
    (person,) = site.people()
    assert person.last_sign_in is None and not person.active


async def test_sign_in_refuses_a_forged_state(signin_site: SignInSite) -> None:
    site = signin_site
    site.person("山田 花子", "hanako.yamada@city.example.lg.jp")
    async with httpx.AsyncClient() as http:
        started = await http.get(f"{site.base}/login/oidc")  # the flow's cookie, state kept
        assert started.status_code == 302
        assert "hyojunka_oidc" in http.cookies
        assert "code_challenge_method=S256" in started.headers["location"]
        assert "nonce=" in started.headers["location"]
        forged = await http.get(f"{site.base}/login/oidc/callback?code=x&state=forged")
        without = await http.get(f"{site.base}/login/oidc/callback?code=x")
    for answer in (forged, without):
        assert answer.status_code == 403
        assert "ログインできませんでした" in answer.text
        assert "hyojunka_session" not in answer.cookies
    assert site.sessions() == []


async def test_sign_in_refuses_what_the_person_cancelled_at_the_provider(
    signin_site: SignInSite,
) -> None:
    site = signin_site
    async with httpx.AsyncClient() as http:
        login_page = await http.get(f"{site.base}/login/oidc", follow_redirects=True)
        assert "[ Cancel ]" in login_page.text
        cancel = login_page.url.copy_with(path=login_page.url.path + "/abort")
        answer = await http.get(cancel, follow_redirects=True)  # error=access_denied
    assert answer.url.path == "/login/oidc/callback"
    assert answer.status_code == 403
    assert "認証サービスでのログインが完了しませんでした" in answer.text
    assert site.sessions() == []


async def test_sign_in_takes_the_address_from_userinfo_when_the_id_token_has_none(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    async with serve(dev_env, sqlite_url, tmp_path, id_token_claims=False) as site:
        assert site.provider is not None
        person_id = site.person("山田 花子", "hanako.yamada@city.example.lg.jp")
        site.provider.set_accounts(
            {"hanako": account("hanako.yamada@city.example.lg.jp", "Hanako")}
        )
        async with httpx.AsyncClient() as http:
            answer = await through_provider(http, site, "hanako")
            assert answer.status_code == 200, answer.text
            assert "ログインしました" in answer.text
            landing = await http.get(f"{site.base}/", follow_redirects=True)
        assert landing.url.path == "/projects"
        assert "山田 花子" in landing.text
        (row,) = site.sessions()
        assert row.person_id == person_id


async def test_sign_in_with_a_client_id_the_provider_does_not_know_never_reaches_us(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    async with serve(dev_env, sqlite_url, tmp_path, expected_client_id="not-registered") as site:
        site.person("山田 花子", "hanako.yamada@city.example.lg.jp")
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{site.base}/login/oidc", follow_redirects=True)
        assert answer.url.host == "127.0.0.1"  # the provider's own error page
        assert answer.status_code == 400
        assert "invalid_client" in answer.text
        assert site.sessions() == []


async def test_sign_in_says_so_when_the_provider_cannot_be_reached(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with serve(dev_env, sqlite_url, tmp_path, with_provider=False, issuer=nobody) as site:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{site.base}/login/oidc")
        assert answer.status_code == 503
        assert "認証サービスに接続できませんでした" in answer.text
        assert site.sessions() == []


async def test_login_page_offers_the_provider_only_when_configured(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    async with serve(dev_env, sqlite_url, tmp_path / "with") as site:
        async with httpx.AsyncClient() as http:
            page = await http.get(f"{site.base}/login")
        assert 'href="/login/oidc"' in page.text
        assert "テスト市のアカウントでログイン" in page.text
        assert 'action="/login/email"' in page.text and 'name="email"' in page.text
        assert "APIトークンでログイン（開発・連携用）" in page.text
        assert page.text.index("/login/oidc") < page.text.index('action="/login/email"')
        assert page.text.index('action="/login/email"') < page.text.index('action="/login"')
    async with serve(dev_env, sqlite_url, tmp_path / "without", with_provider=False) as site:
        async with httpx.AsyncClient() as http:
            page = await http.get(f"{site.base}/login")
            start = await http.get(f"{site.base}/login/oidc")
            back = await http.get(f"{site.base}/login/oidc/callback?code=x&state=y")
        assert "/login/oidc" not in page.text
        assert 'action="/login/email"' in page.text
        for answer in (start, back):
            assert answer.status_code == 404
            assert "見つかりません" in answer.text
