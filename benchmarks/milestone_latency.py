"""Serial latency of a vendor milestone through the API vs. a raw Temporal update.

    .venv/bin/python -m benchmarks.milestone_latency [N]

Starts what ``hyojunka up`` starts (Temporal dev server on a SQLite file with the WAL
pragmas, the worker, the API over real HTTP on loopback, SQLite read model), creates one
project, walks it to the vendor's system setup, then times N milestones posted one after
another through the API and N raw ``report_milestone`` updates on the same workflow.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
import uvicorn

from api.auth import create_token
from api.main import create_app
from cli.devserver import dev_server
from readmodel import tables as t
from readmodel.db import make_engine, upgrade_schema
from runtime.settings import Settings
from worker.runner import build_worker
from workflows.calendar import add_months
from workflows.core import MilestoneReport
from workflows.migration import MigrationWorkflow
from workflows.procedure import DEFAULT_TEMPLATE


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"{name:<28} n={len(ms):<5} p50={_pct(ms, 0.50):7.1f} ms  p99={_pct(ms, 0.99):7.1f} ms"
        f"  mean={statistics.fmean(ms):7.1f} ms"
    )


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        settings = Settings(
            data_dir=data,
            temporal_address=f"127.0.0.1:{_port()}",
            temporal_ui_port=_port(),
            api_port=_port(),
            task_queue="bench",
            # One client posting as fast as it can: the server is measured, not the limiter.
            rate_limit_per_token="",
            rate_limit_per_address="",
        )
        upgrade_schema(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        from sqlmodel import Session

        with Session(engine) as session:
            session.add(t.Vendor(id="acme", name="アクメ"))
            session.commit()
            _, admin = create_token(session, role="admin", name="bench")
            _, approver = create_token(session, role="approver", name="cio", lg_code="131016")
            _, vendor = create_token(session, role="vendor", name="acme", vendor_id="acme")
        async with dev_server(settings, data / "temporal.log") as client:
            app = create_app(settings, client=client, engine=engine)
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning")
            )
            async with build_worker(client, engine, settings) as worker, worker:
                serve = asyncio.create_task(server.serve())
                while not server.started:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                base = f"http://127.0.0.1:{settings.api_port}/api/v1"
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    h = {"Authorization": f"Bearer {admin}"}
                    target = add_months(date.today(), 36).isoformat()
                    r = await http.post(
                        "/projects",
                        headers=h,
                        json={
                            "lg_code": "131016",
                            "business": "resident_registry",
                            "target_go_live": target,
                            "vendor_id": "acme",
                        },
                    )
                    assert r.status_code == 201, r.text
                    pid = r.json()["id"]
                    for spec in DEFAULT_TEMPLATE.tasks:
                        if spec.key == "system_setup":
                            break
                        if spec.key == "rfp":
                            continue
                        if spec.gate:
                            r = await http.post(
                                f"/projects/{pid}/gates/{spec.key}/decision",
                                json={"outcome": "approve"},
                                headers={"Authorization": f"Bearer {approver}"},
                            )
                        else:
                            r = await http.post(
                                f"/projects/{pid}/tasks/{spec.key}",
                                json={"status": "done"},
                                headers=h,
                            )
                        assert r.status_code == 200, r.text
                    vh = {"Authorization": f"Bearer {vendor}"}
                    api_samples = []
                    for i in range(n):
                        body = {
                            "task_key": "system_setup",
                            "status": "in_progress",
                            "percent": i % 100,
                        }
                        start = time.perf_counter()
                        r = await http.post(
                            f"/projects/{pid}/milestones",
                            json=body,
                            headers={**vh, "Idempotency-Key": f"api-{i}"},
                        )
                        api_samples.append(time.perf_counter() - start)
                        assert r.status_code == 200, r.text
                handle = client.get_workflow_handle(f"migration-{pid}")
                raw_samples = []
                for i in range(n):
                    report = MilestoneReport(
                        f"raw-{i}",
                        "system_setup",
                        "in_progress",
                        "vendor:acme",
                        percent=i % 100,
                        request_id=uuid.uuid4().hex,
                    )
                    start = time.perf_counter()
                    await handle.execute_update(
                        MigrationWorkflow.report_milestone, report, id=f"milestone-raw-{i}"
                    )
                    raw_samples.append(time.perf_counter() - start)
                server.should_exit = True
                await serve
        engine.dispose()
    print(f"serial milestones, one project, dev server on SQLite (WAL), {n} each:")
    _report("API POST /milestones", api_samples)
    _report("raw Temporal update", raw_samples)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
