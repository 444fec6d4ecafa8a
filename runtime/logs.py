"""One structlog configuration for every process: JSON unless on a terminal.

uvicorn, temporalio and SQLAlchemy log through the standard library; they are routed
through the same processors so every line has the same shape and the bound request id.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

# Paths whose segments are secrets: a calendar feed's address is its only credential, and a
# sign-in link's is too. Wherever a path is recorded (request log, access log, metrics), it
# goes through redact_path first.
_SECRET_PATHS = (
    (re.compile(r"^/api/v1/calendar/[^/]+\.ics$"), "/api/v1/calendar/{feed}.ics"),
    (re.compile(r"^/login/link/.+$"), "/login/link/{secret}"),
)


def redact_path(path: str) -> str:
    """``path`` as it may be written down: a secret-bearing path by its route template."""
    for pattern, template in _SECRET_PATHS:
        if pattern.match(path):
            return template
    return path


class _RedactAccessLog(logging.Filter):
    """uvicorn's access log line names the path (and its query): redacted as above."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = args[2].partition("?")[0]
            safe = redact_path(path)
            if safe != path:
                record.args = (args[0], args[1], safe, args[3], args[4])
        return True


def redacting_access_log() -> logging.Filter:
    return _RedactAccessLog()


def redact_access_log() -> None:
    """Install the access log's redaction (once): the app does so whoever configured logging."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactAccessLog) for f in access.filters):
        access.addFilter(redacting_access_log())


def configure_logging(json: bool | None = None, level: int = logging.INFO) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    redact_access_log()
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
