"""The pages in a real browser (Debian's Chromium), against the real server stack."""

from __future__ import annotations

from datetime import date, datetime

import httpx
from playwright.async_api import Browser, Page, expect

from tests.pages.conftest import Site, csrf_token, login
from tests.workflows.helpers import judged_by
from workflows.calendar import JST, add_months


async def complete(page: Page, key: str) -> None:
    """完了 asks once more before it is final."""
    row = page.locator(f"#task-{key}")
    await row.locator("summary", has_text="完了").click()
    await row.get_by_role("button", name="完了にする（確定）").click()


async def decide(page: Page, outcome: str, comment: str | None = None) -> None:
    """A gate decision from the approvals inbox: open it, perhaps comment, decide."""
    row = page.locator("tbody tr").first
    await row.locator("summary", has_text="判断する").click()
    if comment is not None:
        await row.get_by_label("コメント").fill(comment)
    await row.get_by_role("button", name=f"を{outcome}する").click()


async def test_an_unknown_address_is_a_japanese_page(browser: Browser, site: Site) -> None:
    page = await browser.new_page(locale="ja-JP")
    answer = await page.goto(f"{site.base}/projects/nothing/here")
    assert answer is not None and answer.status == 404
    await expect(page.locator("h1")).to_have_text("見つかりません")
    async with httpx.AsyncClient(base_url=site.base) as http:
        api = await http.get("/api/v1/nothing")  # the API still speaks problem+json
    assert api.headers["content-type"] == "application/problem+json"


async def test_login_refuses_a_bad_token_in_japanese(browser: Browser, site: Site) -> None:
    page = await browser.new_page()
    await page.goto(f"{site.base}/projects")
    assert page.url.endswith("/login")
    assert await page.get_attribute("html", "lang") == "ja"
    await page.fill("#token", "hyj_wrong")
    await page.click("#token-form button[type=submit]")
    await expect(page.get_by_role("alert")).to_have_text("トークンが正しくありません")


async def test_pm_and_approver_work_a_project_through_the_pages(
    browser: Browser, site: Site
) -> None:
    pm = await login(browser, site, "pm")
    await pm.click("text=新規登録")
    await pm.fill("#lg_code", site.lg_code)
    await pm.select_option("#business", site.business)
    await pm.fill("#target_go_live", add_months(date.today(), 36).isoformat())
    await pm.select_option("#vendor_id", "acme")
    await pm.click("text=登録する")
    await expect(pm.get_by_role("status")).to_have_text("プロジェクトを登録しました")
    await expect(pm.locator("h1")).to_contain_text("要注意")  # planned after the 2026 deadline
    await expect(pm.get_by_role("note")).to_contain_text("移行期限の延長")

    # A task behind its prerequisites offers no button, and says why.
    row = pm.locator("#task-fit_gap_analysis")
    await expect(row).to_contain_text("前提の作業が終わっていません")
    assert await row.get_by_role("button").count() == 0
    # A form sent anyway (from a tab left open) is refused and nothing moves ...
    sent = await pm.request.post(
        f"{site.base}/projects/{site.lg_code}-{site.business}/tasks/fit_gap_analysis",
        form={"status": "done", "csrftoken": await csrf_token(pm)},
        max_redirects=0,
    )
    await pm.goto(site.base + sent.headers["location"])
    # ... said in Japanese with the tasks' names, never their keys.
    alert = pm.get_by_role("alert")
    await expect(alert).to_contain_text("「Fit&Gap分析」の前に終えるべきタスクがあります")
    await expect(alert).to_contain_text("現行システム環境の基礎調査")
    await expect(alert).not_to_contain_text("fit_gap_analysis")
    await expect(row).to_contain_text("未着手")

    for key in judged_by("gate_migration_plan"):
        await complete(pm, key)
        await expect(pm.locator(f"#task-{key}")).to_contain_text("完了済み")
        assert pm.url.endswith(f"#task-{key}")  # back at the task acted on
    await expect(pm.locator("#task-gate_migration_plan")).to_contain_text("判断待ち")
    # The pm sees no decision buttons on a gate: four eyes.
    assert await pm.locator("#task-gate_migration_plan button").count() == 0

    approver = await login(browser, site, "approver")
    await approver.click("text=承認待ち")
    await expect(approver.locator("tbody tr")).to_have_count(1)
    # The inbox says which body and system, and what the gate waits on.
    await expect(approver.locator("tbody")).not_to_contain_text(site.lg_code + "-")
    await expect(approver.locator("tbody")).to_contain_text("移行計画")
    await decide(approver, "差戻し")  # no comment: refused
    await expect(approver.get_by_role("alert")).to_contain_text("入力内容を確認してください")
    await decide(approver, "差戻し", "連携一覧の記載が不足")
    await expect(approver.get_by_role("status")).to_have_text("差し戻しました")
    await expect(approver.locator("tbody")).to_contain_text("承認待ちの判断事項はありません")

    await pm.reload()
    await expect(pm.locator("#task-migration_plan")).to_contain_text("作業中")
    await expect(pm.locator("#task-migration_plan")).to_contain_text("連携一覧の記載が不足")
    await complete(pm, "migration_plan")
    await approver.reload()
    await decide(approver, "承認")
    await expect(approver.get_by_role("status")).to_have_text("承認しました")
    await pm.reload()
    await expect(pm.locator("#task-gate_migration_plan")).to_contain_text("完了済み")
    await expect(pm.locator("dl.facts")).to_contain_text("ベンダ調達")
    # The history names what happened in Japanese, not by its internal kind.
    history = await pm.locator("table").last.inner_text()
    for kind in ("プロジェクト登録", "タスク更新", "ゲート判定"):
        assert kind in history
    assert "task_updated" not in history and "gate_decided" not in history


async def test_a_late_project_with_escalations_shows_them_in_japanese(
    browser: Browser, site: Site
) -> None:
    # Go-live in six months: the early tasks were due more than a year ago, so the ladder
    # has already climbed to the prefecture when the project is registered.
    pm = await login(browser, site, "pm")
    await pm.click("text=新規登録")
    await pm.fill("#lg_code", site.lg_code)
    await pm.select_option("#business", site.business)
    await pm.fill("#target_go_live", add_months(date.today(), 6).isoformat())
    await pm.click("text=登録する")
    await expect(pm.get_by_role("status")).to_have_text("プロジェクトを登録しました")
    await expect(pm.locator("h1")).to_contain_text("期限超過")
    body = await pm.locator("body").inner_text()
    assert "都道府県" in body  # the prefecture rung, named in Japanese
    assert "Internal Server Error" not in body
    # The history: in Japanese, tasks by name, at Japanese times.
    async with httpx.AsyncClient(base_url=site.base) as http:
        trail = await http.get(
            f"/api/v1/projects/{site.lg_code}-{site.business}/events",
            headers={"Authorization": f"Bearer {site.tokens['observer']}"},
        )
    created = datetime.fromisoformat(trail.json()["items"][0]["at"])
    history = pm.locator("table").last
    await expect(history).to_contain_text(created.astimezone(JST).strftime("%Y-%m-%d %H:%M"))
    await expect(history).to_contain_text("エスカレーション発生")
    await expect(history).to_contain_text("「推進体制の立ち上げ」")
    await expect(history).not_to_contain_text("setup_governance")
    # Across projects the escalations name the body and the system, not ids.
    await pm.goto(f"{site.base}/escalations")
    rows = pm.locator("tbody")
    await expect(rows).to_contain_text("推進体制の立ち上げ")
    await expect(rows).not_to_contain_text(f"{site.lg_code}-{site.business}")


async def test_a_browser_session_is_the_servers_and_ends_when_signed_out_or_revoked(
    browser: Browser, site: Site
) -> None:
    pm = await login(browser, site, "pm")
    cookies = await pm.context.cookies()
    (cookie,) = [c for c in cookies if c["name"] == "hyojunka_session"]
    assert cookie["value"] != site.tokens["pm"]  # the token never goes into the cookie
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    headers = (await pm.request.get(f"{site.base}/projects")).headers
    assert "script-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    # Signed in, the browser downloads the report it sees in the pages.
    report = await pm.request.get(f"{site.base}/api/v1/reports/progress?format=csv")
    assert report.status == 200 and "completion_rate" in await report.text()

    # Signing out ends the session on the server: the old cookie opens nothing.
    await pm.get_by_role("button", name="ログアウト").click()
    await expect(pm.locator("h1")).to_contain_text("ログイン")
    await pm.context.add_cookies([cookie])  # as a copied cookie would come back
    await pm.goto(f"{site.base}/projects")
    await expect(pm.locator("h1")).to_contain_text("ログイン")

    # Revoking the token ends every open session at once.
    approver = await login(browser, site, "approver")
    async with httpx.AsyncClient(base_url=site.base) as http:
        admin = {"Authorization": f"Bearer {site.tokens['admin']}"}
        listed = (await http.get("/api/v1/tokens", headers=admin)).json()["items"]
        token_id = next(x["id"] for x in listed if x["name"] == "approver-1")
        assert (await http.delete(f"/api/v1/tokens/{token_id}", headers=admin)).status_code == 204
    await approver.goto(f"{site.base}/approvals")
    await expect(approver.locator("h1")).to_contain_text("ログイン")


async def test_a_vendor_reports_progress_from_the_page_once_per_form(
    browser: Browser, site: Site
) -> None:
    # A project already under way up to the contract: the vendor's work is open.
    progress = {key: {"status": "done"} for key in judged_by("pia") if key != "rfp"}
    async with httpx.AsyncClient(base_url=site.base, timeout=30) as http:
        made = await http.post(
            "/api/v1/projects",
            json={
                "lg_code": site.lg_code,
                "business": site.business,
                "target_go_live": add_months(date.today(), 30).isoformat(),
                "vendor_id": "acme",
                "progress": progress,
            },
            headers={"Authorization": f"Bearer {site.tokens['admin']}"},
        )
    assert made.status_code == 201, made.text
    vendor = await login(browser, site, "vendor")
    await vendor.goto(f"{site.base}/projects/{site.lg_code}-{site.business}")
    row = vendor.locator("#task-system_setup")
    await row.get_by_label("進捗率").fill("40")
    await row.get_by_label("メモ").fill("環境構築に着手")
    key = await row.locator("input[name=idempotency_key]").get_attribute("value")
    await row.get_by_role("button", name="報告する").click()
    await expect(vendor.get_by_role("status")).to_have_text(
        "「システム移行時の設定」の進捗を報告しました"
    )
    await expect(vendor.locator("#task-system_setup")).to_contain_text("40%")
    # The same form sent twice (a double click, a resend) is one report.
    again = await vendor.request.post(
        f"{site.base}/projects/{site.lg_code}-{site.business}/milestones",
        form={
            "csrftoken": await csrf_token(vendor),
            "idempotency_key": key or "",
            "task_key": "system_setup",
            "status": "in_progress",
            "percent": "40",
            "note": "環境構築に着手",
        },
        max_redirects=0,
    )
    await vendor.goto(site.base + again.headers["location"])
    await expect(vendor.get_by_role("status")).to_have_text("この報告はすでに受け付けています")
    # The municipality's tasks offer the vendor nothing.
    assert await vendor.locator("#task-pia button").count() == 0
