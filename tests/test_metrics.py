"""What operators scrape: the API's answers by route and status at /metrics, and the
worker's Temporal SDK metrics with the escalations it raised, on its own address."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import httpx
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from benchmarks.harness import free_port
from runtime.settings import Settings
from runtime.temporal import connect, worker_runtime
from tests.workflows.helpers import new_input, start
from worker.runner import build_worker
from workflows.calendar import add_months


async def test_the_api_counts_answers_by_route_template_never_by_id() -> None:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.get("/api/v1/projects/131016-resident_registry")  # no token: 401
        text = (await http.get("/metrics")).text
    assert (
        'hyojunka_http_requests_total{method="GET",route="/api/v1/projects/{project_id}",'
        'status="401"}' in text
    )
    assert "131016" not in text
    assert "hyojunka_temporal_calls_in_flight" in text


async def test_the_worker_serves_sdk_metrics_and_the_escalations_it_raised(
    dev_env: WorkflowEnvironment, engine: Engine
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"metrics-{uuid.uuid4().hex}",
        worker_metrics_address=address,
    )
    client = await connect(settings, runtime=worker_runtime(settings))
    async with build_worker(client, engine, settings) as worker, worker:
        # Going live in six months: the first tasks are long overdue on registration.
        await start(client, settings.task_queue, new_input(add_months(date.today(), 6)))
        text = ""
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                text = (await http.get(f"http://{address}/metrics")).text
                if "hyojunka_escalations_raised" in text:
                    break
                await asyncio.sleep(0.2)
    assert 'hyojunka_escalations_raised{level="prefecture"' in text, text[:2000]
    assert "temporal_workflow_task_execution_latency" in text  # the SDK's own
