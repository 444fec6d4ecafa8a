"""The FastAPI application: one Temporal client and one engine per process, from the lifespan."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from asgi_csrf import DEFAULT_SIGNING_NAMESPACE as CSRF_NAMESPACE
from asgi_csrf import asgi_csrf
from fastapi import FastAPI, Request, Response
from itsdangerous.url_safe import URLSafeSerializer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors, metrics
from api.ratelimit import RateLimit
from api.routers import (
    admin,
    calendar,
    health,
    imports,
    milestones,
    notifications,
    oversight,
    people,
    procurements,
    projects,
    reports,
    rollouts,
    templates,
    vendors,
)
from api.web import oidc, pages, signin
from api.web import people as people_pages
from api.web import vendors as vendor_pages
from readmodel.db import ReadModel, engine_for
from runtime.logs import redact_access_log, redact_path
from runtime.settings import Settings, get_settings
from runtime.temporal import connect_lazily

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# Every answer: no MIME sniffing, no referrer beyond this site.
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
# Pages, besides: no script at all, nothing framed, forms only back here.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
}


class _TooLarge(StarletteHTTPException):
    """A request body past the limit, found while it was being read: answered 413 by the
    app's own handler, as problem+json."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class RequestLog:
    """Binds a request id to every log line of a request and logs each answer once, with its
    status and duration, including failures no handler caught (answered as problem+json)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int | None = None,
        larger: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        # Paths that take larger bodies than the rest (the bulk feed's thousands of items).
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        # Recorded by its template where the path itself is a secret (a calendar feed's).
        path = redact_path(scope["path"])
        given = request_headers.get(REQUEST_ID_HEADER, "")
        rid = given[:100] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = rid
                headers.update(SAFE_HEADERS)
                if not scope["path"].startswith("/api/"):
                    headers.update(PAGE_HEADERS)
            await send(message)

        t0 = time.perf_counter()
        max_body = self.larger.get(scope["path"], self.max_body)
        declared = request_headers.get("content-length", "")
        if max_body is not None and declared.isdigit() and int(declared) > max_body:
            # Refused before a byte of it is read (FastAPI's own limit covers bodies that
            # do not declare their length).
            too_large = errors.problem_response(
                413, f"the request body is larger than {max_body} bytes"
            )
            try:
                await too_large(scope, receive, send_with_id)
            finally:
                log.info("request", method=scope["method"], path=path, status=413)
            return
        received = 0

        async def counted() -> Message:
            # A body that does not declare its length is counted as it comes.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if max_body is not None and received > max_body:
                raise _TooLarge(max_body)
            return message

        try:
            await self.app(scope, counted, send_with_id)
        except _TooLarge as exc:
            if not started:
                await errors.problem_response(413, exc.detail)(scope, receive, send_with_id)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            if not started:
                response = errors.problem_response(
                    500, f"an unexpected error occurred; it has been logged ({rid})"
                )
                response.headers[REQUEST_ID_HEADER] = rid
                await response(scope, receive, send)
        finally:
            took = time.perf_counter() - t0
            log.info(
                "request",
                method=scope["method"],
                path=path,
                status=status,
                ms=round(took * 1000, 1),
            )
            # By route template, never by path: ids must not become label values.
            route = scope["state"].get("route") or "unmatched"
            metrics.observe(scope["method"], route, status, took)


class RouteOfRequest:
    """The innermost middleware: hands the matched route's template to RequestLog through
    the request's shared ``state`` (a middleware between them, asgi-csrf, passes a copy of
    the scope on, so the router's ``scope["route"]`` never reaches RequestLog's scope)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and "route" in scope:
                scope.setdefault("state", {})["route"] = getattr(scope["route"], "path", None)
            await send(message)

        await self.app(scope, receive, sending)


class CsrfOfPages:
    """asgi-csrf around the pages only. The API takes bearer tokens, never a cookie, for
    anything that writes: its requests go past asgi-csrf, which would otherwise sign a fresh
    token for each of them and wrap each answer, to no use."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.protected = asgi_csrf(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        await self.protected(scope, receive, send)


class CsrfOfSession:
    """Binds the pages' CSRF token to the browser's page session (outside asgi-csrf, which
    checks that a form's token is its cookie's and that the cookie is signed by us).

    A signed-in browser's CSRF cookie must be the one derived from its session (an HMAC of
    the session's secret, signed as asgi-csrf signs its tokens): a form sent with any other
    is refused, so a token taken from another session, an attacker's own planted with its
    cookie in a victim's browser say, does nothing. A page read with any other gets the
    session's own, in the request asgi-csrf sees and in a cookie for the next form."""

    def __init__(self, app: ASGIApp, signing_secret: str, secure: bool, send_failed: Any) -> None:
        self.app = app
        self.key = hashlib.sha256(b"hyojunka page csrf\0" + signing_secret.encode()).digest()
        self.signer = URLSafeSerializer(signing_secret)
        self.cookie_attributes = "Path=/; SameSite=Strict" + ("; Secure" if secure else "")
        self.send_failed = send_failed

    def token_of(self, session_secret: str) -> str:
        bound = hmac.new(self.key, session_secret.encode(), hashlib.sha256).hexdigest()
        return self.signer.dumps(bound, CSRF_NAMESPACE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
        session = cookies.get(pages.COOKIE)
        if not session:  # signing in: asgi-csrf's own token, until there is a session
            await self.app(scope, receive, send)
            return
        token = self.token_of(session)
        if secrets.compare_digest(cookies.get(pages.CSRF_COOKIE, ""), token):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            await self.send_failed(scope, send, None)
            return
        cookies[pages.CSRF_COOKIE] = token
        header = "; ".join(f"{k}={v}" for k, v in cookies.items()).encode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        scope = {**scope, "headers": [*headers, (b"cookie", header)]}
        set_cookie = f"{pages.CSRF_COOKIE}={token}; {self.cookie_attributes}".encode("latin-1")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", set_cookie)],
                }
            await send(message)

        await self.app(scope, receive, sending)


def _busy_page(scope: Scope, wait: int) -> ASGIApp:
    """A page's form past its address's limit: said in Japanese, with Retry-After."""
    return pages.error_page(Request(scope), 429, {"Retry-After": str(wait)})


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """Build the app; tests hand in a client and engine of their own servers."""
    settings = settings or get_settings()
    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.settings = settings
        app.state.engine = engine or engine_for(settings)
        app.state.readmodel = ReadModel(app.state.engine)
        # Lazily: the API starts, and /readyz says 503, while Temporal is down; the client
        # connects on its first call once Temporal is there.
        app.state.temporal = client or await connect_lazily(settings)
        try:
            yield
        finally:
            if own_engine:
                app.state.engine.dispose()

    app = FastAPI(
        title="hyojunka",
        summary="自治体情報システム標準化の移行プロジェクト管理 API",
        version="1.0.0",
        lifespan=lifespan,
    )
    errors.install(app, pages.error_page)

    app.add_middleware(RouteOfRequest)  # added first: innermost, next to the router
    # Inside RequestLog (the last added is outermost), so a 429 is logged and counted too.
    app.add_middleware(
        RateLimit,
        per_token=settings.rate_limit_per_token,
        per_address=settings.rate_limit_per_address,
        storage=settings.rate_limit_storage,
        sign_in_per_address=settings.rate_limit_sign_in_per_address,
        page_forms_per_address=settings.rate_limit_page_forms_per_address,
        page_refusal=_busy_page,
    )
    # Every form of the pages carries the session's CSRF token (a signed double-submit
    # cookie); a POST from another site is refused. The API is exempt: it takes bearer
    # tokens only, never a cookie, for anything that writes.
    signing_secret = settings.secret_key or secrets.token_urlsafe(32)
    app.add_middleware(
        CsrfOfPages,
        signing_secret=signing_secret,
        cookie_name=pages.CSRF_COOKIE,
        cookie_samesite="Strict",
        cookie_secure=settings.public_url.startswith("https"),
        always_protect={"/login", "/logout", "/login/email", "/login/link"},
        skip_if_scope=lambda scope: vendor_pages.checks_its_own_csrf(scope["path"]),
        send_csrf_failed=pages.csrf_failed,
    )
    # Outside asgi-csrf: a signed-in browser's token is its session's (CsrfOfSession).
    app.add_middleware(
        CsrfOfSession,
        signing_secret=signing_secret,
        secure=settings.public_url.startswith("https"),
        send_failed=pages.csrf_failed,
    )
    app.add_middleware(
        RequestLog,
        max_body=settings.max_body_bytes,
        larger={"/api/v1/milestones": settings.max_bulk_body_bytes},
    )
    trusted = [h.strip() for h in settings.forwarded_allow_ips.split(",") if h.strip()]
    if trusted:
        # Outermost: the limits, the logs and the pages see the client the trusted proxy
        # names, however the process was started (uvicorn by default trusts 127.0.0.1 only).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)

    app.include_router(health.router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text format; the deployment limits who reaches it (bind, network
        policy), and it names routes and statuses only, never a project or a person."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(projects.router)
    app.include_router(imports.router)
    app.include_router(oversight.router)
    app.include_router(reports.router)
    app.include_router(calendar.router)
    app.include_router(procurements.router)
    app.include_router(templates.router)
    app.include_router(rollouts.router)
    app.include_router(notifications.router)
    app.include_router(admin.router)
    app.include_router(people.router)
    app.include_router(milestones.router)
    app.include_router(vendors.router)
    app.include_router(signin.router)
    app.include_router(people_pages.router)
    app.include_router(vendor_pages.router)
    app.include_router(pages.router)
    app.add_exception_handler(pages.LoginRequired, pages.to_login)
    oidc.install(app, settings)
    return app
