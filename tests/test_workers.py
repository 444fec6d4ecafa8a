"""Several workers under `hyojunka up`: how many by default, what each one owns, schedules
created once when they start together, and `up --workers 2` as users run it: both workers
poll and serve, one killed is restarted while the API keeps answering."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from pydantic import ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from benchmarks.harness import HYOJUNKA, free_port, until_ready, up_environment
from cli.supervisor import nth_address, planned_ports, shared_ports, worker_children
from runtime.settings import Settings, default_workers
from worker.runner import ensure_schedules
from workflows.calendar import add_months
from workflows.payloads import DATA_CONVERTER

TARGET = add_months(date.today(), 36).isoformat()


def test_the_default_fits_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two cores or fewer: one worker, the API and the dev server have the other core.
    assert [default_workers(n) for n in (1, 2)] == [1, 1]
    # More: a core each but one, at most four.
    assert [default_workers(n) for n in (3, 4, 5, 8, 64)] == [2, 3, 4, 4, 4]
    assert 1 <= default_workers() <= 4
    monkeypatch.setenv("HYOJUNKA_WORKERS", "3")
    assert Settings().workers == 3
    monkeypatch.setenv("HYOJUNKA_WORKERS", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_each_worker_has_its_own_probe_and_metrics_port() -> None:
    settings = Settings(
        worker_health_address="0.0.0.0:8081", worker_metrics_address="127.0.0.1:9464"
    )
    workers = worker_children(settings, 3)
    assert [w.name for w in workers] == ["worker", "worker-1", "worker-2"]
    assert [w.env["HYOJUNKA_WORKER_HEALTH_ADDRESS"] for w in workers] == [
        "0.0.0.0:8081",
        "0.0.0.0:8082",
        "0.0.0.0:8083",
    ]
    assert workers[2].env["HYOJUNKA_WORKER_METRICS_ADDRESS"] == "127.0.0.1:9466"
    assert {w.group for w in workers} == {"workers"}
    # Not served stays not served; port 0 stays "any free port".
    assert worker_children(Settings(), 2)[1].env == {}
    assert nth_address("", 3) == "" and nth_address("[::1]:0", 2) == "[::1]:0"
    assert nth_address("[::1]:9000", 2) == "[::1]:9002"
    assert shared_ports(planned_ports(settings, 3)) == []
    # Probes on 8081 and metrics on 8082: the second worker's probes would take the first's
    # metrics port. up refuses that before it starts anything.
    crowded = Settings(worker_health_address=":8081", worker_metrics_address=":8082")
    assert shared_ports(planned_ports(crowded, 1)) == []
    assert shared_ports(planned_ports(crowded, 2)) == [
        "worker's metrics and worker-1's probes would both use port 8082"
    ]


async def test_schedules_are_created_once_by_workers_starting_together(
    dev_env: WorkflowEnvironment,
) -> None:
    """Four workers starting at once each ensure the schedules: no one fails, and each
    schedule exists once. A namespace of its own, so that the schedules do not exist yet."""
    namespace = f"workers-{uuid.uuid4().hex[:12]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    target = dev_env.client.service_client.config.target_host
    clients = [
        await Client.connect(target, namespace=namespace, data_converter=DATA_CONVERTER)
        for _ in range(4)
    ]
    for _ in range(100):  # a new namespace is known to every service a moment later
        try:
            await clients[0].workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
            break
        except Exception:
            await asyncio.sleep(0.1)
    await asyncio.gather(*(ensure_schedules(c, "migrations") for c in clients))
    # And again, as a restarted worker does: kept as they are.
    await asyncio.gather(*(ensure_schedules(c, "migrations") for c in clients))
    expected = {
        "survey-reminder",
        "read-model-reconciliation",
        "monthly-progress-snapshot",
        "daily-mail",
        "programme-follow",
    }
    for schedule_id in expected:
        action = (await clients[0].get_schedule_handle(schedule_id).describe()).schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.task_queue == "migrations"
    listed: list[str] = []
    for _ in range(50):  # the list is eventually consistent
        listed = [s.id async for s in await clients[0].list_schedules()]
        if len(listed) >= len(expected):
            break
        await asyncio.sleep(0.2)
    assert Counter(listed) == Counter(expected)


# ---------------------------------------------------------------------------------------
# `hyojunka up --workers 2`


def _free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports."""
    for _ in range(100):
        first = free_port()
        try:
            for port in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no consecutive free ports")


def _children(data: Path) -> dict[str, int]:
    try:
        return {
            k: int(v) for k, v in json.loads((data / "up.json").read_text())["children"].items()
        }
    except (OSError, ValueError, KeyError):
        return {}


def _replaced(data: Path, name: str, old: int, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pid = _children(data).get(name)
        if pid and pid != old:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"{name} was not restarted")


def _probe_ready(port: int, seconds: float = 60) -> dict[str, str]:
    """The worker's /readyz on ``port`` once it says ready (it polls, Temporal answers)."""
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if resp.status_code == 200:
                return dict(resp.json())
            last = resp.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"the worker's probe on {port} never said ready: {last}")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


class Watch:
    """Asks the API for a project and its readiness all along, on a thread of its own."""

    def __init__(self, base: str, headers: dict[str, str], project_id: str) -> None:
        self.answers: Counter[int | str] = Counter()
        self._stop = threading.Event()
        self._urls = [f"{base}/readyz", f"{base}/api/v1/projects/{project_id}"]
        self._headers = headers
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5, headers=self._headers) as http:
            while not self._stop.is_set():
                for url in self._urls:
                    try:
                        self.answers[http.get(url).status_code] += 1
                    except httpx.HTTPError as exc:
                        self.answers[type(exc).__name__] += 1
                time.sleep(0.05)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def _pollers(address: str, task_queue: str) -> set[int]:
    """The pids of the processes Temporal saw poll the task queue for workflow tasks."""
    client = await Client.connect(address)
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {int(p.identity.split("@")[0]) for p in described.pollers}


async def _served_by(address: str, workflow_id: str) -> set[int]:
    """The pids of the workers that completed the workflow's tasks."""
    client = await Client.connect(address, data_converter=DATA_CONVERTER)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return {
        int(e.workflow_task_completed_event_attributes.identity.split("@")[0])
        for e in history.events
        if e.HasField("workflow_task_completed_event_attributes")
    }


@pytest.mark.heavy
def test_up_with_two_workers_serves_from_both_and_restarts_one_killed(
    tmp_path: Path, database_url: str
) -> None:
    env = up_environment(tmp_path / "data")
    # Both workers write the read model: SQLite, and PostgreSQL when the run has it.
    env["HYOJUNKA_DATABASE_URL"] = database_url
    probes = _free_ports(2)
    env["HYOJUNKA_WORKER_HEALTH_ADDRESS"] = f"127.0.0.1:{probes}"
    env["HYOJUNKA_WORKERS"] = "1"  # the flag wins over the setting
    data = tmp_path / "data"
    base = f"http://127.0.0.1:{env['HYOJUNKA_API_PORT']}"
    temporal = env["HYOJUNKA_TEMPORAL_ADDRESS"]
    out = tmp_path / "up.out"
    with out.open("wb") as stdout:
        up = subprocess.Popen(
            [HYOJUNKA, "up", "--workers", "2"], env=env, stdout=stdout, stderr=subprocess.STDOUT
        )
    try:
        until_ready(base, 90, up)
        printed = out.read_text()
        assert re.search(r"^workers\s+2$", printed, re.M), printed
        tokens = dict(re.findall(r"^\s+(\w+)\s+\S+\s+(hyj_\S+)$", printed, re.M))
        headers = {"Authorization": f"Bearer {tokens['admin']}"}

        children = _children(data)
        assert set(children) == {"temporal", "worker", "worker-1", "api"}
        first, second = children["worker"], children["worker-1"]
        for pid in (first, second):
            assert b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        # Each polls and answers its own probes: worker i on the base port plus i.
        for port in (probes, probes + 1):
            assert _probe_ready(port) == {"status": "ready", "worker": "ok", "temporal": "ok"}
        assert {first, second} <= asyncio.run(_pollers(temporal, "migrations"))

        def create(lg_code: str, business: str) -> str:
            body = {
                "lg_code": lg_code,
                "business": business,
                "target_go_live": TARGET,
                "vendor_id": "demo-vendor",
            }
            resp = httpx.post(f"{base}/api/v1/projects", json=body, headers=headers, timeout=30)
            # 201 once the worker has projected the creation into the read model.
            assert resp.status_code == 201, resp.text
            project_id = str(resp.json()["id"])
            got = httpx.get(f"{base}/api/v1/projects/{project_id}", headers=headers, timeout=10)
            assert got.status_code == 200, got.text
            assert got.json()["lg_code"] == lg_code and got.json()["tasks"]
            return project_id

        projects = [create("131016", "resident_registry")]
        with Watch(base, headers, projects[0]) as watch:
            # The second worker killed: the first serves a project created meanwhile.
            up_before = _children(data)
            os.kill(second, signal.SIGKILL)
            projects.append(create("131016", "individual_resident_tax"))
            second = _replaced(data, "worker-1", second)
            assert _probe_ready(probes + 1)["worker"] == "ok"
            # Now the first: the restarted second serves the next.
            os.kill(first, signal.SIGKILL)
            projects.append(create("131016", "fixed_asset_tax"))
            first = _replaced(data, "worker", first)
            assert _probe_ready(probes)["worker"] == "ok"
            projects.append(create("131016", "national_pension"))
        # The API answered all along; only the killed worker was restarted.
        assert set(watch.answers) == {200}, watch.answers
        assert sum(watch.answers.values()) > 20
        after = _children(data)
        assert after["api"] == up_before["api"] and after["temporal"] == up_before["temporal"]
        assert {first, second} <= asyncio.run(_pollers(temporal, "migrations"))
        served: set[int] = set()
        for project_id in projects:
            served |= asyncio.run(_served_by(temporal, f"migration-{project_id}"))
        assert len(served) >= 2, served  # more than one worker process did the work
        listed = httpx.get(
            f"{base}/api/v1/projects", params={"limit": 50}, headers=headers, timeout=10
        )
        assert {p["id"] for p in listed.json()["items"]} >= set(projects)

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        assert not [pid for pid in after.values() if _alive(pid)]
        assert not (data / "up.json").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
