"""A vendor's bulk feed cut off by a SIGKILL of the API mid-way, and sent again whole once the
API is back (as the contract tells vendors to): every item is in the workflows and in the
read model exactly once, with the milestone id the second answer gives. `hyojunka up` as
users run it; the counts are printed and written to ``test-artifacts/bulk-faults.json``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from benchmarks.harness import project_pairs, running_up
from runtime.settings import Settings
from runtime.temporal import connect
from workflows.calendar import add_months
from workflows.migration import MigrationWorkflow

pytestmark = pytest.mark.heavy

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PROJECTS = 20
PER_PROJECT = 250  # 5,000 items: the most a feed takes


def _recorded(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("select count(*) from milestone").fetchone()[0])


async def test_a_feed_cut_off_by_a_killed_api_and_sent_again_is_recorded_once(
    tmp_path: Path,
) -> None:
    target = add_months(__import__("datetime").date.today(), 36).isoformat()
    with running_up(tmp_path) as up:
        async with httpx.AsyncClient(timeout=120) as http:
            projects = []
            for lg_code, business in project_pairs(PROJECTS):
                body = {
                    "lg_code": lg_code,
                    "business": business,
                    "target_go_live": target,
                    "vendor_id": "demo-vendor",
                }
                made = await http.post(
                    f"{up.base}/api/v1/projects", json=body, headers=up.headers("admin")
                )
                assert made.status_code == 201, made.text
                projects.append(made.json()["id"])
            items = [
                {
                    "project_id": pid,
                    "task_key": "system_setup",
                    "status": "in_progress",
                    "percent": n % 100,
                    "idempotency_key": f"bulk-{pid}-{n}",
                }
                for n in range(PER_PROJECT)
                for pid in projects
            ]
            feed = {"items": items}
            url = f"{up.base}/api/v1/milestones"
            first = asyncio.create_task(http.post(url, json=feed, headers=up.headers("vendor")))
            # Killed once the feed is well under way, and long before it is done.
            db = up.data / "hyojunka.db"
            deadline = time.monotonic() + 60
            while await asyncio.to_thread(_recorded, db) < 300:  # noqa: ASYNC110
                assert time.monotonic() < deadline, "the feed did not start"
                await asyncio.sleep(0.02)  # another process's database: polled
            before_kill = await asyncio.to_thread(_recorded, db)
            old = up.kill_child("api")
            cut_off = False
            try:
                answer = await first
                cut_off = answer.status_code != 200
            except httpx.HTTPError:
                cut_off = True
            assert cut_off, "the feed finished before the API was killed"
            await asyncio.to_thread(up.wait_child_replaced, "api", old)
            await asyncio.to_thread(up.wait_ready)
            again = await http.post(url, json=feed, headers=up.headers("vendor"))
            assert again.status_code == 200, again.text[:300]
            results = again.json()["results"]
        told = {items[r["index"]]["idempotency_key"]: r["milestone_id"] for r in results}
        duplicates = sum(1 for r in results if r["duplicate"])
        # What the workflows and the read model hold.
        client = await connect(Settings(temporal_address=up.temporal_address))
        in_workflow: Counter[tuple[str, str]] = Counter()
        for pid in projects:
            for ev in await client.get_workflow_handle(f"migration-{pid}").query(
                MigrationWorkflow.journal
            ):
                if ev.kind == "milestone_reported":
                    in_workflow[(ev.data["idempotency_key"], ev.data["milestone_id"])] += 1
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("select idempotency_key, milestone_id from milestone").fetchall()
        in_read_model = Counter((k, m) for k, m in rows)
    counts = {
        "items": len(items),
        "recorded_before_the_kill": before_kill,
        "answered_200_when_sent_again": sum(1 for r in results if r["status"] == 200),
        "duplicates_when_sent_again": duplicates,
        "once_in_workflow": sum(1 for k, m in told.items() if in_workflow[(k, m)] == 1),
        "once_in_read_model": sum(1 for k, m in told.items() if in_read_model[(k, m)] == 1),
        "doubled": sum(1 for n in in_workflow.values() if n > 1)
        + sum(1 for n in in_read_model.values() if n > 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bulk-faults.json").write_text(json.dumps(counts, indent=2))
    print(f"\nbulk feed cut off: {json.dumps(counts)}")
    n = PROJECTS * PER_PROJECT
    assert counts["answered_200_when_sent_again"] == n
    assert 0 < duplicates < n  # some went in before the kill, the rest on the second call
    assert counts["once_in_workflow"] == n and counts["once_in_read_model"] == n
    assert counts["doubled"] == 0
