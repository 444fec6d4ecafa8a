"""Per-caller rate limits on the API, so one misbehaving integration cannot starve the rest.

Each token has its own moving windows (``HYOJUNKA_RATE_LIMIT_PER_TOKEN``); requests without
a token share one per client address (``HYOJUNKA_RATE_LIMIT_PER_ADDRESS``). Past a limit the
answer is 429 problem+json with ``Retry-After``, given before the request reaches a handler,
the database or Temporal. Counting is in this process's memory (the ``limits`` package):
with several API replicas each keeps its own count, so a token's ceiling is the limit times
the replicas; ``HYOJUNKA_RATE_LIMIT_STORAGE`` may name a shared store the package supports.
"""

from __future__ import annotations

import hashlib
import json
import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import PROBLEM

LIMITED_PREFIX = "/api/"


def parse_limits(value: str) -> list[RateLimitItem]:
    """``"50/second;1500/minute"`` as the package reads it; empty: no limit."""
    return parse_many(value) if value.strip() else []


def caller_key(scope: Scope) -> tuple[str, str]:
    """Whom a request is counted against: its bearer token (by the same hash the token table
    keeps, so no database read is needed to tell tokens apart), or else the client's address
    (behind a proxy, run uvicorn with ``--proxy-headers`` so that is the real client)."""
    headers = Headers(scope=scope)
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return "token", hashlib.sha256(secret.strip().encode()).hexdigest()
    client = scope.get("client")
    return "address", client[0] if client else "unknown"


class RateLimit:
    """ASGI middleware: counts every request under ``/api/`` against its caller's limits."""

    def __init__(
        self, app: ASGIApp, per_token: str, per_address: str, storage: str = "async+memory://"
    ) -> None:
        self.app = app
        self.per = {"token": parse_limits(per_token), "address": parse_limits(per_address)}
        # The async flavour of the store, so counting never blocks the event loop.
        uri = storage if storage.startswith("async+") else f"async+{storage}"
        self.limiter = MovingWindowRateLimiter(storage_from_string(uri))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        kind, who = caller_key(scope)
        for item in self.per[kind]:
            if not await self.limiter.hit(item, kind, who):
                await self._refuse(item, kind, who, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, item: RateLimitItem, kind: str, who: str, send: Send) -> None:
        stats = await self.limiter.get_window_stats(item, kind, who)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Too Many Requests",
                "status": 429,
                "detail": f"more than {item} for this {kind}; retry after {wait} s",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", PROBLEM.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(wait).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
