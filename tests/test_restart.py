"""Nothing a user was told succeeded is lost when the processes stop, politely or not.

These start the real ``hyojunka`` command as separate processes, so they are slower and
marked heavy; CI runs them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from benchmarks.harness import HYOJUNKA, free_port, until_ready, up_environment
from workflows.calendar import add_months
from workflows.procedure import DEFAULT_TEMPLATE

pytestmark = pytest.mark.heavy

TARGET = add_months(date.today(), 36).isoformat()


def _create(base: str, token: str, lg_code: str, business: str, vendor_id: str) -> str:
    created = httpx.post(
        f"{base}/api/v1/projects",
        json={
            "lg_code": lg_code,
            "business": business,
            "target_go_live": TARGET,
            "vendor_id": vendor_id,
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def wait_ready(base: str, seconds: float = 60) -> None:
    until_ready(base, seconds)


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([HYOJUNKA, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Walker:
    """Walks a project through the procedure over HTTP, as its people would."""

    def __init__(self, base: str, tokens: dict[str, str], project_id: str) -> None:
        self.base, self.tokens, self.pid = base, tokens, project_id

    def h(self, role: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **extra}

    def project(self) -> dict:
        resp = httpx.get(f"{self.base}/api/v1/projects/{self.pid}", headers=self.h("observer"))
        assert resp.status_code == 200, resp.text
        return resp.json()

    def complete(self, key: str) -> None:
        spec = DEFAULT_TEMPLATE.task(key)
        url = f"{self.base}/api/v1/projects/{self.pid}"
        if spec.gate:
            resp = httpx.post(
                f"{url}/gates/{key}/decision",
                json={"outcome": "approve"},
                headers=self.h("approver"),
                timeout=30,
            )
        elif spec.owner == "vendor":
            resp = httpx.post(
                f"{url}/milestones",
                json={"task_key": key, "status": "done"},
                headers=self.h("vendor", **{"Idempotency-Key": f"k-{key}"}),
                timeout=30,
            )
        else:
            resp = httpx.post(
                f"{url}/tasks/{key}", json={"status": "done"}, headers=self.h("pm"), timeout=30
            )
        assert resp.status_code == 200, (key, resp.text)

    def walk(self, keys: list[str]) -> None:
        for key in keys:
            self.complete(key)


def _keys() -> list[str]:
    return [s.key for s in DEFAULT_TEMPLATE.tasks if s.key != "rfp"]


def test_up_stops_on_ctrl_c_and_resumes_every_project(tmp_path: Path) -> None:
    env = up_environment(tmp_path / "data")
    base = f"http://127.0.0.1:{env['HYOJUNKA_API_PORT']}"
    out = tmp_path / "up.out"
    with out.open("wb") as stdout:
        up = subprocess.Popen(
            [HYOJUNKA, "up"], env=env, stdout=stdout, stderr=(tmp_path / "up.err").open("wb")
        )
    try:
        wait_ready(base)
        printed = out.read_text()
        tokens = dict(re.findall(r"^\s+(\w+)\s+\S+\s+(hyj_\S+)$", printed, re.M))
        assert set(tokens) == {"admin", "observer", "prefecture", "pm", "approver", "vendor"}
        walker = Walker(
            base, tokens, _create(base, tokens["pm"], "131016", "resident_registry", "demo-vendor")
        )
        half = _keys()[:11]
        walker.walk(half)
        before = walker.project()
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    with out.open("ab") as stdout:
        again = subprocess.Popen(
            [HYOJUNKA, "up"], env=env, stdout=stdout, stderr=(tmp_path / "up2.err").open("wb")
        )
    try:
        wait_ready(base)
        assert out.read_text().count("hyj_") == 6  # tokens are printed on first start only
        after = walker.project()
        assert after["tasks"] == before["tasks"]
        assert after["progress"] == before["progress"]
        walker.walk(_keys()[11:])
        assert walker.project()["stage"] == "completed"
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=60) == 0


def test_worker_and_api_killed_midway_lose_nothing(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "HYOJUNKA_DATABASE_URL": f"sqlite:///{tmp_path / 'readmodel.db'}",
        "HYOJUNKA_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HYOJUNKA_TASK_QUEUE": f"restart-{api_port}",
        "HYOJUNKA_API_PORT": str(api_port),
        "HYOJUNKA_LOG_JSON": "true",
    }
    subprocess.run([HYOJUNKA, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [HYOJUNKA, "vendor", "create", "--id", "acme", "--name", "アクメ"],
        env=env,
        check=True,
        capture_output=True,
    )

    def token(*args: str) -> str:
        done = subprocess.run(
            [HYOJUNKA, "token", "create", *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    lg_code = "472018"  # 那覇市
    tokens = {
        "pm": token("--role", "pm", "--lg-code", lg_code, "--name", "pm"),
        "approver": token("--role", "approver", "--lg-code", lg_code, "--name", "cio"),
        "vendor": token("--role", "vendor", "--vendor", "acme", "--name", "acme-ci"),
        "observer": token("--role", "observer", "--name", "mic"),
    }
    base = f"http://127.0.0.1:{api_port}"
    logs = tmp_path
    with (
        process(["worker"], env, logs / "worker1.log") as worker,
        process(["api"], env, logs / "api1.log") as api,
    ):
        wait_ready(base)
        walker = Walker(
            base, tokens, _create(base, tokens["pm"], lg_code, "national_pension", "acme")
        )
        walker.walk(_keys()[:14])
        before = walker.project()
        events_before = httpx.get(
            f"{base}/api/v1/projects/{walker.pid}/events",
            params={"limit": 500},
            headers=walker.h("observer"),
        ).json()
        worker.send_signal(signal.SIGKILL)
        api.send_signal(signal.SIGKILL)
        worker.wait()
        api.wait()

    with process(["worker"], env, logs / "worker2.log"), process(["api"], env, logs / "api2.log"):
        wait_ready(base)
        assert walker.project()["tasks"] == before["tasks"]
        events_after = httpx.get(
            f"{base}/api/v1/projects/{walker.pid}/events",
            params={"limit": 500},
            headers=walker.h("observer"),
        ).json()
        assert events_after == events_before
        walker.walk(_keys()[14:])
        final = walker.project()
        assert final["stage"] == "completed"
        assert final["progress"]["completion_rate"] == 1.0
