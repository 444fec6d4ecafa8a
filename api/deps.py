"""Dependencies as Annotated aliases: the session, the Temporal client, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client

from api.auth import PAGE_COOKIE, Caller, caller_for, caller_for_page
from api.commands import Context
from api.errors import HTTPProblem
from api.ratelimit import mark_verified
from runtime.settings import Settings

_bearer = HTTPBearer(auto_error=False)

# Pagination of every list (API.md: default 50, at most 500).
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=2**31)]
# A row id in a path: what the database's integers hold (larger ones are 422, not a crash).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    with Session(get_engine(request)) as session:
        yield session


# What only reads the app's state is an ``async def`` dependency: FastAPI runs a plain
# ``def`` one on a worker thread, a hop (and a GIL hand-over) each request would pay for.
async def get_client(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session)]
ClientDep = Annotated[Client, Depends(get_client)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    cookie = request.cookies.get(PAGE_COOKIE)
    if credentials is None and cookie and request.method in ("GET", "HEAD"):
        # A signed-in browser may read (download a report, say); it writes through the
        # pages' forms only, never through the API with its cookie.
        with Session(get_engine(request)) as session:
            page_caller = caller_for_page(session, cookie)
        if page_caller is not None:
            return page_caller
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPProblem(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    # A session of its own, closed here: a write must not keep it while Temporal works.
    with Session(get_engine(request)) as session:
        caller = caller_for(session, credentials.credentials)
    if caller is None:
        raise HTTPProblem(401, "the token is not valid", headers={"WWW-Authenticate": "Bearer"})
    mark_verified(request.state)  # the limiter gives this token a budget of its own now
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def request_id(request: Request) -> str:
    rid: str = getattr(request.state, "request_id", "")
    return rid


RequestIdDep = Annotated[str, Depends(request_id)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional: a repeat of the request with the same key returns the first "
        "answer and changes nothing, so a write that timed out can be retried safely.",
    ),
]


MAX_IDEMPOTENCY_KEY = 200


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise HTTPProblem(400, "the Idempotency-Key header is empty")
    if len(value) > MAX_IDEMPOTENCY_KEY:
        raise HTTPProblem(
            400, f"the Idempotency-Key header is longer than {MAX_IDEMPOTENCY_KEY} characters"
        )
    return value


async def get_context(
    request: Request, rid: RequestIdDep, client: ClientDep, settings: SettingsDep
) -> Context:
    """What a command needs; the caller adds its Idempotency-Key."""
    return Context(db=request.app.state.readmodel, client=client, settings=settings, request_id=rid)


ContextDep = Annotated[Context, Depends(get_context)]


async def get_write_context(ctx: ContextDep, idem: IdempotencyKeyHeader = None) -> Context:
    """The context of a write that takes an optional Idempotency-Key."""
    ctx.idempotency_key = idempotency_key(idem)
    return ctx


# A write's context, with its optional Idempotency-Key read from the request.
WriteDep = Annotated[Context, Depends(get_write_context)]
