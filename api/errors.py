"""Every failure as application/problem+json (RFC 9457), never an HTML page or a trace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.core import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, Refusal

log = structlog.get_logger(__name__)

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_WORKFLOW_ERRORS = {NOT_FOUND: 404, CONFLICT: 409, FORBIDDEN: 403, INVALID: 422}


class HTTPProblem(Exception):
    """A request answered with an error: raised anywhere, sent as problem+json (the body's
    model is api.schemas.Problem)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        japanese: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers
        # What the pages say instead of ``detail``, when the rules gave their own words.
        self.japanese = japanese


def problem_body(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A problem (RFC 9457) as a JSON object: a response's body, or one item's answer in a
    bulk request."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(
    status: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(status, detail, errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_error(loc: list[str | int], msg: str) -> HTTPProblem:
    return HTTPProblem(422, msg, errors=[{"loc": loc, "msg": msg}])


def refused(kind: str, message: str, japanese: str | None) -> HTTPProblem:
    """A rule's refusal as the status API.md promises; refusals of input name the field
    first ("reason: ...", "progress.rfi: ...")."""
    status = _WORKFLOW_ERRORS[kind]
    if status == 422:
        loc_field = message.split(":", 1)[0] if ":" in message else ""
        loc: list[str | int] = ["body", *loc_field.split(".")] if loc_field else ["body"]
        return HTTPProblem(422, message, errors=[{"loc": loc, "msg": message}], japanese=japanese)
    return HTTPProblem(status, message, japanese=japanese)


def from_refusal(r: Refusal) -> HTTPProblem:
    return refused(r.kind, r.message, r.japanese)


def from_update_error(err: WorkflowUpdateFailedError) -> HTTPProblem:
    """Map a rule the workflow refused to the status API.md promises."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in _WORKFLOW_ERRORS:
        said = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return refused(cause.type, cause.message, said.get("japanese"))
    return HTTPProblem(500, "the project could not apply the change")


def unavailable(detail: str, retry_after: int = 2) -> HTTPProblem:
    return HTTPProblem(503, detail, headers={"Retry-After": str(retry_after)})


def from_rpc_error(err: RPCError, retry_after: int = 2) -> HTTPProblem:
    if err.status == RPCStatusCode.NOT_FOUND:
        # The workflow has closed: a completed project takes no more changes.
        return HTTPProblem(409, "the project is closed and takes no more changes")
    log.warning("temporal rpc error", status=str(err.status), message=err.message)
    return unavailable(
        "the workflow service is unavailable; retrying with the same Idempotency-Key is safe",
        retry_after,
    )


def _for_person(request: Request) -> bool:
    """A page, not the API: whoever asked reads Japanese in a browser."""
    path = request.url.path
    return not (path.startswith("/api/") or path in ("/metrics", "/healthz", "/readyz"))


PageOfError = Callable[[Request, int, "dict[str, str] | None"], Response]


def install(app: FastAPI, page: PageOfError) -> None:
    """Answer every failure as problem+json to the API, and with ``page`` (the web room's
    Japanese error page, handed in by api/main.py) to a browser."""

    def _page(request: Request, status: int, headers: dict[str, str] | None = None) -> Response:
        return page(request, status, headers)

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> Response:
        if _for_person(request):
            return _page(request, exc.status, exc.headers)
        return problem_response(exc.status, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if _for_person(request):
            return _page(request, exc.status_code, getattr(exc, "headers", None))
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if _for_person(request):
            return _page(request, 422)
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return problem_response(400, "the request body is not valid JSON")
        if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errs):
            return problem_response(400, "the request body must be a JSON object")
        for e in errs:
            if e.get("type") == "missing" and tuple(e.get("loc", ()))[:1] == ("header",):
                return problem_response(400, f"the {e['loc'][1]} header is required")
        items = [{"loc": list(e.get("loc", [])), "msg": str(e.get("msg", ""))} for e in errs]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in i['loc'][1:]) or i['loc'][0]}: {i['msg']}" for i in items
        )
        return problem_response(422, detail or "validation failed", items)

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update(_: Request, exc: WorkflowUpdateFailedError) -> JSONResponse:
        p = from_update_error(exc)
        return problem_response(p.status, p.detail, p.errors)

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, exc: RPCError) -> JSONResponse:
        p = from_rpc_error(exc)
        return problem_response(p.status, p.detail, headers=p.headers)

    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _pool(request: Request, exc: SQLAlchemyTimeoutError) -> Response:
        # Every connection is busy: say so at once rather than queue without end.
        log.warning("read model pool exhausted")
        if _for_person(request):
            return _page(request, 503, {"Retry-After": "1"})
        return problem_response(
            503, "the service is busy; retry shortly", headers={"Retry-After": "1"}
        )

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> Response:
        log.warning("read model unavailable", error=str(exc.orig)[:200])
        if _for_person(request):
            return _page(request, 503, {"Retry-After": "2"})
        return problem_response(
            503, "the database is unavailable; retry shortly", headers={"Retry-After": "2"}
        )

    @app.exception_handler(IntegrityError)
    async def _taken(_: Request, exc: IntegrityError) -> JSONResponse:
        # Two identical creations at once: the check before the insert passed for both,
        # the database's unique key refused the second. It is a conflict, not a fault.
        log.info("unique key refused a concurrent duplicate", error=str(exc.orig)[:200])
        return problem_response(409, "it already exists (created at the same moment)")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        if _for_person(request):
            return _page(request, 500)
        return problem_response(500, "an unexpected error occurred; it has been logged")
