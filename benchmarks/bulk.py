"""The bulk milestone feed beside the same milestones posted one by one, in the same run.

    .venv/bin/python -m benchmarks.bulk [--items 1000] [--projects 50] [--clients 20]

Starts ``hyojunka up`` in a temporary folder, registers ``--projects`` projects of the demo
vendor twice over (one set for each side, so neither side's keys are the other's repeats),
then posts ``--items`` milestones: one by one from ``--clients`` concurrent clients, each
with its Idempotency-Key; and the same number in one ``POST /api/v1/milestones``. Prints
both wall times, the ratio, and every answer that was not 200.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date

import httpx

from benchmarks.harness import Up, project_pairs, running_up
from workflows.calendar import add_months

TARGET = add_months(date.today(), 36).isoformat()


async def _register(up: Up, http: httpx.AsyncClient, pairs: list[tuple[str, str]]) -> list[str]:
    ids = []
    for lg_code, business in pairs:
        body = {
            "lg_code": lg_code,
            "business": business,
            "target_go_live": TARGET,
            "vendor_id": "demo-vendor",
        }
        made = await http.post(f"{up.base}/api/v1/projects", json=body, headers=up.headers("admin"))
        made.raise_for_status()
        ids.append(made.json()["id"])
    return ids


def _items(projects: list[str], n: int, run: str) -> list[dict[str, object]]:
    return [
        {
            "project_id": projects[i % len(projects)],
            "task_key": "system_setup",
            "status": "in_progress",
            "percent": (i // len(projects)) % 100,
            "idempotency_key": f"{run}-{i}",
        }
        for i in range(n)
    ]


async def _one_by_one(
    up: Up, http: httpx.AsyncClient, items: list[dict[str, object]], clients: int
) -> tuple[float, list[int]]:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    failed: list[int] = []

    async def client() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            body = {k: item[k] for k in ("task_key", "status", "percent")}
            headers = up.headers("vendor", **{"Idempotency-Key": str(item["idempotency_key"])})
            resp = await http.post(
                f"{up.base}/api/v1/projects/{item['project_id']}/milestones",
                json=body,
                headers=headers,
            )
            if resp.status_code != 200:
                failed.append(resp.status_code)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, failed


async def _bulk(
    up: Up, http: httpx.AsyncClient, items: list[dict[str, object]]
) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    resp = await http.post(
        f"{up.base}/api/v1/milestones", json={"items": items}, headers=up.headers("vendor")
    )
    wall = time.perf_counter() - t0
    resp.raise_for_status()
    return wall, [r["status"] for r in resp.json()["results"] if r["status"] != 200]


async def main(args: argparse.Namespace) -> None:
    with running_up() as up:
        limits = httpx.Limits(max_connections=args.clients + 5)
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:
            pairs = project_pairs(args.projects * 2)
            singles_projects = await _register(up, http, pairs[: args.projects])
            bulk_projects = await _register(up, http, pairs[args.projects :])
            singles, singles_failed = await _one_by_one(
                up, http, _items(singles_projects, args.items, "one"), args.clients
            )
            bulk, bulk_failed = await _bulk(up, http, _items(bulk_projects, args.items, "bulk"))
    print(f"milestones                     {args.items} over {args.projects} projects (each side)")
    print(
        f"one by one, {args.clients} clients        {singles:6.2f} s  "
        f"{args.items / singles:7.1f}/s  failed {len(singles_failed)}"
    )
    print(
        f"one bulk feed                  {bulk:6.2f} s  {args.items / bulk:7.1f}/s  "
        f"failed {len(bulk_failed)}"
    )
    print(f"bulk / one by one              {singles / bulk:6.2f}x faster (target >= 2x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--clients", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
