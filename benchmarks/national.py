"""The whole country on the embedded default: import, reads and the worker's memory.

    .venv/bin/python -m benchmarks.national [--scale 1.0 | --limit N] [--raw N] [--samples 50]
                                            [--concurrency 16] [--folder PATH]
                                            [--wave 5000] [--wave-digest-seconds 60]
                                            [--price-per-million 50]

Starts ``hyojunka up`` (dev server on SQLite/WAL, worker and API in processes of their own)
in a temporary folder and seeds it as ``hyojunka seed --whole-country`` does: the national
data set generated (every body × its businesses, varied progress) and imported through the
import path (``api.imports``, the operator's caller, ``import_concurrency`` creations in
flight), then the extended-track declarations. Beside it, in the same run and on the same dev
server, raw Temporal: a trivial workflow started with its first update, as many at once.
Then, sequentially, p50/p95 of the project list (unfiltered, and filtered by a prefecture),
of the progress report by each grouping, of the vendors' report and of the largest vendor's
capacity by month (the seed's vendors concentrated as the market is, the national ones stating
their capacity), of the projects over their vendor's capacity, of one project (API) and of its
page (signed in);
and the peak resident memory of the worker (and of the API and the dev server).
Last, once that stack has stopped (so the machine is its own), the 09:00 wave of
``benchmarks.wave`` for ``--wave`` simultaneous rungs (0 skips it), its report printed as
part of this one. The report ends with Temporal Cloud actions per project over a typical life
(``benchmarks.billing``), its step costs measured from a sample of the imported projects'
histories.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from api.commands import OPERATOR, Context
from api.imports import ImportTally, import_projects
from benchmarks import billing
from benchmarks.harness import Up, pct, running_up
from benchmarks.raw import CounterWorkflow
from cli.seed import SeedProject, declare_extended_tracks, register_vendors, seed_csv, seed_projects
from readmodel.db import ReadModel, engine_for
from runtime.settings import Settings
from runtime.temporal import connect
from workflows.calendar import jst_today

RAW_QUEUE = "raw-national"
GROUPINGS = ("prefecture", "lg_code", "business", "task")
MIB = 1024 * 1024
# The events of an imported project's history by type, per project (filled by temporal_work).
EVENT_KINDS: dict[str, float] = {}


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@dataclass
class Timed:
    n: int
    wall: float

    @property
    def rate(self) -> float:
        return self.n / self.wall if self.wall else 0.0


def memory(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of ``pid`` in MiB, from /proc."""
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        return float("nan"), float("nan")
    return values.get("VmHWM", float("nan")), values.get("VmRSS", float("nan"))


def settings_for(up: Up) -> Settings:
    return Settings(
        data_dir=up.data,
        temporal_address=up.temporal_address,
        database_url=None,
    )


async def seed(up: Up, projects: list[SeedProject]) -> tuple[Timed, Timed, dict[str, int]]:
    """Import the seed file through the import path, then declare the extended tracks."""
    settings = settings_for(up)
    engine = engine_for(settings)
    with Session(engine) as session:
        register_vendors(session, projects)
    client = await connect(settings)
    ctx = Context(ReadModel(engine), client, settings, request_id="benchmark-national")
    data = seed_csv(projects)
    step = max(1, len(projects) // 20)

    def progress(t: ImportTally) -> None:
        if t.done % step == 0 or t.done == t.total:
            log(f"  import {t.done}/{t.total} (created {t.created}, refused {t.refused})")

    t0 = time.perf_counter()
    result = await import_projects(ctx, OPERATOR, data, on_progress=progress)
    imported = Timed(result.created, time.perf_counter() - t0)
    for r in result.refused[:5]:
        log(f"  refused line {r.line}: {r.errors}")
    t0 = time.perf_counter()
    declared = await declare_extended_tracks(ctx, projects)
    extended = Timed(declared, time.perf_counter() - t0)
    engine.dispose()
    counts = {"created": result.created, "existing": result.existing}
    counts["refused"] = len(result.refused)
    counts.update(await temporal_work(client, [p.project_id for p in projects]))
    return imported, extended, counts


async def temporal_work(client: Client, ids: list[str]) -> dict[str, int]:
    """What the import asked of Temporal: workflows by type, and the history length of a
    sample of the projects (each event is a write the dev server makes)."""
    out = {}
    for kind in ("MigrationWorkflow", "NotificationWorkflow"):
        counted = await client.count_workflows(f"WorkflowType = '{kind}'")
        out[kind] = counted.count
    sample = random.Random(2).sample(ids, min(20, len(ids)))
    lengths = []
    kinds: Counter[str] = Counter()
    for pid in sample:
        history = await client.get_workflow_handle(f"migration-{pid}").fetch_history()
        lengths.append(len(history.events))
        kinds.update(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
        )
    out["history_events_mean"] = round(sum(lengths) / len(lengths)) if lengths else 0
    out["history_events_max"] = max(lengths, default=0)
    EVENT_KINDS.update({k: round(v / max(1, len(sample)), 1) for k, v in kinds.most_common()})
    return out


async def raw_starts(up: Up, n: int, concurrency: int) -> Timed:
    """``n`` trivial workflows started with their first update, ``concurrency`` at a time."""
    client = await Client.connect(up.temporal_address)
    prefix = uuid.uuid4().hex[:8]
    slots = asyncio.Semaphore(concurrency)

    async def start(i: int) -> None:
        async with slots:
            op = WithStartWorkflowOperation(
                CounterWorkflow.run,
                id=f"raw-{prefix}-{i}",
                task_queue=RAW_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            await client.execute_update_with_start_workflow(
                CounterWorkflow.bump, 1, start_workflow_operation=op
            )

    async with Worker(client, task_queue=RAW_QUEUE, workflows=[CounterWorkflow]):
        t0 = time.perf_counter()
        await asyncio.gather(*(start(i) for i in range(n)))
        return Timed(n, time.perf_counter() - t0)


def sign_in(http: httpx.Client, token: str) -> None:
    """A page session as a browser gets one: the login form (with whatever hidden fields it
    carries), then the token."""
    form = http.get("/login").text
    fields = dict(
        re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form)
    )
    resp = http.post("/login", data={**fields, "token": token})
    if resp.status_code >= 400:
        raise RuntimeError(f"sign-in failed: {resp.status_code}")


def latencies(up: Up, projects: list[SeedProject], samples: int) -> list[tuple[str, list[float]]]:
    """Each read ``samples`` times, one after another, in milliseconds."""
    rng = random.Random(1)
    ids = [p.project_id for p in projects]
    prefectures = sorted({p.lg_code[:2] for p in projects})
    # The prefecture with the most projects in the set: the largest filtered list.
    biggest = max(prefectures, key=lambda pref: sum(p.lg_code[:2] == pref for p in projects))
    auth = up.headers("admin")
    # name, path, query, the role whose demo token reads it
    reads: list[tuple[str, str, dict[str, str], str]] = [
        ("GET /api/v1/projects", "/api/v1/projects", {}, "admin"),
        (
            f"GET /api/v1/projects?prefecture={biggest}",
            "/api/v1/projects",
            {"prefecture": biggest},
            "admin",
        ),
    ]
    for g in GROUPINGS:
        reads.append(
            (
                f"GET /api/v1/reports/progress?group_by={g}",
                "/api/v1/reports/progress",
                {"group_by": g},
                "admin",
            )
        )
    # Vendors at national scale: every vendor by month, and the largest vendor's own months.
    served = Counter(p.vendor_id for p in projects if p.vendor_id is not None)
    reads.append(("GET /api/v1/reports/vendors", "/api/v1/reports/vendors", {}, "admin"))
    # A prefecture's: its bodies' share of each vendor's tasks is counted task by task.
    reads.append(
        (
            "GET /api/v1/reports/vendors (prefecture 13)",
            "/api/v1/reports/vendors",
            {},
            "prefecture",
        )
    )
    if served:
        largest = served.most_common(1)[0][0]
        path = f"/api/v1/vendors/{largest}/capacity"
        reads.append((f"GET {path} ({served[largest]} projects)", path, {}, "admin"))
    reads.append(
        (
            "GET /api/v1/projects?vendor_over_capacity=true",
            "/api/v1/projects",
            {"vendor_over_capacity": "true"},
            "admin",
        )
    )
    out: list[tuple[str, list[float]]] = []
    with httpx.Client(base_url=up.base, timeout=60) as http:
        for name, path, params, role in reads:
            headers = up.headers(role)
            times = []
            for i in range(samples + 2):
                t0 = time.perf_counter()
                resp = http.get(path, params=params, headers=headers)
                took = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise RuntimeError(f"{name}: {resp.status_code} {resp.text[:200]}")
                if i >= 2:  # two to warm up
                    times.append(took)
            out.append((name, times))
        times = []
        for _ in range(samples):
            pid = rng.choice(ids)
            t0 = time.perf_counter()
            resp = http.get(f"/api/v1/projects/{pid}", headers=auth)
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"project {pid}: {resp.status_code}")
        out.append(("GET /api/v1/projects/{id}", times))
    with httpx.Client(base_url=up.base, timeout=60) as page:
        sign_in(page, up.tokens["admin"])
        times = []
        for _ in range(samples):
            pid = rng.choice(ids)
            t0 = time.perf_counter()
            resp = page.get(f"/projects/{pid}")
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"page of {pid}: {resp.status_code}")
        out.append(("GET /projects/{id} (page, signed in)", times))
    return out


async def run(args: argparse.Namespace) -> None:
    today = jst_today(datetime.now(UTC))
    projects = seed_projects(args.random_seed, today, args.scale, args.limit)
    raw_n = min(len(projects), args.raw) if args.raw else len(projects)
    env = {
        # A benchmark client reads faster than any person: no rate limit here.
        "HYOJUNKA_RATE_LIMIT_PER_TOKEN": "",
        "HYOJUNKA_RATE_LIMIT_PER_ADDRESS": "",
        "HYOJUNKA_IMPORT_CONCURRENCY": str(args.concurrency),
        "HYOJUNKA_LOG_JSON": "true",
    }
    os.environ["HYOJUNKA_IMPORT_CONCURRENCY"] = str(args.concurrency)
    folder = Path(args.folder) if args.folder else None
    with running_up(folder, extra_env=env) as up:
        log(f"seeding {len(projects)} projects")
        imported, extended, counts = await seed(up, projects)
        log(f"raw Temporal: {raw_n} starts")
        raw = await raw_starts(up, raw_n, args.concurrency)
        log("reads")
        reads = latencies(up, projects, args.samples)
        children = up.children()
        mem = {name: memory(pid) for name, pid in children.items()}
        log("billable actions")
        bill = await billed(up, projects, args.price_per_million)

    wave = run_wave(args.wave, args.wave_digest_seconds) if args.wave else None

    scale = f"limit {args.limit}" if args.limit is not None else f"scale {args.scale}"
    print(f"national benchmark: {len(projects)} projects ({scale}, seed {args.random_seed}),")
    print("  embedded default (hyojunka up: Temporal dev server on SQLite/WAL, worker, API)")
    print(f"import ({args.concurrency} creations in flight)")
    print(
        f"  hyojunka import               n={imported.n:<6} wall {imported.wall:8.1f} s"
        f"  {imported.rate:7.1f}/s   created {counts['created']} existing {counts['existing']}"
        f" refused {counts['refused']}"
    )
    print(
        f"  extended-track declarations   n={extended.n:<6} wall {extended.wall:8.1f} s"
        f"  {extended.rate:7.1f}/s"
    )
    print(f"  raw Temporal start+update     n={raw.n:<6} wall {raw.wall:8.1f} s  {raw.rate:7.1f}/s")
    ratio = imported.rate / raw.rate if raw.rate else float("nan")
    whole = 34_914 / imported.rate / 60 if imported.rate else float("nan")
    print(f"  import / raw                  {ratio:5.2f}x")
    print(
        f"  Temporal work of the import   {counts['MigrationWorkflow']} migration and "
        f"{counts['NotificationWorkflow']} notification workflows; history of a project "
        f"{counts['history_events_mean']} events on average (max {counts['history_events_max']})"
        " vs 6 for a raw start+update"
    )
    for kind, per_project in EVENT_KINDS.items():
        print(f"    {kind:<44} {per_project:5.1f} per project")
    print(f"  whole country at this rate    {whole:6.1f} min   (target <= 10 min, goal 6)")
    print(
        f"reads (sequential, {args.samples} each)            p50 ms    p95 ms   (target p95 <= 150)"
    )
    for name, times in reads:
        print(f"  {name:<48} {pct(times, 0.5):8.1f}  {pct(times, 0.95):8.1f}")
    print("memory (resident MiB: peak / now)")
    for name, (peak, now) in mem.items():
        print(f"  {name:<10} {peak:8.1f} / {now:8.1f}")
    if wave is not None:
        print(
            f"09:00 wave ({args.wave} simultaneous rungs, python -m benchmarks.wave --projects "
            f"{args.wave} --digest-seconds {args.wave_digest_seconds:g}; target <= 120 s)"
        )
        for line in wave.splitlines():
            print(f"  {line}")
    print(bill)


async def billed(up: Up, projects: list[SeedProject], price_per_million: float) -> str:
    """The actions table from the histories of 50 of the imported projects (their mix of on
    time, late, live and extended-track registrations) and the digests that have closed."""
    client = await Client.connect(up.temporal_address)
    sample = random.Random(3).sample(projects, min(50, len(projects)))
    ids = [f"migration-{p.project_id}" for p in sample]
    return await billing.measured_report(client, ids, "this run", price_per_million)


def run_wave(projects: int, digest_seconds: float) -> str:
    """The wave benchmark in a process of its own (its own time-skipping server and worker):
    its report, or why it failed."""
    log(f"the 09:00 wave: {projects} rungs")
    argv = ["--projects", str(projects), "--digest-seconds", f"{digest_seconds:g}"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.wave", *argv], capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the country")
    parser.add_argument("--limit", type=int, help="at most this many projects")
    parser.add_argument("--raw", type=int, help="raw workflow starts (default: as many)")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--random-seed", type=int, default=2026)
    parser.add_argument(
        "--wave", type=int, default=5000, help="rungs of the 09:00 wave afterwards (0: none)"
    )
    parser.add_argument(
        "--wave-digest-seconds", type=float, default=60.0, help="the wave's digest window"
    )
    billing.add_price_option(parser)
    parser.add_argument(
        "--folder",
        help="run in this folder and keep it: a second run finds the projects existing (the "
        "import is then a rerun, changing nothing) and measures the reads again",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
