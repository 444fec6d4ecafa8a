"""The worker: workflows plus activities built once with their shared dependencies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.notifications import NotificationActivities
from activities.projection import ReadModelActivities
from readmodel.channels import parse_channels
from readmodel.settings import Settings
from workflows.migration import MigrationWorkflow
from workflows.notification import NotificationWorkflow

WORKFLOWS = [MigrationWorkflow, NotificationWorkflow]


@contextlib.asynccontextmanager
async def build_worker(
    client: Client, engine: Engine, settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A worker with every workflow and activity; closes its HTTP client on exit."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
        readmodel = ReadModelActivities(engine)
        notifications = NotificationActivities(
            engine, http, parse_channels(settings.channels), settings.public_url
        )
        with ThreadPoolExecutor(max_workers=8) as executor:
            yield Worker(
                client,
                task_queue=task_queue or settings.task_queue,
                workflows=WORKFLOWS,
                activities=[
                    readmodel.project_migration,
                    notifications.resolve_channels,
                    notifications.deliver_notification,
                ],
                activity_executor=executor,
            )
