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
from collections import OrderedDict

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM

LIMITED_PREFIX = "/api/"
# What each budget is, in the answer past it.
_WHO = {
    "token": "this token",
    "address": "requests without a token from this address",
    "refused": "refused tokens from this address",
}


def parse_limits(value: str) -> list[RateLimitItem]:
    """``"50/second;1500/minute"`` as the package reads it; empty: no limit."""
    return parse_many(value) if value.strip() else []


def caller_key(scope: Scope) -> tuple[str | None, str]:
    """Whom a request is counted against: its bearer token, by the same hash the token table
    keeps (so no database read is needed to tell tokens apart), or None; and the client's
    address (behind a proxy, run uvicorn with ``--proxy-headers`` so that is the real client)."""
    headers = Headers(scope=scope)
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    token = None
    if scheme.lower() == "bearer" and secret.strip():
        token = hashlib.sha256(secret.strip().encode()).hexdigest()
    client = scope.get("client")
    return token, client[0] if client else "unknown"


class RateLimit:
    """ASGI middleware: counts every request under ``/api/`` against its caller's limits.

    A request with a token counts against the token; one without, against its address. Every
    401 answer to a token counts against a second budget of its address (the same limits):
    once an address has spent it on tokens that were refused (made up, revoked, expired), a
    token from there that this process has not seen accepted is answered 429 before it costs
    a database read, while tokens already accepted from that address go on being served."""

    def __init__(
        self,
        app: ASGIApp,
        per_token: str,
        per_address: str,
        storage: str = "async+memory://",
        remembered: int = 10_000,
    ) -> None:
        self.app = app
        self.per_token = parse_limits(per_token)
        self.per_address = parse_limits(per_address)
        # The async flavour of the store, so counting never blocks the event loop.
        uri = storage if storage.startswith("async+") else f"async+{storage}"
        self.limiter = MovingWindowRateLimiter(storage_from_string(uri))
        # Tokens lately accepted here (hash -> None), oldest first, at most ``remembered``.
        self.accepted: OrderedDict[str, None] = OrderedDict()
        self.remembered = remembered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        token, address = caller_key(scope)
        if token is None:
            refused = await self._hit(self.per_address, "address", address)
        else:
            refused = None
            if token not in self.accepted:
                refused = await self._spent(self.per_address, "refused", address)
            refused = refused or await self._hit(self.per_token, "token", token)
        if refused is not None:
            await self._refuse(*refused, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if token is not None:
            if status == 401:
                self.accepted.pop(token, None)
                await self._hit(self.per_address, "refused", address)
            elif status:
                self.accepted[token] = None
                self.accepted.move_to_end(token)
                if len(self.accepted) > self.remembered:
                    self.accepted.popitem(last=False)

    async def _hit(
        self, items: list[RateLimitItem], kind: str, who: str
    ) -> tuple[RateLimitItem, str, str] | None:
        """Count one request; the limit it goes past, if any."""
        for item in items:
            if not await self.limiter.hit(item, kind, who):
                return item, kind, who
        return None

    async def _spent(
        self, items: list[RateLimitItem], kind: str, who: str
    ) -> tuple[RateLimitItem, str, str] | None:
        """The limit already reached, without counting this request."""
        for item in items:
            if not await self.limiter.test(item, kind, who):
                return item, kind, who
        return None

    async def _refuse(self, item: RateLimitItem, kind: str, who: str, send: Send) -> None:
        stats = await self.limiter.get_window_stats(item, kind, who)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Too Many Requests",
                "status": 429,
                "detail": f"more than {item} for {_WHO[kind]}; retry after {wait} s",
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
