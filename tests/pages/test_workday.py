"""A working day in the pages, in Chromium, over a body's real portfolio: a late project
with escalations up to the prefecture, a gate waiting, a rejected plan, a failed cutover and
an extended track. Screenshots of the dashboard, roll-up, timeline and approvals inbox go
to the artefacts folder."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import date, timedelta

import httpx
import pytest
from icalendar import Calendar
from openpyxl import load_workbook
from playwright.async_api import Browser, expect

from tests.api.conftest import _USED
from tests.pages.conftest import Site, csrf_token, login, shoot
from tests.workflows.helpers import judged_by
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.calendar import add_months


@dataclass
class Portfolio:
    late: str  # escalated to the prefecture
    waiting: str  # its migration plan awaits the approver
    rejected: str  # its migration plan was sent back
    failed: str  # its cutover failed: back to go/no-go
    extended: str  # on the extended track


def _done(keys: list[str], first: date) -> dict[str, dict[str, str]]:
    """Tasks done a fortnight apart, from ``first``."""
    return {
        key: {"status": "done", "on": (first + timedelta(days=14 * i)).isoformat()}
        for i, key in enumerate(keys)
    }


async def _portfolio(site: Site) -> Portfolio:
    # Systems of the body no other test on this Temporal server has registered.
    others = [
        b.slug
        for b in BUSINESSES
        if b.slug not in PREFECTURE_BUSINESSES
        and b.slug != site.business
        and (site.lg_code, b.slug) not in _USED
    ]
    late, waiting, rejected, failed, extended = [site.business, *random.sample(others, 4)]
    _USED.update((site.lg_code, b) for b in (waiting, rejected, failed, extended))
    today = date.today()
    start = today - timedelta(days=700)
    plan = judged_by("gate_migration_plan")
    async with httpx.AsyncClient(base_url=site.base, timeout=60) as http:

        def auth(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {site.tokens[role]}"}

        async def create(business: str, months: int, progress: dict[str, object]) -> str:
            made = await http.post(
                "/api/v1/projects",
                json={
                    "lg_code": site.lg_code,
                    "business": business,
                    "target_go_live": add_months(today, months).isoformat(),
                    "vendor_id": "acme",
                    "progress": progress,
                },
                headers=auth("pm"),
            )
            assert made.status_code == 201, made.text
            return str(made.json()["id"])

        ids = Portfolio(
            late=await create(late, 6, {}),
            waiting=await create(waiting, 24, _done(plan, start)),
            rejected=await create(rejected, 24, _done(plan, start)),
            failed=await create(
                failed,
                3,
                _done([k for k in judged_by("cutover") if k != "rfp"], start - timedelta(days=200)),
            ),
            extended=await create(extended, 40, _done(["setup_governance"], start)),
        )
        sent = await http.post(
            f"/api/v1/projects/{ids.rejected}/gates/gate_migration_plan/decision",
            json={"outcome": "reject", "comment": "連携一覧の記載が不足"},
            headers=auth("approver"),
        )
        assert sent.status_code == 200, sent.text
        for n, status in enumerate(("in_progress", "failed")):
            reported = await http.post(
                f"/api/v1/projects/{ids.failed}/milestones",
                json={"task_key": "cutover", "status": status, "note": "移行データ不整合"},
                headers={**auth("vendor"), "Idempotency-Key": f"cutover-{n}"},
            )
            assert reported.status_code == 200, reported.text
        declared = await http.post(
            f"/api/v1/projects/{ids.extended}/extended-track",
            json={
                "ground": "vendor_shortage",
                "planned_go_live": add_months(today, 40).isoformat(),
                "reason": "事業者の作業枠が確保できない",
            },
            headers=auth("pm"),
        )
        assert declared.status_code == 200, declared.text
    return ids


async def test_the_prefecture_reads_the_rollup_it_can_download_and_acknowledges_its_rungs(
    browser: Browser, site: Site
) -> None:
    ids = await _portfolio(site)
    pref = await login(browser, site, "prefecture")  # lands on the roll-up
    assert await pref.title() == "進捗集計 | hyojunka"
    table = pref.locator("#rollup")
    await expect(table).to_contain_text("0")
    async with httpx.AsyncClient(base_url=site.base) as http:

        async def api(**params: str) -> list[dict[str, object]]:
            answer = await http.get(
                "/api/v1/reports/progress",
                params=params,
                headers={"Authorization": f"Bearer {site.tokens['prefecture']}"},
            )
            assert answer.status_code == 200, answer.text
            return list(answer.json()["items"])

        # By body, over the prefecture's own bodies: the API's figures, row for row.
        by_body = await api(group_by="lg_code")
        assert [r["group"] for r in by_body] == [site.lg_code]
        row = table.locator(f"tr[data-group='{site.lg_code}']")
        cells = await row.locator("td").all_inner_texts()
        body = by_body[0]
        assert cells[2:7] == [
            str(body[k]) for k in ("steps", "done", "in_progress", "not_started", "not_applicable")
        ]
        assert f"{round(float(body['completion_rate']) * 100, 1)}%" in cells[1]  # type: ignore[arg-type]
        await shoot(pref, "rollup")

        # Down to the body: its five systems, then by step.
        await row.get_by_role("link").click()
        await expect(pref.locator("h1")).to_contain_text("業務別")
        by_business = await api(group_by="business", lg_code=site.lg_code)
        await expect(pref.locator("#rollup tbody tr")).to_have_count(len(by_business))
        await pref.get_by_role("link", name="作業別").click()
        by_step = await api(group_by="task", lg_code=site.lg_code)
        await expect(pref.locator("#rollup tbody tr")).to_have_count(len(by_step))
        assert by_step[0]["name"] == "推進体制の立ち上げ"  # in handbook order

        # The Excel download works with the browser's session and holds the same figures.
        async with pref.expect_download() as info:
            await pref.get_by_role("link", name="Excel").click()
        download = await info.value
        sheet = load_workbook(io.BytesIO((await download.path()).read_bytes())).active
        assert sheet is not None
        header, *lines = list(sheet.values)
        got = [dict(zip(header, line, strict=True)) for line in lines]
        assert [(r["group"], r["done"], r["steps"]) for r in got] == [
            (r["group"], r["done"], r["steps"]) for r in by_step
        ]

    # The pm sees the rung about the pm's own lateness but cannot silence it.
    pm = await login(browser, site, "pm")
    await pm.goto(f"{site.base}/escalations")
    await expect(pm.locator(f"section[aria-labelledby='esc-{ids.late}']")).to_contain_text(
        "都道府県"
    )
    await expect(pm.locator("input[type=checkbox][name=id]")).to_have_count(0)
    # The prefecture's rungs, grouped by project, acknowledged together.
    await pref.goto(f"{site.base}/escalations")
    late_group = pref.locator(f"section[aria-labelledby='esc-{ids.late}']")
    await expect(late_group).to_contain_text("都道府県")
    boxes = pref.locator("input[type=checkbox][name=id]")
    ticked = await boxes.count()
    assert ticked > 0
    for i in range(ticked):
        await boxes.nth(i).check()
    await pref.get_by_role("button", name="選択したエスカレーションを確認済みにする").click()
    await expect(pref.get_by_role("status")).to_have_text(f"{ticked}件を確認済みにしました")
    await expect(pref.locator("input[type=checkbox][name=id]")).to_have_count(0)
    await pref.goto(f"{site.base}/escalations?status=acknowledged")
    await expect(pref.locator("section.escalation-group tbody tr")).to_have_count(ticked)


async def test_a_pm_works_from_the_dashboard_the_timeline_and_a_calendar_feed(
    browser: Browser, site: Site
) -> None:
    ids = await _portfolio(site)
    pm = await login(browser, site, "pm")
    # The dashboard: what is due this week or late, and each project's next due task.
    due = pm.locator("section[aria-labelledby='due-heading']")
    await expect(due).to_contain_text("推進体制の立ち上げ")
    await expect(due).to_contain_text("日超過")
    await expect(pm.locator("table").last).to_contain_text("次の期限")
    await shoot(pm, "dashboard")

    # The timeline of the failed cutover: every task drawn, by stage, against its dates.
    await pm.goto(f"{site.base}/projects/{ids.failed}")
    svg = pm.locator(".timeline svg")
    await expect(svg.locator("g.task")).to_have_count(23)
    for mark in ("today", "deadline", "target"):
        await expect(svg.locator(f"g.mark.{mark}")).to_have_count(1)
    await expect(svg.locator("g.task[data-key='go_no_go'] title")).to_contain_text("判断待ち")
    history = pm.locator("table").last
    await expect(history).to_contain_text("「本番移行」が失敗（移行可否判定からやり直し）")
    await shoot(pm, "timeline")
    # The extended track moves the deadline line to the new date.
    await pm.goto(f"{site.base}/projects/{ids.extended}")
    await expect(pm.locator(".timeline g.mark.deadline")).to_contain_text("延長後の期限")

    # A calendar feed of the late project: made from its page, read back as iCalendar.
    await pm.goto(f"{site.base}/projects/{ids.late}")
    await pm.get_by_role("link", name="期限をカレンダーに登録").click()
    await pm.get_by_role("button", name="アドレスを作成する").click()
    url = await pm.locator("#feed-url").input_value()
    async with httpx.AsyncClient() as http:
        feed = await http.get(url)
        assert feed.status_code == 200
        assert feed.headers["content-type"].startswith("text/calendar")
        cal = Calendar.from_ical(feed.content)
        events = {str(e["uid"]): e for e in cal.walk("VEVENT")}
        project = (
            await http.get(
                f"{site.base}/api/v1/projects/{ids.late}",
                headers={"Authorization": f"Bearer {site.tokens['pm']}"},
            )
        ).json()
        open_tasks = [x for x in project["tasks"] if x["status"] in ("not_started", "in_progress")]
        for x in open_tasks:
            event = events[f"{ids.late}.{x['key']}@hyojunka"]
            assert event.decoded("dtstart").isoformat() == x["due_date"]
            assert x["name"] in str(event["summary"])
        assert f"{ids.late}.go-live@hyojunka" in events
        # Stopped from the page, the address answers nothing more.
        await pm.get_by_role("button", name=f"プロジェクト {ids.late} の連携を停止").click()
        await expect(pm.get_by_role("status")).to_have_text("カレンダー連携を停止しました")
        assert (await http.get(url)).status_code == 404


async def test_the_approvals_inbox_and_a_form_from_another_site(
    browser: Browser, site: Site
) -> None:
    ids = await _portfolio(site)
    approver = await login(browser, site, "approver")
    await approver.goto(f"{site.base}/approvals")
    row = approver.locator(f"#gate-{ids.waiting}-gate_migration_plan")
    # Body and system by name, what the gate closes, its prerequisites with their dates.
    await expect(row).to_contain_text("移行計画承認")
    await expect(row).to_contain_text("Fit&Gapの判断")
    await expect(row).to_contain_text("移行計画作成：")
    await expect(row).not_to_contain_text(ids.waiting)
    await expect(approver.locator(f"#gate-{ids.failed}-go_no_go")).to_contain_text("本番移行判定")
    await shoot(approver, "approvals")

    # A form posted from elsewhere (no token of this session) is refused, in Japanese, and
    # nothing is decided.
    forged = await approver.request.post(
        f"{site.base}/projects/{ids.waiting}/gates/gate_migration_plan",
        form={"outcome": "approve"},
        headers={"Origin": "https://evil.example"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "操作を受け付けられません" in await forged.text()
    stale = await approver.request.post(
        f"{site.base}/projects/{ids.waiting}/gates/gate_migration_plan",
        form={"outcome": "approve", "csrftoken": "forged"},
        max_redirects=0,
    )
    assert stale.status == 403
    await approver.reload()
    await expect(row).to_contain_text("判断する")  # still waiting
    # With the page's own token it goes through.
    sent = await approver.request.post(
        f"{site.base}/projects/{ids.waiting}/gates/gate_migration_plan",
        form={"outcome": "approve", "csrftoken": await csrf_token(approver)},
        max_redirects=0,
    )
    assert sent.status == 303 and "err=" not in sent.headers["location"]


@pytest.mark.parametrize("role", ["pm", "approver", "vendor", "prefecture", "observer"])
async def test_every_page_fits_a_phone(browser: Browser, site: Site, role: str) -> None:
    """At 375 px the page itself never scrolls sideways; wide tables scroll in their box."""
    if role == "pm":
        await _portfolio(site)
    page = await login(browser, site, role, viewport={"width": 375, "height": 812})
    project = f"{site.lg_code}-{site.business}"
    paths = ["/projects", "/reports", "/reports?by=task", "/approvals", "/escalations"]
    paths += ["/calendar", f"/projects/{project}", "/nothing/here"]
    if role == "pm":
        paths.append("/projects/new")
    for path in paths:
        await page.goto(site.base + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width} px wide at 375 px"
        text = await page.locator("main").inner_text()
        assert "Internal Server Error" not in text and '"detail"' not in text
