"""The worker's probes, for an orchestrator (``HYOJUNKA_WORKER_HEALTH_ADDRESS``).

``GET /healthz``: 200 until the worker has stopped polling (it crashed or is shutting
down), then 503, so the orchestrator restarts it. ``GET /readyz``: 200 while the worker
polls and Temporal answers its health check. A worker has no HTTP server of its own, and
probes need only a status line: a few lines of asyncio serve them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from http import HTTPStatus

from temporalio.client import Client
from temporalio.worker import Worker

CHECK_TIMEOUT = 3.0


class WorkerHealth:
    def __init__(self, worker: Worker, client: Client) -> None:
        self._worker = worker
        self._client = client

    async def answer(self, path: str) -> tuple[int, dict[str, str]]:
        if path == "/healthz":
            alive = not self._worker.is_shutdown
            return (200 if alive else 503), {"status": "ok" if alive else "stopped"}
        if path == "/readyz":
            checks = {"worker": "ok" if self._worker.is_running else "not polling"}
            try:
                await asyncio.wait_for(self._client.service_client.check_health(), CHECK_TIMEOUT)
                checks["temporal"] = "ok"
            except Exception as exc:  # any failure means not ready; the kind is reported
                checks["temporal"] = f"error: {type(exc).__name__}"
            ready = all(v == "ok" for v in checks.values())
            return (200 if ready else 503), {
                "status": "ready" if ready else "unavailable",
                **checks,
            }
        return 404, {"status": "not found"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), CHECK_TIMEOUT)
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            status, body = await self.answer(path)
            data = json.dumps(body).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + data)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a probe that went away: nothing to answer
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving_health(address: str, worker: Worker, client: Client) -> AsyncIterator[None]:
    """Serve the probes on ``host:port`` while the block runs; nothing when ``address`` is
    empty."""
    if not address:
        yield
        return
    host, _, port = address.rpartition(":")
    server = await asyncio.start_server(WorkerHealth(worker, client)._serve, host, int(port))
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
