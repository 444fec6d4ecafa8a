"""Notices stay whole while the worker dies: `hyojunka up` as users run it, late projects
registered by twenty clients at once, and the worker killed with SIGKILL while their deadline
notices are handed over to their prefectures' gatherings and while the gatherings hand their
messages to the workflows that deliver them.

Every registered project's deadline notice must reach the body's pm in exactly one message
(a webhook receiver on loopback stands for the body's system), never in two different ones;
a message delivered again after a kill is the same message, with the same delivery id."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.harness import Up, running_up
from tests.receiver import Receiver
from workflows.calendar import add_months

pytestmark = pytest.mark.heavy

PROJECTS = 60
CLIENTS = 20
WINDOW_SECONDS = 8
TARGET = add_months(date.today(), 36).isoformat()  # past the deadline: a notice each


def _pairs() -> list[tuple[str, str]]:
    """Six Tokyo and four Osaka bodies, six systems each: two gatherings, ten messages of
    six notices each when nothing goes wrong."""
    from readmodel.registry import registry
    from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES

    codes = sorted(c for c in registry()._by_code if c[2:5] != "000")
    bodies = [c for c in codes if c.startswith("13")][:6] + [
        c for c in codes if c.startswith("27")
    ][:4]
    slugs = [b.slug for b in BUSINESSES if b.slug not in PREFECTURE_BUSINESSES][:6]
    return [(c, b) for c in bodies for b in slugs]


async def _register(up: Up, http: httpx.AsyncClient, lg_code: str, business: str) -> str:
    """POST until answered 201, with the same Idempotency-Key, as the contract says."""
    body = {"lg_code": lg_code, "business": business, "target_go_live": TARGET}
    headers = up.headers("admin", **{"Idempotency-Key": uuid.uuid4().hex})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            resp = await http.post(f"{up.base}/api/v1/projects", json=body, headers=headers)
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
            continue
        if resp.status_code == 201:
            return str(resp.json()["id"])
        assert resp.status_code in (502, 503, 504), resp.text
        await asyncio.sleep(0.5)
    raise AssertionError(f"{lg_code}-{business} was never registered")


async def _kill_worker(up: Up, when: list[asyncio.Event], kills: list[float]) -> None:
    """SIGKILL the worker at each moment in turn, each time waiting for its replacement."""
    start = time.monotonic()
    for moment in when:
        await moment.wait()
        old = up.kill_child("worker")
        kills.append(round(time.monotonic() - start, 1))
        await asyncio.to_thread(up.wait_child_replaced, "worker", old)


def _messages(receiver: Receiver) -> list[dict[str, Any]]:
    """The messages the receiver took, each with the notices it carries: a digest lists
    them; a message of one notice is that notice."""
    with receiver.lock:
        calls = [c for c in receiver.calls if c["answered"] == 200]
    return [
        {
            **c["body"],
            "delivery": c["delivery"],
            "notices": c["body"]["data"]["notifications"]
            if c["body"]["kind"] == "digest"
            else [c["body"]["notification_id"]],
        }
        for c in calls
    ]


async def test_every_deadline_notice_reaches_its_pm_once_across_worker_kills(
    tmp_path: Path,
) -> None:
    with Receiver(fail_first=0) as receiver:
        hook = [{"id": "office", "kind": "webhook", "url": f"{receiver.url}/hook"}]
        env = {
            "HYOJUNKA_CHANNELS": json.dumps(hook),
            "HYOJUNKA_OUTBOUND_ALLOW": "127.0.0.0/8",
            "HYOJUNKA_NOTIFICATION_DIGEST_SECONDS": str(WINDOW_SECONDS),
        }
        with running_up(tmp_path, extra_env=env) as up:
            pairs = _pairs()
            gate = asyncio.Semaphore(CLIENTS)
            kills: list[float] = []
            # The worker is killed after the 10th and the 35th registration, while the
            # notices of those in flight are being handed over, and again as the first
            # gatherings' windows close and they hand their messages on.
            moments = [asyncio.Event() for _ in range(3)]
            acknowledged: list[str] = []

            async def one(http: httpx.AsyncClient, c: str, b: str) -> str:
                async with gate:
                    project = await _register(up, http, c, b)
                acknowledged.append(project)
                if len(acknowledged) == 1:
                    loop = asyncio.get_running_loop()
                    loop.call_later(WINDOW_SECONDS - 0.2, moments[2].set)
                if len(acknowledged) in (10, 35):
                    moments[0 if len(acknowledged) == 10 else 1].set()
                return project

            began = time.monotonic()
            killer = asyncio.create_task(_kill_worker(up, moments, kills))
            async with httpx.AsyncClient(timeout=30) as http:
                registered = await asyncio.gather(*(one(http, c, b) for c, b in pairs))
            took = time.monotonic() - began
            await killer
            expected = {f"{p}.deadline.2026-03-31" for p in registered}

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                heard = {n for m in _messages(receiver) for n in m["notices"]}
                if expected <= heard:
                    break
                await asyncio.sleep(1)
            # Past another window, so that a notice sent twice would show.
            await asyncio.sleep(WINDOW_SECONDS + 4)
            messages = _messages(receiver)

    assert len(kills) == 3
    assert len(registered) == len(set(registered)) == PROJECTS
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        by_id[str(m["notification_id"])].append(m)
    # A message delivered again is the same message: same delivery id, same notices.
    for copies in by_id.values():
        assert len({c["delivery"] for c in copies}) == 1
        assert len({tuple(c["notices"]) for c in copies}) == 1
    carried: dict[str, list[str]] = defaultdict(list)
    for message_id, copies in by_id.items():
        first = copies[0]
        for note in first["notices"]:
            carried[note].append(message_id)
            # Each body hears of its own systems only, in a message to its pm.
            assert note.startswith(f"{first['lg_code']}-")
            assert first["audience"] == ["pm"]
    missing = expected - set(carried)
    assert not missing, f"never delivered: {sorted(missing)}"
    twice = {n: ids for n, ids in carried.items() if len(ids) > 1}
    assert not twice, f"delivered in two messages: {twice}"
    assert set(carried) == expected
    print(
        f"\nregistered in {took:.1f} s, kills at {kills} s; "
        f"{len(by_id)} messages, {len(messages)} deliveries"
    )
