"""hyojunka's write path beside raw Temporal, on the same dev server in the same run.

    .venv/bin/python -m benchmarks.load [--projects 200] [--serial 200] [--per-client 20]
                                        [--workers 1] [--repeat 1] [--price-per-million 50]

Starts ``hyojunka up`` (dev server on SQLite/WAL, ``--workers`` worker processes and the API in
processes of their own)
in a temporary folder, and a trivial counter workflow on a worker in this process against
the same dev server. Prints, for each side: project creation at 20 concurrent clients
(hyojunka POST /projects vs. raw start + first update in one call), vendor milestones one
after another (p50/p95/p99), and at 50 concurrent clients spread over 10 projects
(throughput and p99); each ratio; the CPU each creation and concurrent milestone cost the dev
server, the worker, the API and the load itself; and every error (any answer but 2xx). Last,
Temporal Cloud actions per project over a typical life (``benchmarks.billing``), its creation
and milestone costs measured from this run's histories. With ``--repeat N``, all of it N
times, each on a new ``hyojunka up``, then each ratio's median with its lowest and highest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from benchmarks import billing
from benchmarks.harness import Up, pct, project_pairs, running_up
from benchmarks.raw import CounterWorkflow
from workflows.calendar import add_months
from workflows.model import workflow_id_for

TARGET = add_months(date.today(), 36).isoformat()
RAW_QUEUE = "raw-counter"
CLIENT: contextvars.ContextVar[int] = contextvars.ContextVar("client", default=0)


@dataclass
class Run:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def line(self) -> str:
        ms = [x * 1000 for x in self.latencies]
        return (
            f"  {self.name:<34} n={len(ms):<5} {self.rate:7.1f}/s  p50={pct(ms, 0.5):7.1f} ms"
            f"  p95={pct(ms, 0.95):7.1f} ms  p99={pct(ms, 0.99):7.1f} ms"
            f"  errors={len(self.errors)}"
        )


async def drive(name: str, calls: list[Callable[[], Awaitable[None]]], concurrency: int) -> Run:
    """Run ``calls`` with at most ``concurrency`` in flight; time each."""
    run = Run(name)
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
    for c in calls:
        queue.put_nowait(c)

    async def client(index: int) -> None:
        CLIENT.set(index)
        while not queue.empty():
            call = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # the benchmark counts every failure, of any kind
                run.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            run.latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    run.wall = time.perf_counter() - t0
    return run


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used (user + system, all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class Cpu:
    """CPU seconds of ``up``'s children (dev server, worker, API) and of this process (the
    load, and on the raw side its worker) over a phase: where a write's cost goes."""

    def __init__(self, up: Up) -> None:
        self.up = up
        self.spent: dict[str, dict[str, float]] = {}

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.up.children().items()}
        now["load (this process)"] = time.process_time()
        return now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        before = self._now()
        yield
        after = self._now()
        self.spent[name] = {k: after[k] - before.get(k, 0.0) for k in after}

    def lines(self, runs: dict[str, Run]) -> list[str]:
        out = []
        for name, spent in self.spent.items():
            n = max(1, len(runs[name].latencies) + len(runs[name].errors))
            each = ", ".join(f"{k} {v * 1000 / n:.1f}" for k, v in spent.items() if v > 0.005)
            out.append(f"  {runs[name].name:<34} ms of CPU each: {each}")
        return out


class Http:
    """One connection per concurrent client, as separate vendor systems have: a single
    shared httpx pool makes its waiters queue for seconds and would be measured instead."""

    def __init__(self, up: Up, clients: list[httpx.AsyncClient]) -> None:
        self.up, self.clients = up, clients

    async def post(self, path: str, body: dict, role: str, **headers: str) -> dict:
        resp = await self.clients[CLIENT.get()].post(
            f"{self.up.base}/api/v1{path}", json=body, headers=self.up.headers(role, **headers)
        )
        if resp.status_code >= 300:
            raise RuntimeError(f"{resp.status_code} {resp.text[:120]}")
        return resp.json()


async def hyojunka_side(up: Up, args: argparse.Namespace, cpu: Cpu) -> dict[str, Run]:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=30)) for _ in range(50)
        ]
        api = Http(up, clients)
        pairs = project_pairs(args.projects + 10)

        def create(c: str, b: str) -> Callable[[], Awaitable[None]]:
            body = {
                "lg_code": c,
                "business": b,
                "target_go_live": TARGET,
                "vendor_id": "demo-vendor",
            }

            async def call() -> None:
                await api.post("/projects", body, "admin")

            return call

        creates = [create(c, b) for c, b in pairs[: args.projects]]
        with cpu.phase("create"):
            runs = {"create": await drive("create project (20 concurrent)", creates, 20)}
        # Ten projects for the milestones (created outside the timing).
        targets = [f"{c}-{b}" for c, b in pairs[args.projects :]]
        await drive("setup", [create(c, b) for c, b in pairs[args.projects :]], 10)

        def milestone(pid: str, i: int) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                await api.post(
                    f"/projects/{pid}/milestones",
                    {"task_key": "system_setup", "status": "in_progress", "percent": i % 100},
                    "vendor",
                    **{"Idempotency-Key": uuid.uuid4().hex},
                )

            return call

        runs["serial"] = await drive(
            "milestone serial", [milestone(targets[0], i) for i in range(args.serial)], 1
        )
        spread = [milestone(targets[i % 10], i) for i in range(50 * args.per_client)]
        with cpu.phase("c50"):
            runs["c50"] = await drive("milestone 50 concurrent", spread, 50)
    return runs


async def raw_side(up: Up, args: argparse.Namespace, cpu: Cpu) -> dict[str, Run]:
    client = await Client.connect(up.temporal_address)
    async with Worker(client, task_queue=RAW_QUEUE, workflows=[CounterWorkflow]):
        prefix = uuid.uuid4().hex[:8]

        def create(i: int) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                start = WithStartWorkflowOperation(
                    CounterWorkflow.run,
                    id=f"raw-{prefix}-{i}",
                    task_queue=RAW_QUEUE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
                await client.execute_update_with_start_workflow(
                    CounterWorkflow.bump, 1, start_workflow_operation=start
                )

            return call

        with cpu.phase("create"):
            runs = {
                "create": await drive(
                    "start + first update (20 concurrent)",
                    [create(i) for i in range(args.projects)],
                    20,
                )
            }
        handles = [client.get_workflow_handle(f"raw-{prefix}-{i}") for i in range(10)]

        def bump(i: int) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                await handles[i % 10].execute_update(CounterWorkflow.bump, 1)

            return call

        runs["serial"] = await drive("update serial", [bump(0) for _ in range(args.serial)], 1)
        with cpu.phase("c50"):
            runs["c50"] = await drive(
                "update 50 concurrent", [bump(i) for i in range(50 * args.per_client)], 50
            )
        for i in range(args.projects):
            await client.get_workflow_handle(f"raw-{prefix}-{i}").signal(CounterWorkflow.finish)
    return runs


def p(run: Run, q: float) -> float:
    """A run's latency at quantile ``q``, in ms."""
    return pct([x * 1000 for x in run.latencies], q)


def ratios(h: dict[str, Run], r: dict[str, Run]) -> dict[str, float]:
    """The figures the targets are set on, hyojunka against raw Temporal in the same run."""

    return {
        "creation throughput (x raw, target >= 0.5)": h["create"].rate / r["create"].rate,
        "milestone serial p50 (ms over raw, target <= 10)": p(h["serial"], 0.5)
        - p(r["serial"], 0.5),
        "milestone serial p99 (ms, target <= 60)": p(h["serial"], 0.99),
        "milestone 50 concurrent (x raw, target >= 0.5)": h["c50"].rate / r["c50"].rate,
        "failed requests": float(sum(len(run.errors) for run in h.values())),
    }


def summary(runs: list[dict[str, float]]) -> str:
    """Each figure's median over the runs, with its lowest and highest: the machine's other
    load moves single runs a lot."""
    lines = [f"over {len(runs)} runs: median (lowest - highest)"]
    for name in runs[0]:
        values = sorted(run[name] for run in runs)
        lines.append(
            f"  {name:<50} {statistics.median(values):7.2f}   ({values[0]:.2f} - {values[-1]:.2f})"
        )
    return "\n".join(lines)


def report(h: dict[str, Run], r: dict[str, Run], hcpu: Cpu, rcpu: Cpu) -> None:
    print("hyojunka (API over HTTP, worker and API processes, SQLite read model)")
    for run in h.values():
        print(run.line())
    print(*hcpu.lines(h), sep="\n")
    print("raw Temporal (counter workflow, same dev server)")
    for run in r.values():
        print(run.line())
    print(*rcpu.lines(r), sep="\n")

    print("ratios")
    print(
        f"  creation throughput        {h['create'].rate / r['create'].rate:5.2f}x raw"
        "   (target >= 0.5x)"
    )
    print(
        f"  milestone serial p50       +{p(h['serial'], 0.5) - p(r['serial'], 0.5):.1f} ms"
        "   (target <= +10 ms)"
    )
    print(f"  milestone serial p99       {p(h['serial'], 0.99):.1f} ms   (target <= 60 ms)")
    print(
        f"  milestone 50 concurrent    {h['c50'].rate / r['c50'].rate:5.2f}x raw"
        "   (target >= 0.5x, goal 0.8x)"
    )
    errors = [e for run in h.values() for e in run.errors]
    print(f"errors: {len(errors)}")
    for e in sorted(set(errors))[:10]:
        print(f"  {e}")


async def billed(up: Up, args: argparse.Namespace) -> str:
    """The actions table from the histories of up to 20 of the created projects and of the
    one that took the serial milestones (a tenth of the concurrent ones too): a project's
    milestones come one at a time, while concurrent ones share projections (group commit)
    and would make a milestone look cheaper than it is."""
    pairs = project_pairs(args.projects + 10)
    created = pairs[: args.projects]
    sample = created[:: max(1, len(created) // 20)][:20] + pairs[args.projects : args.projects + 1]
    client = await Client.connect(up.temporal_address)
    ids = [workflow_id_for(c, b) for c, b in sample]
    # The history of a project just created, by event kind (the serial one took milestones).
    fresh = await billing.histories_of(client, ids[:-1])
    kinds: Counter[str] = Counter()
    for history in fresh:
        kinds.update(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
        )
    n = max(1, len(fresh))
    lines = [f"history of a project just created: {sum(kinds.values()) / n:.1f} events (n={n})"]
    lines += [f"    {kind:<44} {count / n:5.1f}" for kind, count in kinds.most_common()]
    table = await billing.measured_report(client, ids, "this run", args.price_per_million)
    return "\n".join([*lines, table])


async def once(args: argparse.Namespace) -> dict[str, float]:
    with running_up(extra_env={"HYOJUNKA_WORKERS": str(args.workers)}) as up:
        print(f"worker processes: {args.workers}")
        hcpu, rcpu = Cpu(up), Cpu(up)
        h = await hyojunka_side(up, args, hcpu)
        r = await raw_side(up, args, rcpu)
        bill = await billed(up, args)
    report(h, r, hcpu, rcpu)
    print(bill, flush=True)
    return ratios(h, r)


async def main(args: argparse.Namespace) -> None:
    runs = []
    for i in range(args.repeat):
        if args.repeat > 1:
            print(f"--- run {i + 1} of {args.repeat}", flush=True)
        runs.append(await once(args))
    if args.repeat > 1:
        print(summary(runs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--serial", type=int, default=200)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes hyojunka up runs (default 1)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs, each on a new hyojunka up; medians printed"
    )
    billing.add_price_option(parser)
    asyncio.run(main(parser.parse_args()))
