"""Run the embedded default as a user does (``hyojunka up`` in a folder of its own, on free
ports) and drive it over HTTP: shared by the benchmarks and the fault tests."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HYOJUNKA = str(Path(sys.executable).parent / "hyojunka")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def until_ready(
    base: str, seconds: float = 60, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``base``/readyz answers 200 (and ``proc``, if given, is still running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"hyojunka up exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} never became ready")


@dataclass
class Up:
    """A running ``hyojunka up`` and what it printed."""

    proc: subprocess.Popen[bytes]
    data: Path
    base: str
    temporal_address: str
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **extra}

    def children(self) -> dict[str, int]:
        """The pids of the children, as the supervisor last recorded them."""
        try:
            record = json.loads((self.data / "up.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in record.get("children", {}).items()}

    def kill_child(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = self.children()[name]
        os.kill(pid, sig)
        return pid

    def wait_child_replaced(self, name: str, old_pid: int, seconds: float = 60) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid = self.children().get(name)
            if pid and pid != old_pid:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"{name} was not restarted")

    def wait_ready(self, seconds: float = 90) -> None:
        until_ready(self.base, seconds, self.proc)


def up_environment(data: Path) -> dict[str, str]:
    """The environment of a ``hyojunka up`` with its data in ``data``, on free ports."""
    api_port, t_port, ui_port = free_port(), free_port(), free_port()
    return {
        **os.environ,
        "HYOJUNKA_DATA_DIR": str(data),
        "HYOJUNKA_API_PORT": str(api_port),
        "HYOJUNKA_TEMPORAL_ADDRESS": f"127.0.0.1:{t_port}",
        "HYOJUNKA_TEMPORAL_UI_PORT": str(ui_port),
        "HYOJUNKA_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "HYOJUNKA_LOG_JSON": "true",
        # The benchmarks and fault tests drive hundreds of writes a second through a few
        # tokens to measure the engine; the per-token limits are tested on their own
        # (tests/api/test_ratelimit.py) and stay on by default everywhere else.
        "HYOJUNKA_RATE_LIMIT_PER_TOKEN": "",
        "HYOJUNKA_RATE_LIMIT_PER_ADDRESS": "",
        # One worker process unless the caller asks for more: the fault tests kill "the
        # worker" and expect its work to wait for it, on any machine.
        "HYOJUNKA_WORKERS": os.environ.get("HYOJUNKA_WORKERS", "1"),
    }


@contextmanager
def running_up(folder: Path | None = None, extra_env: dict[str, str] | None = None) -> Iterator[Up]:
    """``hyojunka up`` on free ports in ``folder`` (a temporary one by default); stopped with
    SIGINT, as Ctrl-C would, when the block ends."""
    with contextlib_folder(folder) as root:
        env = {**up_environment(root / "data"), **(extra_env or {})}
        api_port = int(env["HYOJUNKA_API_PORT"])
        t_port = int(env["HYOJUNKA_TEMPORAL_ADDRESS"].rpartition(":")[2])
        out = (root / "up.out").open("ab")
        proc = subprocess.Popen(
            [HYOJUNKA, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root
        )
        up = Up(proc, root / "data", f"http://127.0.0.1:{api_port}", f"127.0.0.1:{t_port}")
        try:
            up.wait_ready()
            text = (root / "up.out").read_text(errors="replace")
            for role, secret in re.findall(r"^\s+(\w+)\s+\S+\s+(hyj_\S+)$", text, re.M):
                up.tokens[role] = secret
            yield up
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            out.close()


@contextmanager
def contextlib_folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="hyojunka-") as tmp:
        yield Path(tmp)


def project_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (municipality, business) pairs from the national list."""
    from readmodel.registry import registry
    from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES

    codes = sorted(c for c in registry()._by_code if c[2:5] != "000")
    slugs = [b.slug for b in BUSINESSES if b.slug not in PREFECTURE_BUSINESSES]
    pairs = [(c, b) for c in codes for b in slugs]
    step = max(1, len(pairs) // max(n, 1))
    return pairs[::step][:n]
