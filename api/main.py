"""The FastAPI application: one Temporal client and one engine per process, from the lifespan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api import errors, pages
from api.routers import admin, health, notifications, oversight, projects, reports
from readmodel.db import make_engine
from readmodel.settings import Settings, get_settings
from worker.temporal import connect

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """Build the app; tests hand in a client and engine of their own servers."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.settings = settings
        app.state.engine = engine or make_engine(settings.resolved_database_url)
        app.state.temporal = client or await connect(settings)
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
    errors.install(app)

    @app.middleware("http")
    async def bind_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        rid = rid[:100]
        request.state.request_id = rid
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = rid
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
        )
        return response

    app.include_router(health.router)
    app.include_router(projects.router)
    app.include_router(oversight.router)
    app.include_router(reports.router)
    app.include_router(notifications.router)
    app.include_router(admin.router)
    app.include_router(pages.router)
    app.add_exception_handler(pages.LoginRequired, pages.to_login)
    return app
