"""How fast the roll-up renders over many projects: ``python -m benchmarks.rollup``.

The read model is filled with N projects (default 2,000) the way the projection writes
them — a project row with its counts and its 23 task rows, statuses varied as a real
programme's are — across the bodies of several prefectures; then the pages and the report
API are asked in-process (no network), as a national observer and as a prefecture, and the
server's time per answer is printed (p50, p95, max over repeated requests).

    python -m benchmarks.rollup [--projects 2000] [--repeat 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from sqlmodel import Session

from api.auth import PAGE_COOKIE, create_token, open_page_session
from api.main import create_app
from benchmarks.harness import pct
from readmodel import tables as t
from readmodel.db import make_engine, upgrade_schema
from readmodel.registry import registry
from runtime.settings import Settings
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.model import progress_of
from workflows.procedure import DEFAULT_TEMPLATE

MUNICIPAL = [b for b in BUSINESSES if b.slug not in PREFECTURE_BUSINESSES]


def seed(url: str, projects: int, rng: random.Random) -> str:
    """``projects`` projects over whole bodies (each with all its businesses), prefecture by
    prefecture from Hokkaido; returns the prefecture with the most of them."""
    engine = make_engine(url)
    bodies = [b for b in registry().bodies if not b.is_prefecture]
    bodies.sort(key=lambda b: b.lg_code)
    now = datetime.now(UTC)
    made = 0
    per_prefecture: dict[str, int] = {}
    with Session(engine) as session:
        for body in bodies:
            if made >= projects:
                break
            for business in MUNICIPAL:
                if made >= projects:
                    break
                made += 1
                per_prefecture[body.prefecture_code] = (
                    per_prefecture.get(body.prefecture_code, 0) + 1
                )
                # How far along: most have finished the analysis, some are nearly done.
                reached = min(len(DEFAULT_TEMPLATE.tasks), int(rng.betavariate(2, 2) * 24))
                statuses = []
                pid = f"{body.lg_code}-{business.slug}"
                target = date(2026, 3, 31) + timedelta(days=rng.randrange(-200, 900))
                for i, spec in enumerate(DEFAULT_TEMPLATE.tasks):
                    if i < reached:
                        status = "not_applicable" if rng.random() < 0.03 else "done"
                    elif i == reached:
                        status = "in_progress"
                    else:
                        status = "not_started"
                    statuses.append(status)
                    session.add(
                        t.Task(
                            project_id=pid,
                            key=spec.key,
                            position=i,
                            name=spec.name,
                            stage=spec.stage,
                            owner=spec.owner,
                            gate=spec.gate,
                            status=status,
                            depends_on=list(spec.depends_on),
                            due_date=target - timedelta(days=20 * (23 - i)),
                            completed_at=now if status == "done" else None,
                        )
                    )
                p = progress_of(statuses)
                session.add(
                    t.Project(
                        id=pid,
                        workflow_id=f"migration-{pid}",
                        lg_code=body.lg_code,
                        body_name=body.full_name,
                        prefecture=body.prefecture_code,
                        business=business.slug,
                        business_name=business.name,
                        template="mic-handbook@1.0",
                        target_go_live=target,
                        deadline=date(2026, 3, 31),
                        stage=DEFAULT_TEMPLATE.tasks[min(reached, 22)].stage,
                        health=rng.choice(["on_track", "at_risk", "overdue"]),
                        done=p.done,
                        in_progress=p.in_progress,
                        not_started=p.not_started,
                        not_applicable=p.not_applicable,
                        completion_rate=p.completion_rate,
                        in_progress_rate=p.in_progress_rate,
                        not_started_rate=p.not_started_rate,
                        created_at=now,
                        updated_at=now,
                    )
                )
        session.commit()
    engine.dispose()
    return max(per_prefecture, key=lambda k: per_prefecture[k])


async def measure(url: str, busiest: str, repeat: int) -> list[tuple[str, list[float]]]:
    engine = make_engine(url)
    with Session(engine) as session:
        _, national = create_token(session, role="observer", name="mic")
        _, prefecture = create_token(session, role="prefecture", name="pref", prefecture=busiest)
        cookies = {
            "national": open_page_session(session, national, 1.0),
            "prefecture": open_page_session(session, prefecture, 1.0),
        }
    # One reader asking again and again: no rate limit, it is the server being measured.
    settings = Settings(database_url=url, rate_limit_per_token="", rate_limit_per_address="")
    app = create_app(settings, engine=engine)
    views = [
        ("national", "/reports", "page: nation by prefecture"),
        ("national", "/reports?by=lg_code", "page: nation by body"),
        ("national", "/reports?by=task", "page: nation by step"),
        ("prefecture", "/reports", "page: prefecture by body"),
        ("prefecture", "/reports?by=business", "page: prefecture by business"),
        ("national", "/api/v1/reports/progress?group_by=prefecture", "api: by prefecture"),
        ("national", "/api/v1/reports/progress?group_by=task", "api: by step"),
        ("national", "/api/v1/reports/progress?group_by=lg_code&format=xlsx", "api: xlsx by body"),
    ]
    results = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for who, path, label in views:
                http.cookies.set(PAGE_COOKIE, cookies[who] or "")
                samples = []
                for _ in range(repeat + 2):
                    t0 = time.perf_counter()
                    answer = await http.get(path)
                    samples.append((time.perf_counter() - t0) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
                results.append((label, samples[2:]))  # the first two warm caches
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'rollup.db'}"
        upgrade_schema(url)
        t0 = time.perf_counter()
        busiest = seed(url, args.projects, random.Random(20260331))
        print(
            f"seeded {args.projects} projects ({args.projects * 23} tasks) "
            f"in {time.perf_counter() - t0:.1f} s on {url.split(':')[0]}"
        )
        results = asyncio.run(measure(url, busiest, args.repeat))
    print(f"{'view':38} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, samples in results:
        print(f"{label:38} {pct(samples, 0.5):8.1f} {pct(samples, 0.95):8.1f} {max(samples):8.1f}")
    worst = max(pct(s, 0.95) for _, s in results if _.startswith("page"))
    print(f"roll-up page p95 (worst view): {worst:.1f} ms (target under 300 ms)")


if __name__ == "__main__":
    main()
