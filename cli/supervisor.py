"""``hyojunka up``: own and supervise the embedded default's processes.

Its children: the Temporal dev server, the workers (``HYOJUNKA_WORKERS`` or ``--workers``;
one on a machine of two cores) and the API, each a process of its own so that they use
every core. The supervisor

- owns its data folder through a lock (``up.lock``): a second ``up`` on the same folder
  refuses to start rather than share it;
- records its children in ``up.json`` (the workers as ``worker``, ``worker-1``, ...);
  children die with it (the kernel's parent-death signal), and any left by an ``up`` that
  was killed anyway are found there and stopped before anything starts, so an orphan is
  never silently adopted;
- refuses a port held by a process it did not start, and ports its own children would share
  (a worker's probes and metrics are on their base port plus the worker's index);
- restarts a child that dies, with backoff, each on its own;
- stops everything on SIGINT or SIGTERM, API first, then the workers together, Temporal
  last, within ``STOP_WITHIN`` seconds whatever the load (what has not stopped by then is
  killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import IO, Any

import structlog

from runtime.settings import Settings

log = structlog.get_logger("hyojunka.up")

STOP_WITHIN = 8.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the supervisor dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class AlreadyRunning(RuntimeError):
    pass


@contextlib.contextmanager
def data_folder_lock(data_dir: Path) -> Iterator[IO[str]]:
    """Exclusive ownership of the data folder for as long as this process lives; the kernel
    releases it when the process dies, however it dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "up.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise AlreadyRunning(
            f"{data_dir.resolve()} is in use by hyojunka up (pid {owner}); stop it first"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield handle
    finally:
        handle.close()


def _mentions(pid: int, marker: str) -> bool:
    """Whether a process names the data folder in its command line or environment."""
    for part in ("cmdline", "environ"):
        try:
            raw = Path(f"/proc/{pid}/{part}").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw:
            return True
    return False


def stop_leftovers(data_dir: Path) -> list[int]:
    """Kill the children that an earlier, killed ``up`` on this folder left behind.

    A pid is only ours if it still names this data folder: pids are reused."""
    record = data_dir / "up.json"
    try:
        children = json.loads(record.read_text()).get("children", {})
    except (OSError, ValueError):
        return []
    marker = str(data_dir.resolve())
    stopped = []
    for name, pid in children.items():
        if not isinstance(pid, int) or pid == os.getpid():
            continue
        if _mentions(pid, marker):
            log.warning("stopping a leftover of an earlier hyojunka up", child=name, pid=pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
    deadline = time.monotonic() + 5
    while stopped and time.monotonic() < deadline:
        if all(not Path(f"/proc/{p}").exists() or _zombie(p) for p in stopped):
            break
        time.sleep(0.05)
    record.unlink(missing_ok=True)
    return stopped


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Child:
    name: str
    argv: list[str]
    # None: the child writes to the supervisor's own output.
    log_path: Path | None = None
    # Polled after a start until it says the child is serving.
    ready: Callable[[], bool] | None = None
    # Its own environment, over the supervisor's (a worker's probe and metrics addresses).
    env: dict[str, str] = field(default_factory=dict)
    # Children of one group (the workers) are peers: stopped together, not one by one.
    group: str = ""
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.25
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self, env: dict[str, str]) -> None:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(self.log_path.open("ab")) if self.log_path else None
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT if out else None,
                stdin=asyncio.subprocess.DEVNULL,
                env={**env, **self.env},
                # Our own signal handling stops children in order; a terminal's Ctrl-C
                # must not reach them all at once.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.started_at = time.monotonic()
        log.info("started", child=self.name, pid=self.proc.pid)


class Supervisor:
    def __init__(self, settings: Settings, children: list[Child]) -> None:
        self.settings = settings
        self.children = children
        self.stopping = asyncio.Event()
        self.env = dict(os.environ)
        # Children see the same data folder, whatever the working directory.
        self.env["HYOJUNKA_DATA_DIR"] = str(settings.data_dir.resolve())

    def _record(self) -> None:
        record = {
            "pid": os.getpid(),
            "children": {c.name: c.pid for c in self.children if c.pid is not None},
        }
        path = self.settings.data_dir / "up.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)

    async def _start(self, child: Child) -> None:
        await child.start(self.env)
        self._record()
        if child.ready is not None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self.stopping.is_set():
                assert child.proc is not None
                if child.proc.returncode is not None:
                    return  # its keeper sees the exit and restarts it
                if await asyncio.to_thread(child.ready):
                    return
                await asyncio.sleep(0.1)

    async def start_all(self) -> None:
        """Start in order, each once the one before answers (Temporal before the others)."""
        for child in self.children:
            if self.stopping.is_set():
                return
            await self._start(child)

    async def _keep(self, child: Child) -> None:
        """Restart one child whenever it exits, until we stop; each child has its own
        keeper, so children that die together come back together."""
        while not self.stopping.is_set():
            proc = child.proc
            if proc is None:
                await self._start(child)
                continue
            code = await proc.wait()
            if self.stopping.is_set():
                return
            child.exits.append(code)
            ran = time.monotonic() - child.started_at
            child.backoff = 0.25 if ran > 10 else min(child.backoff * 2, 5.0)
            child.restarts += 1
            log.error("child exited; restarting", child=child.name, code=code, after=child.backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=child.backoff)
            if not self.stopping.is_set():
                await self._start(child)

    async def watch(self) -> None:
        keepers = [asyncio.create_task(self._keep(c)) for c in self.children]
        await self.stopping.wait()
        for k in keepers:
            k.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop children in reverse order of start, a group's (the workers) together, all
        within STOP_WITHIN seconds."""
        deadline = time.monotonic() + STOP_WITHIN
        for _, group in groupby(reversed(self.children), key=lambda c: c.group or c.name):
            running = [c for c in group if c.proc is not None and c.proc.returncode is None]
            for child in running:
                assert child.proc is not None
                sig = signal.SIGINT if child.name == "temporal" else signal.SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)
            # The last child (Temporal) gets what is left; the others a fair share.
            await asyncio.gather(*(self._stopped(c, deadline) for c in running))
        (self.settings.data_dir / "up.json").unlink(missing_ok=True)

    @staticmethod
    async def _stopped(child: Child, deadline: float) -> None:
        assert child.proc is not None
        left = max(deadline - time.monotonic(), 0.1)
        try:
            await asyncio.wait_for(child.proc.wait(), timeout=left)
        except TimeoutError:
            log.warning("child did not stop in time; killing it", child=child.name)
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            await child.proc.wait()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            await self.start_all()
            await self.watch()
        finally:
            await self.stop_all()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def hyojunka_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def worker_name(index: int) -> str:
    """``worker`` for the first (the name a single worker always had), then ``worker-1``..."""
    return "worker" if index == 0 else f"worker-{index}"


def nth_address(address: str, index: int) -> str:
    """``host:port`` moved ``index`` ports up: the address of worker ``index``'s probes or
    metrics under ``up`` (its own, so that workers never contend for one port). Empty stays
    empty (not served); port 0 stays 0 (each its own free port)."""
    if not address or index == 0:
        return address
    host, _, port = address.rpartition(":")
    number = int(port)
    return f"{host}:{number + index if number else 0}"


def worker_children(settings: Settings, workers: int) -> list[Child]:
    """The ``workers`` worker children of ``up``, each with its own probe and metrics port."""
    children = []
    for i in range(workers):
        env = {}
        if settings.worker_health_address:
            env["HYOJUNKA_WORKER_HEALTH_ADDRESS"] = nth_address(settings.worker_health_address, i)
        if settings.worker_metrics_address:
            env["HYOJUNKA_WORKER_METRICS_ADDRESS"] = nth_address(settings.worker_metrics_address, i)
        children.append(Child(worker_name(i), hyojunka_command("worker"), env=env, group="workers"))
    return children


def planned_ports(settings: Settings, workers: int) -> list[tuple[str, int, str]]:
    """Every (host, port, what) ``up`` will listen on: Temporal, the API, the Web UI and each
    worker's probes and metrics when they are served."""
    t_host, _, t_port = settings.temporal_address.rpartition(":")
    ports = [
        (t_host or "127.0.0.1", int(t_port), "Temporal"),
        (settings.api_host, settings.api_port, "the API"),
        ("127.0.0.1", settings.temporal_ui_port, "the Temporal Web UI"),
    ]
    for i in range(workers):
        for base, what in (
            (settings.worker_health_address, "probes"),
            (settings.worker_metrics_address, "metrics"),
        ):
            if base:
                host, _, port = nth_address(base, i).rpartition(":")
                if int(port):
                    ports.append((host, int(port), f"{worker_name(i)}'s {what}"))
    return ports


def shared_ports(ports: list[tuple[str, int, str]]) -> list[str]:
    """Ports two of ``up``'s own listeners would share, said as the operator would fix them."""
    seen: dict[int, str] = {}
    clashes = []
    for _, port, what in ports:
        if port in seen:
            clashes.append(f"{seen[port]} and {what} would both use port {port}")
        else:
            seen[port] = what
    return clashes


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        import httpx

        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    return check


def temporal_ready(host: str, port: int) -> Callable[[], bool]:
    return lambda: port_in_use(host, port)


def describe(children: list[Child]) -> dict[str, Any]:
    return {c.name: {"pid": c.pid, "restarts": c.restarts} for c in children}
