"""A rollout survives its worker: `hyojunka up` as users run it, 300 running projects, the
rollout started with `hyojunka template rollout` (progress bar and all) and the worker killed
with SIGKILL mid-way. Once the worker is back the rollout finishes: 290 moved, each exactly
once, and the 10 with training under way refused and left as they were; run again, it moves
nothing. The counts are written to ``test-artifacts/rollout-faults.json``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.harness import HYOJUNKA, Up, project_pairs, running_up
from tests.api.test_imports import csv_file
from tests.api.test_rollouts import BUILTIN, FROM, HEADER, revised
from workflows.calendar import add_months

pytestmark = pytest.mark.heavy

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PROJECTS = 300
KEPT = 10


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Another process's database, read only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql).fetchall()


def _moved_so_far(db: Path) -> int:
    rows = _query(db, "select coalesce(sum(moved), 0) from rollout")
    return int(rows[0][0]) if rows else 0


def _rollout(up: Up) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HYOJUNKA_DATA_DIR": str(up.data),
        "HYOJUNKA_TEMPORAL_ADDRESS": up.temporal_address,
    }
    return subprocess.Popen(
        [
            HYOJUNKA,
            "template",
            "rollout",
            BUILTIN,
            "--from",
            FROM,
            "--to",
            "1.1",
            "--reason",
            "手順書の改訂",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_rollout_cut_by_a_killed_worker_finishes_once_it_is_back(tmp_path: Path) -> None:
    target = add_months(__import__("datetime").date.today(), 36).isoformat()
    with running_up(tmp_path) as up:
        db = up.data / "hyojunka.db"
        async with httpx.AsyncClient(timeout=120) as http:
            stored = await http.post(
                f"{up.base}/api/v1/templates", json=revised("1.1"), headers=up.headers("admin")
            )
            assert stored.status_code == 201, stored.text
            pairs = project_pairs(PROJECTS)
            kept_at = set(random.sample(range(PROJECTS), KEPT))
            rows = [
                [lg, biz, target, "demo-vendor", "false", "in_progress" if i in kept_at else ""]
                for i, (lg, biz) in enumerate(pairs)
            ]
            made = await http.post(
                f"{up.base}/api/v1/imports",
                content=csv_file(rows, HEADER),
                headers=up.headers("admin", **{"Content-Type": "text/csv"}),
            )
            assert made.status_code == 200 and made.json()["created"] == PROJECTS, made.text
        ids = [f"{lg}-{biz}" for lg, biz in pairs]
        kept = sorted(ids[i] for i in kept_at)

        cli = _rollout(up)
        deadline = time.monotonic() + 120
        while await asyncio.to_thread(_moved_so_far, db) < 60:  # noqa: ASYNC110
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "the rollout did not start moving"
            await asyncio.sleep(0.05)  # another process's database: polled
        moved_before_kill = await asyncio.to_thread(_moved_so_far, db)
        old = up.kill_child("worker")
        await asyncio.to_thread(up.wait_child_replaced, "worker", old)
        out, err = await asyncio.to_thread(cli.communicate, timeout=300)
        assert cli.returncode == 1, (out, err)  # some were refused
        again = _rollout(up)
        out_again, err_again = await asyncio.to_thread(again.communicate, timeout=120)

        templates = dict(
            _query(db, "select template, count(*) from project group by template")  # type: ignore[arg-type]
        )
        upgraded = dict(
            _query(
                db,
                "select project_id, count(*) from event where kind = 'template_upgraded' "
                "group by project_id",
            )  # type: ignore[arg-type]
        )
        still_training = _query(
            db, "select project_id from task where key = 'training' and status = 'in_progress'"
        )
    counts = {
        "projects": PROJECTS,
        "moved_before_the_kill": moved_before_kill,
        "on_the_revision": templates.get(f"{BUILTIN}@1.1", 0),
        "left_as_they_were": templates.get(f"{BUILTIN}@{FROM}", 0),
        "upgraded_once": sum(1 for n in upgraded.values() if n == 1),
        "upgraded_twice": sum(1 for n in upgraded.values() if n > 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "rollout-faults.json").write_text(json.dumps(counts, indent=2))
    print(f"\nrollout cut by a killed worker: {json.dumps(counts)}\n{out}{out_again}")
    assert moved_before_kill < PROJECTS - KEPT, "the rollout finished before the kill"
    assert f"moved {PROJECTS - KEPT}, skipped 0, refused {KEPT} (of {PROJECTS})" in out, out
    for pid in kept:
        assert f"  {pid}: " in out and "training" in out
    assert counts["on_the_revision"] == PROJECTS - KEPT
    assert counts["left_as_they_were"] == KEPT
    assert counts["upgraded_once"] == PROJECTS - KEPT and counts["upgraded_twice"] == 0
    assert sorted(str(r[0]) for r in still_training) == kept
    # Run again: it finds only the ten still on 1.0, and moves nothing.
    assert again.returncode == 1, (out_again, err_again)
    assert f"moved 0, skipped 0, refused {KEPT} (of {KEPT})" in out_again, out_again
