"""The vendors' pages in Chromium: the heat map a MIC observer reads (a crowded month says
so in words, not colour alone), the vendor's desk with its months and capacity, and a CSV
upload whose refused lines are listed in Japanese."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
from playwright.async_api import Browser, expect

from tests.api.conftest import fresh_project
from tests.pages.conftest import Site, login, shoot
from workflows.calendar import add_months


async def test_the_heat_map_and_the_desk_show_a_crowded_month_and_take_a_csv(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    # Far enough ahead that nothing is late: the forecast is the target.
    target = add_months(date.today(), 36)
    admin = {"Authorization": f"Bearer {site.tokens['admin']}"}
    projects = []
    async with httpx.AsyncClient(base_url=site.base, headers=admin, timeout=60) as http:
        for _ in range(3):  # three go-lives in one month; the vendor says it can carry two
            lg_code, business = fresh_project()
            made = await http.post(
                "/api/v1/projects",
                json={
                    "lg_code": lg_code,
                    "business": business,
                    "target_go_live": target.isoformat(),
                    "vendor_id": "acme",
                },
            )
            assert made.status_code == 201, made.text
            projects.append(made.json()["id"])
        stated = await http.put(
            "/api/v1/vendors/acme/capacity",
            json={"go_lives_per_month": 2},
            headers={"Authorization": f"Bearer {site.tokens['vendor']}"},
        )
        assert stated.status_code == 200, stated.text

    observer = await login(browser, site, "observer")
    month = f"{target.year}-{target.month:02d}"
    await observer.goto(f"{site.base}/vendors?from={month}")
    row = observer.locator("#vendor-acme")
    await expect(row).to_contain_text("アクメ情報システム")
    crowded = row.locator(f"td[aria-label*='{month}']")
    await expect(crowded).to_contain_text("3")
    await expect(crowded).to_contain_text("超過")
    await shoot(observer, "vendors-heat-map")

    vendor = await login(browser, site, "vendor")
    await vendor.goto(f"{site.base}/vendors/acme?from={month}")
    await expect(vendor.locator(f"#month-{month}")).to_contain_text("超過")
    csv_file = tmp_path / "milestones.csv"
    csv_file.write_text(
        "project_id,task_key,status,percent,note,idempotency_key\n"
        f"{projects[0]},system_setup,in_progress,30,着手,page-1\n"
        f"{projects[1]},system_setup,in_progress,20,,page-2\n"
        "999999-nothing,system_setup,in_progress,10,,page-3\n"
        f"{projects[2]},training,done,,,page-4\n",
        encoding="utf-8-sig",
    )
    await vendor.set_input_files("input[name=file]", str(csv_file))
    await vendor.get_by_role("button", name="報告する").click()
    await expect(vendor.get_by_role("status")).to_contain_text("2行を受け付けました")
    refused = vendor.locator("#refused")
    await expect(refused.locator("tbody tr")).to_have_count(2)
    await expect(refused).to_contain_text("見つかりません")
    await expect(refused).to_contain_text("ベンダの担当ではない作業です")
    await shoot(vendor, "vendor-desk-upload")
    # The project's page carries the marker.
    await vendor.goto(f"{site.base}/projects/{projects[0]}")
    await expect(vendor.locator("#vendor-over-capacity")).to_contain_text("ベンダ繁忙")
