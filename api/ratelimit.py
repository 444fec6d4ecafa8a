"""Per-caller rate limits, so one misbehaving integration cannot starve the rest.

Under ``/api/``, each accepted token has its own moving windows
(``HYOJUNKA_RATE_LIMIT_PER_TOKEN``); requests without a token share one per client address
(``HYOJUNKA_RATE_LIMIT_PER_ADDRESS``), and so, in a budget of the same size of their own, do
requests with a token this process has not yet seen accepted: a made-up token gets no budget
of its own, whatever route it is sent to (one that never reads it, such as a calendar feed
or an unknown address, included). A token is accepted once a route has verified it.

The pages' forms are limited per client address too: signing in
(``HYOJUNKA_RATE_LIMIT_SIGN_IN_PER_ADDRESS``) and every other form
(``HYOJUNKA_RATE_LIMIT_PAGE_FORMS_PER_ADDRESS``); reading a page is not.

Past a limit the answer is 429 with ``Retry-After`` (problem+json for the API, a page in
Japanese for the pages), given before the request reaches a handler, the database or
Temporal. Counting is in this process's memory (the ``limits`` package): with several API
replicas each keeps its own count, so a ceiling is the limit times the replicas;
``HYOJUNKA_RATE_LIMIT_STORAGE`` may name a shared store the package supports.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM

LIMITED_PREFIX = "/api/"
# Methods that only read: the pages' reads are not limited.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Set in the request's state by the route that verified the bearer token (api.deps).
TOKEN_VERIFIED = "token_verified"
# What each budget is, in the answer past it.
_WHO = {
    "token": "this token",
    "address": "requests without a token from this address",
    "unverified": "refused tokens from this address, and tokens not yet accepted",
    "sign_in": "sign-in attempts from this address",
    "page_form": "forms sent from this address",
}

# Answers a page's 429: (scope, seconds to wait) -> an ASGI app sending the page.
PageRefusal = Callable[[Scope, int], Callable[[Scope, Receive, Send], Awaitable[None]]]


def parse_limits(value: str) -> list[RateLimitItem]:
    """``"50/second;1500/minute"`` as the package reads it; empty: no limit."""
    return parse_many(value) if value.strip() else []


def caller_key(scope: Scope) -> tuple[str | None, str]:
    """Whom a request is counted against: its bearer token, by the same hash the token table
    keeps (so no database read is needed to tell tokens apart), or None; and the client's
    address (behind a proxy, HYOJUNKA_FORWARDED_ALLOW_IPS makes it the real client's)."""
    headers = Headers(scope=scope)
    scheme, _, secret = headers.get("authorization", "").partition(" ")
    token = None
    if scheme.lower() == "bearer" and secret.strip():
        token = hashlib.sha256(secret.strip().encode()).hexdigest()
    client = scope.get("client")
    return token, client[0] if client else "unknown"


def mark_verified(state: object) -> None:
    """Called by whatever verified a request's bearer token (``request.state``)."""
    setattr(state, TOKEN_VERIFIED, True)


class RateLimit:
    """ASGI middleware: counts every request under ``/api/`` against its caller's limits,
    and every form the pages are sent against its address.

    A request with an accepted token counts against the token; any other against its
    address: one without a token in one budget, one with a token not yet accepted (made up,
    revoked, expired, or new) in another, so a flood of made-up tokens neither goes
    unlimited nor starves requests without one, and tokens already accepted from that
    address go on being served. A token is accepted once a route verified it, never because
    a route answered without looking at it."""

    def __init__(
        self,
        app: ASGIApp,
        per_token: str,
        per_address: str,
        storage: str = "async+memory://",
        remembered: int = 10_000,
        sign_in_per_address: str = "",
        page_forms_per_address: str = "",
        page_refusal: PageRefusal | None = None,
    ) -> None:
        self.app = app
        self.per_token = parse_limits(per_token)
        self.per_address = parse_limits(per_address)
        self.sign_in = parse_limits(sign_in_per_address)
        self.page_forms = parse_limits(page_forms_per_address)
        self.page_refusal = page_refusal
        # The async flavour of the store, so counting never blocks the event loop.
        uri = storage if storage.startswith("async+") else f"async+{storage}"
        self.limiter = MovingWindowRateLimiter(storage_from_string(uri))
        # Tokens lately accepted here (hash -> None), oldest first, at most ``remembered``.
        self.accepted: OrderedDict[str, None] = OrderedDict()
        self.remembered = remembered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"].startswith(LIMITED_PREFIX):
            await self._api(scope, receive, send)
        elif scope["method"] not in SAFE_METHODS:
            await self._page_form(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _page_form(self, scope: Scope, receive: Receive, send: Send) -> None:
        _, address = caller_key(scope)
        path = scope["path"]
        sign_in = path == "/login" or path.startswith("/login/")
        kind, items = ("sign_in", self.sign_in) if sign_in else ("page_form", self.page_forms)
        refused = await self._hit(items, kind, address)
        if refused is None:
            await self.app(scope, receive, send)
        elif self.page_refusal is None:
            await self._refuse(*refused, send)
        else:
            wait = await self._wait(*refused)
            await self.page_refusal(scope, wait)(scope, receive, send)

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        token, address = caller_key(scope)
        if token is None:
            refused = await self._hit(self.per_address, "address", address)
        elif token in self.accepted:
            refused = await self._hit(self.per_token, "token", token)
        else:
            refused = await self._hit(self.per_address, "unverified", address)
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
            elif scope.get("state", {}).get(TOKEN_VERIFIED):
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

    async def _wait(self, item: RateLimitItem, kind: str, who: str) -> int:
        stats = await self.limiter.get_window_stats(item, kind, who)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _refuse(self, item: RateLimitItem, kind: str, who: str, send: Send) -> None:
        wait = await self._wait(item, kind, who)
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
