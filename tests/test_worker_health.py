"""The worker's probes: alive while it polls, ready while it polls and Temporal answers."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from benchmarks.harness import free_port
from runtime.settings import Settings
from worker.runner import build_worker


async def test_worker_health_follows_the_worker(
    dev_env: WorkflowEnvironment, engine: Engine
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(task_queue=f"health-{uuid.uuid4().hex}", worker_health_address=address)
    base = f"http://{address}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with build_worker(dev_env.client, engine, settings) as worker:
            # Built but not yet polling: alive (starting), not ready.
            assert (await http.get("/healthz")).status_code == 200
            waiting = await http.get("/readyz")
            assert waiting.status_code == 503
            assert waiting.json()["worker"] == "not polling"
            async with worker:
                for _ in range(300):  # it polls a moment after it is started
                    ready = await http.get("/readyz")
                    if ready.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert ready.status_code == 200, ready.text
                assert ready.json() == {"status": "ready", "worker": "ok", "temporal": "ok"}
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/elsewhere")).status_code == 404
            # Stopped polling: the orchestrator restarts it.
            stopped = await http.get("/healthz")
            assert stopped.status_code == 503
            assert stopped.json()["status"] == "stopped"
